//! `mimamori backup` while the service runs and takes events, and `mimamori restore` into an
//! empty data directory: the same searches, alerts, accounts, kept reviews and a clean `verify`.

mod common;

use std::io::Write;
use std::process::{Command, Output};
use std::time::Duration;

use common::delivery::{raise_alerts, wait};
use common::web::add_user;
use common::{BIN, Server};

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn send(server: &Server, from: usize, n: usize) {
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in from..from + n {
        writeln!(
            tcp,
            "<134>1 {now} ehr01 ehr - - - user=n{:03} action=VIEW_CHART patient=P{i:05} src=10.10.1.23 record {i}",
            i % 7
        )
        .unwrap();
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The kept reviews and their sign-offs, as stored.
fn reviews(data_dir: &std::path::Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("reports.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows = Vec::new();
    for sql in [
        "SELECT week || checksum || body FROM reports ORDER BY week",
        "SELECT week || reviewer || signed_at || findings FROM signoffs ORDER BY id",
    ] {
        let mut statement = db.prepare(sql).unwrap();
        let found = statement.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.extend(found.map(Result::unwrap));
    }
    rows
}

/// What must come back identical: every event, every alert, every account.
fn state(server: &Server) -> (Vec<serde_json::Value>, String, String) {
    // In the same order too: events of one second come in the log's order, not the index's.
    let events = server.search("*");
    let alerts = ok(
        "alerts",
        &server.cli(&["alerts", "--since", "3650d", "--limit", "10000", "--json"]),
    );
    let users = ok("user list", &server.cli(&["user", "list"]));
    (events, alerts, users)
}

#[test]
fn a_backup_taken_while_serving_restores_the_same_searches_alerts_accounts_and_verifies() {
    // Last week's accesses, imported before the server starts: its schedule keeps last week's
    // review in reports.db, which the backup must bring back too.
    let mut server = Server::prepare("", "", "[report]\nweekly_time = \"00:00\"\n");
    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    let csv = server.dir.path().join("last-week.csv");
    std::fs::write(
        &csv,
        format!(
            "timestamp,user,action,patient\n{},n002,VIEW_CHART,P0007\n",
            week_ago.to_rfc3339()
        ),
    )
    .unwrap();
    ok(
        "import",
        &server.cli_config(&["import", "--format", "ehr-csv", csv.to_str().unwrap()]),
    );
    server.spawn();
    wait("last week's review kept", 30, &|| {
        server.log().contains("the weekly review is made and kept")
    });
    add_user(&server, "sato", "auditor", "kanri-sha-2026");
    raise_alerts(&server);
    send(&server, 0, 2_000);
    wait("alerts raised", 30, &|| {
        !common::delivery::alerts(&server).is_empty()
    });
    let vault = server.dir.path().join("usb");
    let vault_arg = vault.to_str().unwrap().to_owned();

    // The first backup is taken while a sender writes.
    let sender = {
        let tcp = server.tcp;
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(tcp).unwrap();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            for i in 0..3_000 {
                writeln!(s, "<134>1 {now} ehr01 ehr - - - user=d001 action=VIEW_CHART patient=Q{i:05} during backup").unwrap();
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let first = ok(
        "backup",
        &server.cli_config(&["backup", "--to", &vault_arg]),
    );
    assert!(first.contains("new"), "{first}");
    assert!(first.contains("on the same disk as the data"), "{first}");
    sender.join().unwrap();
    wait("everything searchable", 30, &|| {
        server.search("*").len() >= 5_002
    });
    std::thread::sleep(Duration::from_secs(2));

    // The second copies only what changed.
    let second = ok(
        "second backup",
        &server.cli_config(&["backup", "--to", &vault_arg, "--keep", "2"]),
    );
    let unchanged: u64 = second
        .lines()
        .next()
        .unwrap_or_default()
        .split(", ")
        .find_map(|part| part.strip_suffix(" unchanged since an earlier backup"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{second}"));
    assert!(unchanged >= 1, "{second}");
    server.stop();
    let before = state(&server);
    assert!(before.0.len() >= 5_002);

    // Restore into an empty directory in the original's place.
    let original = server.data_dir();
    std::fs::rename(&original, server.dir.path().join("data.original")).unwrap();
    let restored = ok(
        "restore",
        &Command::new(BIN)
            .arg("--config")
            .arg(&server.config)
            .args(["restore", "--from", &vault_arg])
            .output()
            .unwrap(),
    );
    assert!(restored.contains("verified"), "{restored}");
    // Password hashes and secrets stay readable by the owner only, in the backup and restored.
    use std::os::unix::fs::PermissionsExt;
    let private =
        |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o077 == 0;
    for shard in std::fs::read_dir(vault.join("objects")).unwrap() {
        for object in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            assert!(private(&object.unwrap().path()), "backup objects are 0600");
        }
    }
    assert!(private(&server.data_dir().join("accounts.db")));
    // Nothing restored is readable by other users, whatever the shell's umask.
    let others = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o007;
    assert_eq!(others(&server.data_dir()), 0);
    for file in std::fs::read_dir(server.data_dir().join("index")).unwrap() {
        let file = file.unwrap().path();
        assert_eq!(others(&file), 0, "{}", file.display());
    }
    let after = state(&server);
    assert_eq!(after.0.len(), before.0.len());
    assert!(after.0 == before.0, "every event comes back as it was");
    assert_eq!(after.2, before.2, "the accounts");
    let kept = reviews(&server.dir.path().join("data.original"));
    assert_eq!(kept.len(), 1, "last week's review");
    assert_eq!(
        reviews(&server.data_dir()),
        kept,
        "the reviews as they were kept"
    );
    assert!(after.2.contains("sato"));
    ok("verify", &server.cli(&["verify"]));

    // The restored system serves: it finds what it held, and its rules go on from where the
    // backup found them (an alert still held for event-time ordering when the backup was
    // taken is raised now), so its alerts become the original's.
    server.spawn();
    assert_eq!(server.search("during backup").len(), 3_000);
    wait("the restored rules catch up", 30, &|| {
        common::delivery::alerts(&server).len() == before.1.lines().count()
    });
    server.stop();
    assert_eq!(state(&server).1, before.1, "the alerts and their state");

    // Every backup in the folder reads back whole.
    let checked = ok(
        "check",
        &server.cli(&["restore", "--from", &vault_arg, "--check"]),
    );
    assert_eq!(
        checked.matches("all read back and match").count(),
        2,
        "{checked}"
    );

    // Never over data, and a damaged copy is named, not restored.
    let refused = server.cli_config(&["restore", "--from", &vault_arg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    let mut snapshots: Vec<_> = std::fs::read_dir(vault.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    snapshots.sort();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(snapshots.last().unwrap().join("MANIFEST.json")).unwrap(),
    )
    .unwrap();
    let wal = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().starts_with("wal/"))
        .unwrap();
    let sha = wal["sha256"].as_str().unwrap();
    let object = vault.join("objects").join(&sha[..2]).join(sha);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let elsewhere = server.dir.path().join("elsewhere");
    let damaged = Command::new(BIN)
        .arg("--config")
        .arg(&server.config)
        .arg("--data-dir")
        .arg(&elsewhere)
        .args(["restore", "--from", &vault_arg])
        .output()
        .unwrap();
    assert_eq!(damaged.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&damaged.stderr).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&damaged.stderr)
    );
    let left = std::fs::read_dir(&elsewhere)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "a refused restore writes nothing");
    // A restore cut short (kill -9, power) is never taken for a whole one.
    let cut = server.dir.path().join("cut");
    std::fs::create_dir_all(cut.join("wal")).unwrap();
    std::fs::write(cut.join("RESTORING"), "").unwrap();
    for args in [
        &["restore", "--from", &vault_arg][..],
        &["verify"][..],
        &["user", "list"][..],
    ] {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(&cut)
            .args(args)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("did not finish"),
            "{args:?}: {said}"
        );
    }

    // `--check` names the damaged file in the newest backup (and in any other sharing it).
    let check = server.cli(&["restore", "--from", &vault_arg, "--check"]);
    assert_eq!(check.status.code(), Some(1));
    let said = String::from_utf8_lossy(&check.stdout);
    let newest = said.lines().last().unwrap();
    assert!(
        newest.contains("DAMAGED") && newest.contains(wal["path"].as_str().unwrap()),
        "{said}"
    );
}

#[test]
fn the_service_backs_itself_up_on_schedule_and_a_failed_backup_is_an_alert() {
    // No backup in the folder yet: the one due (this morning's or yesterday's) is made at start.
    let folder = tempfile::tempdir().unwrap();
    let usb = folder.path().join("usb");
    std::fs::create_dir(&usb).unwrap();
    let mut server = Server::start_full(
        "",
        "",
        &format!("[backup]\ndir = \"{}\"\nkeep = 2\n", usb.display()),
    );
    send(&server, 0, 10);
    wait("a scheduled backup", 30, &|| {
        std::fs::read_dir(usb.join("snapshots"))
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    });
    server.stop();
    assert!(
        server.log().contains("scheduled backup made"),
        "{}",
        server.log()
    );

    // A folder that cannot be written: an alert, not silence.
    let blocked = folder.path().join("not-a-folder");
    std::fs::write(&blocked, "a file where the backup disk should be").unwrap();
    // The backup due at start fails at once, so the server may be degraded (503) from its
    // first answer.
    let mut server = Server::prepare(
        "",
        "",
        &format!(
            "[backup]\ndir = \"{}\"\n",
            blocked.join("mimamori").display()
        ),
    );
    server.spawn_answering();
    wait("a backup alert", 30, &|| {
        common::delivery::alerts(&server)
            .iter()
            .any(|a| a["rule"] == "backup")
    });
    let alert = common::delivery::alerts(&server)
        .into_iter()
        .find(|a| a["rule"] == "backup")
        .unwrap();
    assert_eq!(alert["severity"], "high");
    assert!(
        alert["explanation"]
            .as_str()
            .unwrap()
            .contains("バックアップ"),
        "{alert}"
    );
    // And /healthz shows the stage degraded with why, while collection goes on.
    let (status, health) = common::http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 503, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let stage = &health["stages"]["backup"];
    assert_eq!(stage["status"], "degraded", "{health}");
    assert!(
        stage["reason"]
            .as_str()
            .unwrap()
            .contains("the last backup failed"),
        "{health}"
    );
    assert_eq!(
        health["stages"]["wal-writer"]["status"], "running",
        "{health}"
    );
}
