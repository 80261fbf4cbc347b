//! The web UI's pages over real HTTP: every page in both languages, the search's facets and
//! export, the patient report (and the report's own view in it), the investigation of an
//! alert through the forms (seen the same through the API), and HTTPS.

mod common;

use common::Server;
use common::delivery::{ROSTER, raise_alerts, wait};
use common::web::{add_user, audit_count, setup};

#[test]
fn pages_in_both_languages_reports_export_and_the_investigation_of_an_alert() {
    let server = Server::start_full("", "", ROSTER);
    let mut admin = setup(&server);
    add_user(&server, "auditor1", "auditor", "kansa-tanto-2026");
    raise_alerts(&server);
    wait("alerts raised", 30, &|| {
        common::delivery::alerts(&server).len() >= 2
    });
    wait("events searchable", 20, &|| {
        server.search("user.name:n002").len() == 1
    });

    let pages = [
        "/search?q=P0099&range=24h",
        "/reports/patient?patient=P0099&range=7d",
        "/reports/staff?user=n002&range=7d",
        "/alerts",
        "/sources",
        "/settings",
        "/users",
        "/tokens",
    ];
    for path in pages {
        let ja = admin.get(path);
        assert_eq!(ja.status, 200, "{path}: {}", ja.body);
        assert!(
            ja.body.contains("<html lang=\"ja\">"),
            "{path}: {}",
            ja.body
        );
    }
    admin.headers = vec![("Accept-Language".into(), "en-US,en;q=0.9".into())];
    for path in pages {
        let en = admin.get(path);
        assert_eq!(en.status, 200, "{path}: {}", en.body);
        assert!(en.body.contains("<html lang=\"en\">"), "{path}");
        assert!(en.body.contains("Sign out"), "{path}");
    }
    // The account's choice wins over the browser's.
    let token = admin.get("/search").csrf();
    let switched = admin.post(
        "/language",
        &[("csrf", &token), ("lang", "ja"), ("next", "/alerts")],
    );
    assert_eq!(switched.header("location"), Some("/alerts"));
    assert!(admin.get("/alerts").body.contains("アラート"));

    // The search: the count matches the CLI, a facet narrows it.
    let page = admin.get("/search?q=&range=24h");
    let facet = page
        .body
        .split("class=\"facet\" data-field=\"user.name\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .map(|href| {
            let href = href.split('"').next().unwrap();
            href.replace("&amp;", "&").replace("&#x2f;", "/")
        })
        .unwrap();
    let narrowed = admin.get(&facet);
    let total: usize = narrowed
        .body
        .split("id=\"total\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .and_then(|t| t.parse().ok())
        .unwrap();
    let user = facet
        .split("user.name%3A%22")
        .nth(1)
        .unwrap()
        .split("%22")
        .next()
        .unwrap();
    assert_eq!(
        total,
        server.search(&format!("user.name:{user}")).len(),
        "{facet}"
    );

    // The patient report: the nurse's access, not explained (no appointment file), and the
    // report's own view is recorded against the patient.
    let views = "event.action:report.patient AND patient.id:P0099";
    wait("earlier views are audited", 20, &|| {
        audit_count(&server, views) == 2
    });
    let report = admin.get("/reports/patient?patient=P0099&range=7d");
    assert!(report.body.contains("n002 (山田花子)"), "{}", report.body);
    assert!(report.body.contains("class=\"unexplained\""));
    wait("the report view is audited", 20, &|| {
        audit_count(&server, views) == 3
    });
    let again = admin.get("/reports/patient?patient=P0099&range=7d");
    assert!(
        again.body.contains("mimamori での閲覧"),
        "the first view is an access too"
    );

    // CSV export.
    let csv = admin.get("/search/export.csv?q=user.name%3An002&range=24h");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.body.starts_with('\u{feff}'), "a BOM for Excel");
    assert_eq!(csv.body.lines().count(), 2, "{}", csv.body);
    assert!(csv.body.contains("\"P0099\""));

    // The investigation through the forms.
    let id = common::delivery::alerts(&server)
        .iter()
        .find(|a| a["rule"] == "sensitive_records")
        .map(|a| a["id"].as_i64().unwrap())
        .unwrap();
    let path = format!("/alerts/{id}");
    let page = admin.get(&path);
    assert!(page.body.contains("id=\"evidence\""));
    let token = page.csrf();
    for fields in [
        vec![("action", "acknowledge")],
        vec![("action", "assign"), ("assignee", "auditor1")],
        vec![("action", "comment"), ("reason", "本人に確認中")],
        vec![
            ("action", "close"),
            ("resolution", "false_positive"),
            ("reason", "担当患者の急変対応"),
        ],
    ] {
        let mut form = vec![("csrf", token.as_str())];
        form.extend(fields);
        let answer = admin.post(&path, &form);
        assert_eq!(answer.status, 303, "{form:?}: {}", answer.body);
    }
    let bad = admin.post(
        &path,
        &[("csrf", &token), ("action", "close"), ("reason", "x")],
    );
    assert_eq!(bad.status, 400, "closing needs a judgement");
    assert!(bad.body.contains("判定"), "{}", bad.body);
    let (status, body) = common::http_get(server.http, &format!("/api/v1/alerts/{id}")).unwrap();
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let alert = &answer["alert"];
    assert_eq!(alert["status"], "closed");
    assert_eq!(alert["resolution"], "false_positive");
    assert_eq!(alert["assignee"], "auditor1");
    let kinds: Vec<&str> = alert["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["status", "assigned", "comment", "status"]);
    assert!(
        alert["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["by"] == "admin")
    );
    let page = admin.get(&path);
    assert!(page.body.contains("誤検知だった"), "the judgement is shown");
    wait("the changes are audited", 20, &|| {
        audit_count(&server, "event.action:alert.change") == 4
    });
}

#[test]
fn https_with_a_certificate_made_at_first_start_and_secure_cookies() {
    let mut server = Server::prepare("", "tls = true", "");
    let log = std::fs::File::create(server.dir.path().join("serve.log")).unwrap();
    server.child = Some(
        std::process::Command::new(common::BIN)
            .arg("--config")
            .arg(&server.config)
            .arg("serve")
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-D", "-", "-o", "/dev/null"])
            .arg(format!("https://{}{path}", server.http))
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait("HTTPS up", 30, &|| {
        curl("/healthz").starts_with("HTTP/1.1 200")
    });
    let key = server.data_dir().join("tls/key.pem");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the key is the owner's only");
    let out = std::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .arg(format!("https://{}/login", server.http))
        .output()
        .expect("curl is installed");
    let head = String::from_utf8_lossy(&out.stdout);
    assert!(
        head.starts_with("HTTP/1.1 303") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let setup = std::process::Command::new("curl")
        .args(["-sk", "-D", "-", "-o", "/dev/null"])
        .arg(format!("https://{}/setup", server.http))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&setup.stdout);
    assert!(
        head.contains("mimamori_form=") && head.contains("; Secure"),
        "{head}"
    );
    assert!(
        head.to_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    // Plain HTTP on the HTTPS port gets nowhere.
    assert!(common::http_get(server.http, "/login").is_none_or(|(s, _)| s != 200));
}
