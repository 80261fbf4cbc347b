//! The appliance's own pages. The sources page shows the holes in a source's record numbering.
//! The staff roster edited in the web UI: a person added is in force for the rules at once and
//! kept in the data folder's roster file (`rules check` reads it); a bad change is refused with
//! the key named and nothing written; a change made meanwhile by someone else is not
//! overwritten; every change is in the audit trail; only administrators may edit.

mod common;

use std::io::Write;

use common::Server;
use common::delivery::{ROSTER, alerts, wait};
use common::web::{Browser, add_user, audit_count, setup};

/// The form of `id` (or a new one): its CSRF token and version.
fn form(admin: &mut Browser, id: &str) -> (String, String) {
    let page = admin.get(&format!("/settings/roster?id={id}"));
    assert_eq!(page.status, 200, "{}", page.body);
    let version = page
        .body
        .split("name=\"version\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap()
        .to_owned();
    (page.csrf(), version)
}

fn save(admin: &mut Browser, fields: &[(&str, &str)]) -> common::web::Answer {
    let original = fields
        .iter()
        .find(|(k, _)| *k == "original")
        .map_or("", |(_, v)| *v);
    let (csrf, version) = form(admin, original);
    let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf), ("version", &version)];
    all.extend_from_slice(fields);
    admin.post("/settings/roster", &all)
}

#[test]
fn the_roster_edited_in_the_ui_is_checked_recorded_and_in_force() {
    let server = Server::start_full("", "", ROSTER);
    let mut admin = setup(&server);
    let settings = admin.get("/settings");
    assert!(
        settings.body.starts_with("<!doctype html>")
            || settings.body.starts_with("<!DOCTYPE html>"),
        "a whole page"
    );
    assert_eq!(
        settings.body.matches("id=\"roster-table\"").count(),
        1,
        "one roster table"
    );
    assert!(settings.body.contains("id=\"roster-add\""), "editable");
    assert!(
        settings.body.contains("設定ファイルで定義"),
        "the config file's own rows are marked as such"
    );

    // Added: someone who left in 2020. Their access is then explained by the new row.
    let added = save(
        &mut admin,
        &[
            ("action", "save"),
            ("id", "n060"),
            ("name", "退職 太郎"),
            ("role", "nurse"),
            ("site", "main"),
            ("end", "2020-03-31"),
        ],
    );
    assert_eq!(added.status, 303, "{}", added.body);
    assert_eq!(
        added.header("location"),
        Some("/settings?roster=saved#roster")
    );
    let settings = admin.get("/settings?roster=saved");
    assert!(settings.body.contains("id=\"roster-saved\""));
    assert!(
        settings.body.contains("退職 太郎"),
        "the page shows the model in force"
    );
    let file = std::fs::read_to_string(server.data_dir().join("roster.csv")).unwrap();
    assert!(
        file.starts_with("id,name,roles,site,start,end,flags,patient_id\n"),
        "{file}"
    );
    assert!(
        file.contains("n060,退職 太郎,nurse,main,,2020-03-31,,"),
        "{file}"
    );
    assert!(server.metric("mimamori_rules_reloads_total{result=\"ok\"}") >= 1.0);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    writeln!(
        tcp,
        "<134>1 {now} ehr01 ehr - - - user=n060 action=VIEW_CHART patient=P0001 src=10.10.1.23"
    )
    .unwrap();
    wait("the left person's alert", 30, &|| {
        alerts(&server).iter().any(|a| {
            a["explanation"]
                .as_str()
                .is_some_and(|e| e.contains("left on 2020-03-31"))
        })
    });

    // Refused, with the key named and the real file (not the candidate) in the message.
    let unknown_role = save(
        &mut admin,
        &[("action", "save"), ("id", "n061"), ("role", "janitor")],
    );
    assert_eq!(unknown_role.status, 400);
    assert!(
        unknown_role.body.contains("roster.csv line 3.roles")
            && !unknown_role.body.contains(".new"),
        "{}",
        unknown_role.body
    );
    let bad_date = save(
        &mut admin,
        &[("action", "save"), ("id", "n061"), ("start", "2026-13-45")],
    );
    assert_eq!(bad_date.status, 400);
    assert!(bad_date.body.contains("a date like"), "{}", bad_date.body);
    let refused_forms: [&[(&str, &str)]; 3] = [
        &[
            ("action", "save"),
            ("id", "n062"),
            ("name", "=HYPERLINK(\"x\")"),
        ],
        &[("action", "save"), ("id", "n062"), ("name", "a\nb")],
        &[("action", "save"), ("id", "n 1")],
    ];
    for fields in refused_forms {
        let refused = save(&mut admin, fields);
        assert_eq!(refused.status, 400, "{fields:?}");
    }
    let renamed = save(
        &mut admin,
        &[
            ("action", "save"),
            ("original", "n060"),
            ("id", "n002"),
            ("role", "doctor"),
        ],
    );
    assert_eq!(renamed.status, 400, "renamed onto the config file's n002");
    let taken = save(&mut admin, &[("action", "save"), ("id", "N002")]);
    assert_eq!(taken.status, 400, "n002 is in the config file");
    assert!(taken.body.contains("既に名簿にあります"), "{}", taken.body);
    let after = std::fs::read_to_string(server.data_dir().join("roster.csv")).unwrap();
    assert_eq!(after, file, "nothing refused was written");
    assert!(!server.data_dir().join("roster.csv.new").exists());

    // Changed, while someone else's older form is refused rather than overwriting it.
    let (stale_csrf, stale_version) = form(&mut admin, "n060");
    let changed = save(
        &mut admin,
        &[
            ("action", "save"),
            ("original", "n060"),
            ("id", "n060"),
            ("name", "退職 太郎"),
            ("role", "nurse"),
            ("role", "clerk"),
            ("end", "2020-03-31"),
            ("flags", "on_call, night_shift"),
        ],
    );
    assert_eq!(changed.status, 303, "{}", changed.body);
    let stale = admin.post(
        "/settings/roster",
        &[
            ("csrf", &stale_csrf),
            ("version", &stale_version),
            ("action", "delete"),
            ("original", "n060"),
        ],
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    let file = std::fs::read_to_string(server.data_dir().join("roster.csv")).unwrap();
    assert!(
        file.contains("n060,退職 太郎,nurse|clerk,,,2020-03-31,on_call|night_shift,"),
        "{file}"
    );

    // A roster file that is a link is edited where it points, and stays a link.
    let real = server.data_dir().join("roster-real.csv");
    std::fs::rename(server.data_dir().join("roster.csv"), &real).unwrap();
    std::os::unix::fs::symlink(&real, server.data_dir().join("roster.csv")).unwrap();
    let linked = save(
        &mut admin,
        &[
            ("action", "save"),
            ("original", "n060"),
            ("id", "n060"),
            ("name", "退職 太郎"),
            ("role", "nurse"),
            ("role", "clerk"),
            ("end", "2020-03-31"),
            ("flags", "on_call, night_shift"),
        ],
    );
    assert_eq!(linked.status, 303, "{}", linked.body);
    assert!(
        std::fs::symlink_metadata(server.data_dir().join("roster.csv"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let leftovers: Vec<_> = std::fs::read_dir(server.data_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty(), "no candidate left behind");

    // Kept: the configuration read from scratch has the person (as a restart would).
    let check = server.cli_config(&["rules", "check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(said.contains("staff on the roster: 3"), "{said}");

    // Only administrators.
    add_user(&server, "viewer1", "viewer", "etsuran-sha-2026");
    let mut viewer = Browser::new(server.http);
    viewer.sign_in("viewer1", "etsuran-sha-2026");
    assert_eq!(viewer.get("/settings/roster?id=n060").status, 403);
    let csrf = viewer.get("/search").csrf();
    let forbidden = viewer.post(
        "/settings/roster",
        &[("csrf", &csrf), ("action", "delete"), ("original", "n060")],
    );
    assert_eq!(forbidden.status, 403);

    // Removed; and every change is in the audit trail with what changed.
    let removed = save(&mut admin, &[("action", "delete"), ("original", "n060")]);
    assert_eq!(removed.status, 303, "{}", removed.body);
    let file = std::fs::read_to_string(server.data_dir().join("roster.csv")).unwrap();
    assert!(!file.contains("n060"), "{file}");
    wait("the changes in the audit trail", 20, &|| {
        audit_count(&server, "event.action:roster.change") == 4
    });
    let trail = server.search("event.dataset:mimamori.audit AND event.action:roster.change");
    let messages: Vec<&str> = trail.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("n060 changed") && m.contains("roles nurse → nurse|clerk")),
        "{messages:?}"
    );
    assert!(trail.iter().all(|e| e["user.name"] == "admin"), "{trail:?}");
}

#[test]
fn the_sources_page_shows_the_holes_in_a_sources_record_numbers() {
    let server = Server::start_full("", "", ROSTER);
    let mut admin = setup(&server);
    // Reads without a token are for this machine only: not for what a proxy relays.
    assert_eq!(
        common::http_get(server.http, "/api/v1/search?q=*")
            .unwrap()
            .0,
        200
    );
    for header in ["X-Forwarded-For", "Forwarded", "X-Real-IP"] {
        let (status, _) =
            common::http_get_with(server.http, "/api/v1/search?q=*", &[(header, "10.0.0.5")])
                .unwrap();
        assert_eq!(status, 401, "{header}");
    }
    // The weekly review due is made by itself at start (Monday 08:00 has passed for some week).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !admin
        .get("/reports/weekly")
        .body
        .contains("id=\"weekly-list\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled weekly review"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(server.log().contains("the weekly review is made and kept"));
    let none = admin.get("/sources");
    assert!(none.body.contains("id=\"no-gaps\""), "{}", none.body);
    // An EHR export numbering its rows 1-3, 7, 8, 20: two holes, 3 + 11 rows missing.
    let now = chrono::Utc::now();
    let mut csv = String::from("timestamp,user,action,patient,record_id\n");
    for (i, n) in [1, 2, 3, 7, 8, 20].iter().enumerate() {
        let at = (now - chrono::Duration::minutes(30 - i as i64)).to_rfc3339();
        csv.push_str(&format!("{at},n002,VIEW_CHART,P{n:04},{n}\n"));
    }
    std::fs::write(server.data_dir().join("spool").join("ehr-export.csv"), csv).unwrap();
    wait("the gap event", 30, &|| {
        !server.search("event.action:sequence_gap").is_empty()
    });
    let page = admin.get("/sources");
    assert_eq!(page.status, 200);
    let table = page
        .body
        .split("id=\"gap-table\"")
        .nth(1)
        .expect("a table of gaps");
    let missing: Vec<u64> = table
        .split("class=\"gap-missing\">")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(missing.iter().sum::<u64>(), 14, "{table}");
    assert!(table.contains("<code>ehr-csv</code>"), "{table}");
}

#[test]
fn the_weekly_review_is_made_kept_read_and_signed_off() {
    // Made when first opened here (not by the schedule, before the events below arrive).
    // (Final, so kept, from Monday 00:00 on: the test holds whatever the day and hour.)
    let server = Server::start_full(
        "",
        "",
        &format!("{ROSTER}\n[report]\nweekly = false\nweekly_time = \"00:00\"\n"),
    );
    let mut admin = setup(&server);
    // Three accesses a week ago: last week's.
    let at = chrono::Utc::now() - chrono::Duration::days(7);
    let mut csv = String::from("timestamp,user,action,patient\n");
    for (i, user) in ["n002", "n002", "r001"].iter().enumerate() {
        let t = (at + chrono::Duration::minutes(i as i64)).to_rfc3339();
        csv.push_str(&format!("{t},{user},VIEW_CHART,P0007\n"));
    }
    std::fs::write(server.data_dir().join("spool").join("last-week.csv"), csv).unwrap();
    wait("last week's events", 30, &|| {
        server.search("patient.id:P0007").len() == 3
    });

    let list = admin.get("/reports/weekly");
    assert_eq!(list.status, 200, "{}", list.body);
    let week = list
        .body
        .split("id=\"make-last\" href=\"/reports/weekly/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let page = admin.get(&format!("/reports/weekly/{week}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"unsigned\""));
    let events: u64 = page
        .body
        .split("id=\"events\">")
        .nth(1)
        .and_then(|e| e.split('<').next())
        .and_then(|e| e.parse().ok())
        .unwrap();
    assert!(events >= 3, "{events}");
    let document = admin.get(&format!("/reports/weekly/{week}/report.html"));
    assert_eq!(document.status, 200);
    assert!(
        document
            .body
            .contains(&format!("週次アクセス確認報告 {week}"))
    );
    assert!(
        document
            .header("content-security-policy")
            .is_some_and(|c| c.contains("style-src 'unsafe-inline'") && !c.contains("script")),
        "inline styles only"
    );
    let pdf = admin.get(&format!("/reports/weekly/{week}/report.pdf"));
    assert_eq!(pdf.status, 200, "{}", pdf.body);
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(pdf.body.starts_with("%PDF"), "printed by Chromium");
    assert_eq!(
        admin.get("/reports/weekly/2099-W01").status,
        400,
        "not over yet"
    );
    assert_eq!(
        admin.get("/reports/weekly/1999-W01").status,
        400,
        "too long ago"
    );
    assert_eq!(
        admin.get("/reports/weekly/2026-W99").status,
        400,
        "no such week"
    );

    // Viewers read it; an auditor signs it off.
    add_user(&server, "viewer1", "viewer", "etsuran-sha-2026");
    let mut viewer = Browser::new(server.http);
    viewer.sign_in("viewer1", "etsuran-sha-2026");
    let read = viewer.get(&format!("/reports/weekly/{week}"));
    assert_eq!(read.status, 200);
    assert!(!read.body.contains("signoff-form"));
    // A review a viewer opens first is provisional: made afresh, not kept (nobody can fill
    // the archive, or freeze a review before its logs are in, by looking).
    let early = viewer.get("/reports/weekly/2026-01");
    assert_eq!(early.status, 200, "{}", early.body);
    assert!(early.body.contains("id=\"provisional\""), "{}", early.body);
    assert!(!admin.get("/reports/weekly").body.contains(">2026-01</a>"));
    let refused = viewer.post(
        &format!("/reports/weekly/{week}/signoff"),
        &[("csrf", &read.csrf()), ("findings", "x")],
    );
    assert_eq!(refused.status, 403);
    let csrf = page.csrf();
    let signed = admin.post(
        &format!("/reports/weekly/{week}/signoff"),
        &[
            ("csrf", &csrf),
            ("findings", "夜間の閲覧なし"),
            ("actions", "なし"),
            ("comments", ""),
        ],
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    let page = admin.get(&format!("/reports/weekly/{week}"));
    assert!(page.body.contains("id=\"signoffs\"") && page.body.contains("夜間の閲覧なし"));
    let list = admin.get("/reports/weekly");
    assert!(list.body.contains(&format!(">{week}</a>")));
    assert!(
        list.body.contains("admin ("),
        "signed by admin: {}",
        list.body
    );
    wait("the sign-off in the audit trail", 20, &|| {
        audit_count(&server, "event.action:report.signoff") == 1
    });
}
