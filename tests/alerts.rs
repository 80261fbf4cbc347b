//! The rules end to end: events imported as files (and received live) raise alerts that are
//! stored, listed by `mimamori alerts` and the API, not repeated on re-import, and detections
//! that span a restart still fire.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, Server, http_get};

const ROSTER: &str = r#"
[[roster.staff]]
id = "n002"
name = "山田花子"
roles = ["nurse"]
site = "main"
[[roster.staff]]
id = "d001"
name = "佐藤一郎"
roles = ["doctor"]
flags = ["on_call"]
[[roster.staff]]
id = "r001"
name = "受付一郎"
roles = ["reception"]
[[roster.staff]]
id = "x009"
roles = ["nurse"]
end = "2026-10-31"
"#;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(dir.join("m.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn alerts(dir: &Path) -> Vec<serde_json::Value> {
    let out = run(dir, &["alerts", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn csv(dir: &Path, name: &str, rows: &[&str]) -> String {
    let mut text = String::from("日時,利用者ID,端末,IPアドレス,患者ID,操作,件数,種別\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn imported_events_raise_explained_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.toml"), ROSTER).unwrap();
    let file = csv(
        d,
        "day.csv",
        &[
            // Off hours (Tuesday 22:40) and the confounders: on call, grace margin.
            "2026/11/17 22:40:00,n002,MAIN-PC03,10.10.1.23,,ログイン,,",
            "2026/11/17 23:10:00,d001,MAIN-PC01,10.10.1.11,,ログイン,,",
            "2026/11/17 08:10:00,r001,MAIN-PC02,10.10.1.12,,ログイン,,",
            // Reception reading clinical notes; reception reading appointments is fine.
            "2026/11/17 10:00:00,r001,MAIN-PC02,10.10.1.12,P000123,カルテ参照,1,診療録",
            "2026/11/17 10:01:00,r001,MAIN-PC02,10.10.1.12,P000124,予約参照,1,予約",
            // A big export and a small one.
            "2026/11/17 11:00:00,d001,MAIN-PC01,10.10.1.11,,CSV出力,500,患者基本情報",
            "2026/11/17 11:05:00,d001,MAIN-PC01,10.10.1.11,,CSV出力,12,患者基本情報",
            // A departed nurse; an account nobody knows.
            "2026/11/17 10:30:00,x009,MAIN-PC03,10.10.1.23,,ログイン,,",
            "2026/11/17 10:31:00,ghost,MAIN-PC03,10.10.1.23,P000125,カルテ参照,1,診療録",
        ],
    );
    let out = run(d, &["import", &file]);
    assert!(out.status.success(), "{}", text(&out));
    let found = alerts(d);
    let mut rules: Vec<(&str, &str)> = found
        .iter()
        .map(|a| (a["rule"].as_str().unwrap(), a["user"].as_str().unwrap()))
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            ("access_outside_role", "ghost"),
            ("access_outside_role", "r001"),
            ("access_outside_role", "x009"),
            ("bulk_export", "d001"),
            ("off_hours_login", "n002"),
        ],
        "{found:#?}"
    );
    let off = found
        .iter()
        .find(|a| a["rule"] == "off_hours_login")
        .unwrap();
    assert_eq!(
        off["explanation"],
        "n002 (山田花子) logged in at main at 22:40 on Tuesday 2026-11-17; the clinic is open 08:30-12:30, 14:00-18:30 that day"
    );
    assert_eq!(off["status"], "open");
    assert_eq!(off["evidence"].as_array().unwrap().len(), 1);

    // Importing the same file again raises nothing new.
    let out = run(d, &["import", &file]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(alerts(d), found);

    // A session that spans two imports (two processes): login at main, then at the annex.
    let first = csv(
        d,
        "a.csv",
        &["2026/11/18 09:00:00,n002,MAIN-PC03,10.10.1.23,,ログイン,,"],
    );
    assert!(run(d, &["import", &first]).status.success());
    let second = csv(
        d,
        "b.csv",
        &["2026/11/18 09:10:00,n002,ANNEX-PC01,10.10.2.31,,ログイン,,"],
    );
    assert!(run(d, &["import", &second]).status.success());
    let concurrent: Vec<_> = alerts(d)
        .into_iter()
        .filter(|a| a["rule"] == "concurrent_sessions")
        .collect();
    assert_eq!(concurrent.len(), 1);
    let why = concurrent[0]["explanation"].as_str().unwrap();
    assert!(
        why.contains("logged in at annex at 09:10") && why.contains("still logged in at main"),
        "{why}"
    );
    assert_eq!(concurrent[0]["evidence"].as_array().unwrap().len(), 2);

    // Filters, and a bad one.
    let out = run(d, &["alerts", "--status", "closed"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("0 alert(s)"),
        "{}",
        text(&out)
    );
    let out = run(d, &["alerts", "--status", "done"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("open, acknowledged or closed"));
}

#[test]
fn machines_and_last_activity_outlive_the_rebuild_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Rebuilding from the log covers next to nothing: what carries over is what was saved.
    std::fs::write(
        d.join("m.toml"),
        format!("[alerts]\nrebuild_events = 1\n{ROSTER}"),
    )
    .unwrap();
    // January: n002 logs in 25 times, always at MAIN-PC03 (weekday mornings).
    let january: Vec<String> = (5..30)
        .map(|day| format!("2026/01/{day:02} 09:00:00,n002,MAIN-PC03,10.10.1.23,,ログイン,,"))
        .collect();
    let january: Vec<&str> = january.iter().map(String::as_str).collect();
    assert!(
        run(d, &["import", &csv(d, "jan.csv", &january)])
            .status
            .success()
    );
    // June, another process: her usual machine, then one she has never used.
    let june = csv(
        d,
        "jun.csv",
        &[
            "2026/06/02 09:00:00,n002,MAIN-PC03,10.10.1.23,,ログイン,,",
            "2026/06/02 10:00:00,n002,MAIN-PC07,10.10.1.27,,ログイン,,",
        ],
    );
    assert!(run(d, &["import", &june]).status.success());
    let found = alerts(d);
    let of = |rule: &str| -> Vec<&serde_json::Value> {
        found
            .iter()
            .filter(|a| a["rule"] == rule && a["user"] == "n002")
            .collect()
    };
    let new = of("new_workstation");
    assert_eq!(new.len(), 1, "{found:#?}");
    assert!(
        new[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("MAIN-PC07"),
        "{new:#?}"
    );
    let dormant = of("access_outside_role");
    assert_eq!(dormant.len(), 1, "{found:#?}");
    assert!(
        dormant[0]["explanation"].as_str().unwrap().contains("days"),
        "idle since January: {dormant:#?}"
    );
}

#[test]
fn live_events_raise_alerts_served_over_http_with_their_evidence() {
    let server = Server::start_full("", "", ROSTER);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    use std::io::Write;
    // RFC 5424 with the EHR's key=value pairs: reception exports 300 records.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let msg =
        format!("<134>1 {now} ehr01 ehr - - - user=r001 action=EXPORT count=300 src=10.10.1.12");
    writeln!(tcp, "{msg}").unwrap();
    drop(tcp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let list = loop {
        let (status, body) = http_get(server.http, "/api/v1/alerts").unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["alerts"].as_array().unwrap().len() >= 2 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let alerts = list["alerts"].as_array().unwrap();
    let mut rules: Vec<&str> = alerts.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    rules.sort();
    assert_eq!(rules, ["access_outside_role", "bulk_export"], "{list:#}");
    let id = alerts[0]["id"].as_i64().unwrap();
    // The rules see an event as soon as it is durable; its evidence is searchable once the
    // index has committed it (within commit_interval_ms).
    let one = loop {
        let (status, body) = http_get(server.http, &format!("/api/v1/alerts/{id}")).unwrap();
        assert_eq!(status, 200, "{body}");
        let one: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !one["events"].as_array().unwrap().is_empty() || std::time::Instant::now() > deadline {
            break one;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(one["events"][0]["user.name"], "r001");
    assert_eq!(one["events"][0]["record.count"], 300);
    let (status, _) = http_get(server.http, "/api/v1/alerts/99999").unwrap();
    assert_eq!(status, 404);
    assert!(server.metric("mimamori_alerts_total") >= 2.0);
}

#[test]
fn bad_rules_are_named_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |toml: &str| {
        std::fs::write(d.join("m.toml"), toml).unwrap();
        let out = run(d, &["rules", "check"]);
        (out.status.code(), text(&out))
    };
    let (code, err) = check("[clinic.hours]\nmon = [\"18:00-09:00\"]\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("clinic.hours.mon") && err.contains("inverted") && err.contains("line 2"),
        "{err}"
    );
    let (_, err) = check("[clinic]\ntimezone = \"Mars/Olympus\"\n");
    assert!(err.contains("clinic.timezone"), "{err}");
    let (_, err) = check("[roles.reception]\nallow = [\"recrod.view\"]\n");
    assert!(
        err.contains("roles.reception.allow") && err.contains("matches none"),
        "{err}"
    );
    let (_, err) = check("[[roster.staff]]\nid = \"n1\"\nroles = [\"janitor\"]\n");
    assert!(
        err.contains("roster.staff[0].roles") && err.contains("janitor"),
        "{err}"
    );
    let (_, err) = check("[[roster.staff]]\nid = \"n1\"\nstart = \"2026-13-01\"\n");
    assert!(err.contains("roster.staff[0].start"), "{err}");
    let (code, out) = check(ROSTER);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("staff on the roster: 4"), "{out}");
}

#[test]
fn rules_test_and_backtest_show_what_would_fire() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = format!(
        "{ROSTER}\n[[custom_rules]]\nname = \"many_views\"\nfilter = \"event.action:record.view\"\ngroup_by = [\"user.name\"]\nthreshold = 3\nwindow_minutes = 10\n"
    );
    std::fs::write(d.join("m.toml"), config).unwrap();
    let file = csv(
        d,
        "t.csv",
        &[
            "2026/11/17 11:00:00,d001,MAIN-PC01,10.10.1.11,,CSV出力,80,患者基本情報",
            "2026/11/17 22:40:00,n002,MAIN-PC03,10.10.1.23,,ログイン,,",
            // Not alerts, but close: a login in the grace margin, an on-call doctor at night.
            "2026/11/17 08:10:00,r001,MAIN-PC02,10.10.1.12,,ログイン,,",
            "2026/11/17 23:10:00,d001,MAIN-PC01,10.10.1.11,,ログイン,,",
            "2026/11/17 10:00:00,n002,MAIN-PC03,10.10.1.23,P1,カルテ参照,1,診療録",
            "2026/11/17 10:01:00,n002,MAIN-PC03,10.10.1.23,P2,カルテ参照,1,診療録",
            "2026/11/17 10:02:00,n002,MAIN-PC03,10.10.1.23,P3,カルテ参照,1,診療録",
        ],
    );
    let out = run(d, &["rules", "test", "--events", &file]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("FIRES  off_hours_login") && t.contains("22:40"),
        "{t}"
    );
    assert!(
        t.contains("FIRES  many_views") && t.contains("3 events matching"),
        "{t}"
    );
    assert!(
        t.contains("CLOSE  bulk_export (records at once) reached 80 of 100"),
        "{t}"
    );
    assert!(
        t.contains("CLOSE  off_hours_login (grace margin) r001 (受付一郎) logged in at 08:10 on Tuesday 2026-11-17, 20 minute(s) outside opening hours, within the 30-minute grace margin"),
        "{t}"
    );
    assert!(
        t.contains("CLOSE  off_hours_login (exempt) d001 (佐藤一郎) logged in at 23:10 on Tuesday 2026-11-17, outside opening hours, but is exempt as on_call"),
        "{t}"
    );
    assert!(t.contains("7 events (ehr-csv), 2 alert(s)"), "{t}");
    assert!(!d.join("data/alerts.db").exists(), "a test stores nothing");

    // Stored history, replayed with one rule.
    assert!(run(d, &["import", &file]).status.success());
    let out = run(
        d,
        &[
            "rules",
            "backtest",
            "--from",
            "2026-11-01",
            "--rule",
            "many_views",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("7 stored events since 2026-11-01")
            && t.contains(": 1 alert(s) would have been raised by many_views"),
        "{t}"
    );
    assert!(
        !t.contains("CLOSE  many_views"),
        "a rule that fired is not a near miss: {t}"
    );
    assert!(!t.contains("off_hours_login"), "{t}");
    let out = run(d, &["rules", "backtest", "--rule", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no rule named \"nope\""));
}

#[test]
fn the_roster_reloads_on_sighup_and_through_the_api_and_a_bad_file_keeps_the_old_one() {
    let token = "reload-token-0123456789";
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{token}\"]\n"),
        &format!("[detections]\nlateness_seconds = 1\n{ROSTER}"),
    );
    let send = |user: &str, minute: u32| {
        use std::io::Write;
        let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
        let at = (chrono::Utc::now() + chrono::Duration::seconds(i64::from(minute)))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        writeln!(
            tcp,
            "<134>1 {at} ehr01 ehr - - - user={user} action=VIEW_CHART patient=P{minute}"
        )
        .unwrap();
    };
    let alerts_for = |user: &str| served_alerts(&server, None, user);
    send("k777", 1);
    wait("k777 unknown", &|| alerts_for("k777").len() == 1);
    assert!(
        alerts_for("k777")[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("not on the staff roster")
    );

    // k777 joins the roster; SIGHUP.
    let original = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        format!("{original}\n[[roster.staff]]\nid = \"k777\"\nroles = [\"nurse\"]\n"),
    )
    .unwrap();
    let pid = server.child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait("the reload", &|| {
        server.metric("mimamori_rules_reloads_total{result=\"ok\"}") >= 1.0
    });
    send("k777", 2);
    send("k888", 3);
    wait("k888 unknown", &|| alerts_for("k888").len() == 1);
    assert_eq!(
        alerts_for("k777")[0]["evidence"].as_array().unwrap().len(),
        1,
        "k777 is known now"
    );

    // A bad file is refused with the reason; the rules in force stay.
    std::fs::write(
        &server.config,
        format!("{original}\n[[roster.staff]]\nid = \"k999\"\nroles = [\"janitor\"]\n"),
    )
    .unwrap();
    let auth = format!("Bearer {token}");
    let (status, body) = common::http_post(
        server.http,
        "/api/v1/rules/reload",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("janitor") && body.contains("previous rules stay"),
        "{body}"
    );
    let (status, _) = common::http_post(server.http, "/api/v1/rules/reload", &[], b"").unwrap();
    assert_eq!(status, 401);
    send("k777", 4);
    // Events are evaluated in time order: once k889's alert is stored, k777's event was seen.
    send("k889", 5);
    wait("k889 unknown", &|| alerts_for("k889").len() == 1);
    assert_eq!(
        alerts_for("k777")[0]["evidence"].as_array().unwrap().len(),
        1,
        "still known"
    );
}

#[test]
fn alert_status_changes_over_the_api_need_an_admin_token_and_keep_who_and_why() {
    let (admin, forwarder) = ("admin-token-0123456789", "forwarder-token-0123456789");
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{admin}\"]\ningest_tokens = [\"{forwarder}\"]\n"),
        &format!("[detections]\nlateness_seconds = 1\n{ROSTER}"),
    );
    let lines = ehr_lines(
        chrono::Utc::now(),
        &[(0, "user=r001 action=EXPORT count=300 src=10.10.1.12")],
    );
    std::io::Write::write_all(
        &mut std::net::TcpStream::connect(server.tcp).unwrap(),
        lines.as_bytes(),
    )
    .unwrap();
    wait("r001's export", &|| {
        served_alerts(&server, Some("bulk_export"), "r001").len() == 1
    });
    let id = served_alerts(&server, Some("bulk_export"), "r001")[0]["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/alerts/{id}/status");
    let post = |token: &str, body: &str| {
        let auth = format!("Bearer {token}");
        common::http_post(
            server.http,
            &path,
            &[("Authorization", &auth)],
            body.as_bytes(),
        )
        .unwrap()
    };
    let ack = r#"{"status": "acknowledged", "by": "tanaka"}"#;
    assert_eq!(post(forwarder, ack).0, 401, "a forwarder's token cannot");
    assert_eq!(post("", ack).0, 401);
    let (status, body) = post(admin, r#"{"status": "closed"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("needs a reason"), "{body}");
    let (status, body) = post(admin, r#"{"status": "done", "reason": "x"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("open, acknowledged or closed"), "{body}");
    let (status, body) = post(admin, r#"{"state": "closed"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown field `state`"), "{body}");
    let (status, body) = post(
        admin,
        &format!("{{\"status\": \"{}\"}}", "x".repeat(100_000)),
    );
    assert_eq!(status, 413, "{body}");
    let auth = format!("Bearer {admin}");
    let (status, _) = common::http_post(
        server.http,
        "/api/v1/alerts/99999/status",
        &[("Authorization", &auth)],
        ack.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 404);

    let (status, body) = post(admin, ack);
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        admin,
        r#"{"status": "closed", "reason": "year-end export for the tax office, approved", "by": "suzuki"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = http_get(server.http, &format!("/api/v1/alerts/{id}")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["alert"]["status"], "closed");
    assert_eq!(
        v["alert"]["status_reason"],
        "year-end export for the tax office, approved"
    );
    let history: Vec<(&str, &str)> = v["alert"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["status"].as_str().unwrap(), c["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [("acknowledged", "tanaka (api)"), ("closed", "suzuki (api)")],
        "refused changes leave no trace: {body}"
    );
    // The command line shows the same history.
    let out = server.cli(&["alerts", "show", &id.to_string()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("closed by suzuki (api): year-end export for the tax office, approved"),
        "{shown}"
    );
    // Its hint runs as printed: the same data directory as the command that printed it.
    assert!(
        shown.contains(&format!(
            "evidence: mimamori --data-dir {} search event.id:",
            server.data_dir().display()
        )),
        "{shown}"
    );
}

#[test]
fn a_sender_writing_utc_without_a_zone_is_named_once_with_its_likely_zone() {
    let server = Server::start("");
    // An RFC 3164 line carries no zone: a server on UTC, read as Japan time, is dated nine
    // hours early.
    let now = chrono::Utc::now();
    let mut s = std::net::TcpStream::connect(server.tcp).unwrap();
    for i in 0..5 {
        use std::io::Write;
        s.write_all(
            format!(
                "<13>{} db01 app: utc-sender line {i}\n",
                now.format("%b %e %H:%M:%S")
            )
            .as_bytes(),
        )
        .unwrap();
    }
    drop(s);
    server.wait_for("utc-sender", 5);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        let out = server.cli(&["alerts", "--json"]);
        let found: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|a: &serde_json::Value| a["rule"] == "clock_check")
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(found.len(), 1, "{found:?}");
    let said = found[0]["explanation"].as_str().unwrap();
    assert!(
        said.contains("UTC+00:00") && said.contains("9 時間") && said.contains("db01"),
        "{said}"
    );
    assert!(server.log().contains("alert raised"), "a log line says so");
}

#[test]
fn reads_need_a_read_or_admin_token_once_read_tokens_are_set() {
    let (admin, reader) = ("admin-token-0123456789", "reader-token-0123456789");
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{admin}\"]\nread_tokens = [\"{reader}\"]\n"),
        "",
    );
    for path in ["/api/v1/search?q=*", "/api/v1/alerts", "/api/v1/alerts/1"] {
        let (status, body) = http_get(server.http, path).unwrap();
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("http.read_tokens"), "{path}: {body}");
        let wrong = common::http_get_with(server.http, path, &[("Authorization", "Bearer nope")]);
        assert_eq!(wrong.unwrap().0, 401, "{path}");
        for token in [reader, admin] {
            let auth = format!("Bearer {token}");
            let (status, body) =
                common::http_get_with(server.http, path, &[("Authorization", &auth)]).unwrap();
            // No alert 1 yet: found the door open, and the room empty.
            let want = if path.ends_with("/1") { 404 } else { 200 };
            assert_eq!(status, want, "{path} with {token}: {body}");
        }
    }
    // Health and metrics hold no patient data and stay open for monitoring.
    assert_eq!(http_get(server.http, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(server.http, "/metrics").unwrap().0, 200);
    // A reader cannot change anything.
    let auth = format!("Bearer {reader}");
    let (status, _) = common::http_post(
        server.http,
        "/api/v1/rules/reload",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(status, 401);
}

/// The alerts the API serves for `user` (and `rule`).
fn served_alerts(server: &Server, rule: Option<&str>, user: &str) -> Vec<serde_json::Value> {
    let (_, body) = http_get(server.http, "/api/v1/alerts").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["user"] == user && rule.is_none_or(|r| a["rule"] == r))
        .cloned()
        .collect()
}

/// Waits up to a minute for `f` (live alerts come `detections.lateness_seconds` late).
fn wait(what: &str, f: &dyn Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Lines of the EHR's syslog (RFC 5424 with key=value pairs), `minutes` after `base`.
fn ehr_lines(base: chrono::DateTime<chrono::Utc>, rows: &[(i64, &str)]) -> String {
    rows.iter()
        .map(|(minutes, kv)| {
            let at = (base + chrono::Duration::minutes(*minutes))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!("<134>1 {at} ehr01 ehr - - - {kv}\n")
        })
        .collect()
}

#[test]
fn live_events_are_evaluated_in_event_time_order_and_across_restarts() {
    use std::io::Write;
    let tail = format!(
        "{ROSTER}\n[[roster.staff]]\nid = \"n003\"\nroles = [\"nurse\"]\n\
         [[roster.staff]]\nid = \"n004\"\nroles = [\"nurse\"]\n\
         [detections]\nlateness_seconds = 8\n"
    );
    let mut server = Server::start_full("", "", &tail);
    let send = |server: &Server, lines: String| {
        let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
        tcp.write_all(lines.as_bytes()).unwrap();
    };
    let alerts_of =
        |server: &Server, rule: &str, user: &str| served_alerts(server, Some(rule), user);
    let base = chrono::Utc::now() - chrono::Duration::hours(2);

    // n003 logs out at main, then in at the annex 25 minutes later; the logout arrives last.
    // Evaluated in arrival order this is two sites at once; in event-time order it is not.
    // n004 logs in at main; the annex login comes after the restart.
    send(
        &server,
        ehr_lines(
            base,
            &[
                (0, "user=n003 action=LOGIN src=10.10.1.23"),
                (30, "user=n003 action=LOGIN src=10.10.2.31"),
                (5, "user=n003 action=LOGOUT src=10.10.1.23"),
                (40, "user=n004 action=LOGIN src=10.10.1.24"),
            ],
        ),
    );
    // Everything is evaluated once the last event has waited its lateness.
    wait("the four events evaluated", &|| {
        server.metric("mimamori_rules_events_total") >= 4.0
    });
    assert!(
        alerts_of(&server, "concurrent_sessions", "n003").is_empty(),
        "a logout at one site then a login at the other is not an incident"
    );
    assert_eq!(server.metric("mimamori_rules_late_events_total"), 0.0);

    // A clean stop and start: n004's session at main is rebuilt from the store.
    server.stop();
    server.spawn();
    send(
        &server,
        ehr_lines(base, &[(50, "user=n004 action=LOGIN src=10.10.2.32")]),
    );
    wait("n004 at two sites", &|| {
        alerts_of(&server, "concurrent_sessions", "n004").len() == 1
    });
    let why = alerts_of(&server, "concurrent_sessions", "n004")[0]["explanation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(why.contains("still logged in at main"), "{why}");

    // A crash while an event is held, with a later-logged one already evaluated: ghost's
    // event and r001's older export arrive together; n003's view (between them in time)
    // arrives 5 s later. At 8 s r001's export is due and raises its alerts; ghost's event waits
    // behind n003's (due at 13 s) when the process is killed. After the restart ghost's event
    // is evaluated, and r001's, replayed from before ghost's, is not counted again.
    send(
        &server,
        ehr_lines(
            base,
            &[
                (
                    120,
                    "user=ghost action=VIEW_CHART patient=P1 src=10.10.1.25",
                ),
                (60, "user=r001 action=EXPORT count=300 src=10.10.1.12"),
            ],
        ),
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    send(
        &server,
        ehr_lines(
            base,
            &[(90, "user=n003 action=VIEW_CHART patient=P2 src=10.10.1.23")],
        ),
    );
    wait("r001's export", &|| {
        alerts_of(&server, "bulk_export", "r001").len() == 1
    });
    assert!(
        alerts_of(&server, "access_outside_role", "ghost").is_empty(),
        "ghost's event is still held behind n003's"
    );
    server.kill9();
    server.spawn();
    wait("ghost's event after the crash", &|| {
        alerts_of(&server, "access_outside_role", "ghost").len() == 1
    });
    for rule in ["bulk_export", "access_outside_role"] {
        let found = alerts_of(&server, rule, "r001");
        assert_eq!(found.len(), 1, "{rule}: {found:#?}");
        assert_eq!(found[0]["count"], 1, "{rule} not counted twice: {found:#?}");
    }
}

#[test]
fn an_export_without_a_kind_column_raises_no_false_role_alerts() {
    // The kind is in the operation word, as many Japanese EHRs write it: the receptionist may
    // read demographics, appointments and billing all day; a chart is not theirs to read.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.toml"), ROSTER).unwrap();
    let mut text = String::from("日時,利用者ID,端末,患者ID,操作\n");
    for (i, op) in ["患者基本情報参照", "予約参照", "会計参照", "予約登録"]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        text.push_str(&format!(
            "2026/11/17 {:02}:{:02}:00,r001,MAIN-PC02,P{:06},{op}\n",
            9 + i / 12,
            i % 12 * 5,
            100 + i
        ));
    }
    text.push_str("2026/11/17 15:00:00,r001,MAIN-PC02,P000999,カルテ参照\n");
    std::fs::write(d.join("ops.csv"), text).unwrap();
    let out = run(d, &["import", d.join("ops.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{}", self::text(&out));
    let found = alerts(d);
    let role: Vec<&serde_json::Value> = found
        .iter()
        .filter(|a| a["rule"] == "access_outside_role")
        .collect();
    assert_eq!(role.len(), 1, "only the chart: {found:?}");
    assert_eq!(role[0]["count"], 1, "{found:?}");
    assert!(
        role[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("clinical_notes"),
        "{found:?}"
    );
}
