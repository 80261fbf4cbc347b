//! The web UI over real HTTP: first-run setup, sign-in, the refusals (no session, an expired
//! session, a forged or missing CSRF token, a token of the wrong scope, a viewer trying an
//! admin's action) and that each is audited; every page in both languages; the investigation
//! of an alert through the forms, seen the same through the API.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::Server;
use common::delivery::{ROSTER, raise_alerts, wait};
use common::web::Browser;

const ADMIN_PASSWORD: &str = "kanri-sha-2026";

/// `mimamori user add NAME --role ROLE --password-stdin`.
fn add_user(server: &Server, name: &str, role: &str, password: &str) {
    let mut child = std::process::Command::new(common::BIN)
        .args(["--config"])
        .arg(&server.config)
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first-run setup through its form: the admin account, signed in.
fn setup(server: &Server) -> Browser {
    let mut admin = Browser::new(server.http);
    let home = admin.get("/");
    assert_eq!(home.status, 303);
    assert_eq!(home.header("location"), Some("/setup"));
    let page = admin.get("/setup");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("初期設定"), "Japanese by default");
    let token = page.csrf();
    let mismatch = admin.post(
        "/setup",
        &[
            ("csrf", &token),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("password2", "something-else"),
        ],
    );
    assert!(mismatch.body.contains("一致しません"), "{}", mismatch.body);
    let token = mismatch.csrf();
    let done = admin.post(
        "/setup",
        &[
            ("csrf", &token),
            ("name", "admin"),
            ("password", ADMIN_PASSWORD),
            ("password2", ADMIN_PASSWORD),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(admin.cookies.contains_key("mimamori_session"));
    admin
}

fn audit_count(server: &Server, query: &str) -> usize {
    server
        .search(&format!("event.dataset:mimamori.audit AND {query}"))
        .len()
}

#[test]
fn sign_in_sessions_csrf_roles_and_tokens_refuse_and_audit() {
    let server = Server::start_full(
        "",
        "ingest_tokens = [\"ingest-token-0001-abcdef\"]\nread_tokens = [\"read-token-0001-abcdef\"]\nadmin_tokens = [\"admin-token-0001-abcdef\"]",
        "",
    );
    // No session: pages send to the sign-in page, forms are refused.
    let mut stranger = Browser::new(server.http);
    let page = stranger.get("/search?q=x");
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        Some("/login?next=%2Fsearch%3Fq%3Dx")
    );
    assert_eq!(stranger.post("/users", &[("name", "x")]).status, 303);

    let mut admin = setup(&server);
    // The setup is over once an account exists.
    assert_eq!(stranger.get("/setup").status, 303);
    let search = admin.get("/search");
    assert_eq!(search.status, 200);
    for (header, expected) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(search.header(header), Some(expected), "{header}");
    }
    let csp = search.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(!search.body.contains("<script>"), "no inline script");
    let cookie = admin
        .get("/login")
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with("mimamori_form"))
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    add_user(&server, "viewer1", "viewer", "miru-dake-2026");
    add_user(&server, "auditor1", "auditor", "kansa-tanto-2026");

    // A form without the session's token, with a wrong one, or from another site.
    let csrf = admin.get("/users").csrf();
    let fields = |token: &str| {
        vec![
            ("csrf", token.to_owned()),
            ("name", "intruder".to_owned()),
            ("role", "admin".to_owned()),
            ("password", "long-enough-password".to_owned()),
        ]
    };
    let post = |b: &mut Browser, f: Vec<(&str, String)>, extra: &[(&str, &str)]| {
        let body: Vec<String> = f
            .iter()
            .map(|(k, v)| format!("{k}={}", common::web::enc(v)))
            .collect();
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        b.request("POST", "/users", &headers, &body.join("&"))
    };
    assert_eq!(
        post(&mut admin, fields(""), &[]).status,
        403,
        "missing token"
    );
    assert_eq!(
        post(&mut admin, fields("forged"), &[]).status,
        403,
        "forged token"
    );
    assert_eq!(
        post(
            &mut admin,
            fields(&csrf),
            &[("Origin", "http://evil.example")]
        )
        .status,
        403,
        "another site's form"
    );
    let listed = admin.get("/users");
    assert!(!listed.body.contains("intruder"), "no account was added");
    assert_eq!(
        post(&mut admin, fields(&csrf), &[]).status,
        303,
        "the real form works"
    );

    // A viewer may search but not administer or triage.
    let mut viewer = Browser::new(server.http);
    viewer.sign_in("viewer1", "miru-dake-2026");
    assert_eq!(viewer.get("/search").status, 200);
    assert_eq!(viewer.get("/users").status, 403);
    assert_eq!(viewer.get("/settings").status, 403);
    let token = viewer.get("/search").csrf();
    let refused = viewer.post(
        "/users",
        &[
            ("csrf", &token),
            ("name", "x2"),
            ("role", "admin"),
            ("password", "long-enough-pw"),
        ],
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        viewer
            .post("/alerts/1", &[("csrf", &token), ("action", "acknowledge")])
            .status,
        403
    );

    // An idle session ends.
    let accounts = web::accounts::AccountDb::open(&server.data_dir().join("accounts.db")).unwrap();
    accounts
        .age_sessions(chrono::Duration::minutes(31))
        .unwrap();
    let expired = viewer.get("/search");
    assert_eq!(expired.status, 303, "an idle session is over");
    assert!(expired.header("location").unwrap().starts_with("/login"));

    // Repeated failures lock the account, even for the right password afterwards.
    let mut guesser = Browser::new(server.http);
    for _ in 0..5 {
        let token = guesser.get("/login").csrf();
        let answer = guesser.post(
            "/login",
            &[
                ("csrf", &token),
                ("name", "auditor1"),
                ("password", "wrong-guess-123"),
            ],
        );
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("違います"), "{}", answer.body);
    }
    let token = guesser.get("/login").csrf();
    let locked = guesser.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", "auditor1"),
            ("password", "kansa-tanto-2026"),
        ],
    );
    assert_eq!(locked.status, 401);
    assert!(locked.body.contains("ロック"), "{}", locked.body);

    // API tokens keep to their scope.
    let api = |path: &str, method: &str, token: &str| {
        let mut b = Browser::new(server.http);
        b.request(
            method,
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            if method == "POST" {
                r#"{"status":"acknowledged"}"#
            } else {
                ""
            },
        )
        .status
    };
    assert_eq!(
        api("/api/v1/search?q=*", "GET", "ingest-token-0001-abcdef"),
        401
    );
    assert_eq!(
        api("/api/v1/search?q=*", "GET", "read-token-0001-abcdef"),
        200
    );
    assert_eq!(
        api("/api/v1/alerts/1/status", "POST", "read-token-0001-abcdef"),
        401
    );
    assert_eq!(
        api("/api/v1/search?q=*", "GET", "admin-token-0001-abcdef"),
        200
    );

    // API tokens made on the tokens page: shown once, scoped, revocable. (The admin's session
    // aged out with the others above.)
    admin.sign_in("admin", ADMIN_PASSWORD);
    let page = admin.get("/tokens");
    let csrf = page.csrf();
    let created = admin.post(
        "/tokens",
        &[
            ("csrf", &csrf),
            ("action", "add"),
            ("name", "soc-search"),
            ("scope", "search"),
        ],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let token = created
        .body
        .split("id=\"new-token\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap()
        .to_owned();
    assert!(token.starts_with("mmr_"), "{token}");
    assert!(!admin.get("/tokens").body.contains(&token), "shown once");
    assert_eq!(api("/api/v1/search?q=*", "GET", &token), 200);
    assert_eq!(api("/api/v1/alerts", "GET", &token), 403, "no alerts:read");
    assert_eq!(
        api("/api/v1/alerts/1/status", "POST", &token),
        403,
        "no alerts:write"
    );
    let revoked = admin.post(
        "/tokens",
        &[
            ("csrf", &csrf),
            ("action", "revoke"),
            ("name", "soc-search"),
        ],
    );
    assert_eq!(revoked.status, 303);
    assert_eq!(api("/api/v1/search?q=*", "GET", &token), 401, "revoked");
    let out = server.cli_config(&["token", "add", "feed", "--scope", "alerts:read"]);
    assert!(out.status.success());
    let feed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(api("/api/v1/alerts", "GET", &feed), 200);
    assert_eq!(api("/api/v1/search?q=*", "GET", &feed), 403);
    assert_eq!(api("/api/v1/ingest", "POST", &feed), 403);
    let listed = server.cli_config(&["token", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("soc-search\tsearch\trevoked")
            && listed.contains("feed\talerts:read\tlive"),
        "{listed}"
    );
    assert!(!listed.contains(&feed), "never the token itself");

    // Every refusal and sign-in is in the store as an audit event.
    for (what, query, least) in [
        ("failed sign-ins", "event.action:login_failed", 5),
        (
            "the viewer's sign-in",
            "event.action:login AND user.name:viewer1",
            1,
        ),
        (
            "accounts added",
            "event.action:user.add AND user.name:admin",
            2,
        ),
        (
            "the viewer's refusals",
            "event.action:access_denied AND user.name:viewer1",
            4,
        ),
        (
            "the forged forms",
            "event.action:access_denied AND user.name:admin",
            3,
        ),
        (
            "the refused tokens",
            "event.action:access_denied AND message:token",
            5,
        ),
        (
            "the token's search",
            "event.action:search AND user.name:\"token:soc-search\"",
            1,
        ),
        ("the token made", "event.action:token.add", 1),
    ] {
        if !(0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            audit_count(&server, query) >= least
        }) {
            let all: Vec<String> = server
                .search("event.dataset:mimamori.audit")
                .iter()
                .map(|e| format!("{} {} {}", e["user.name"], e["event.action"], e["message"]))
                .collect();
            panic!(
                "{what}: {query} found {} of {least}: {all:#?}\n{}",
                audit_count(&server, query),
                server.log()
            );
        }
    }
    assert!(server.metric("ui_refused_total{reason=\"csrf\"}") >= 3.0);
}

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
        assert!(ja.body.contains("<html lang=\"ja\">"), "{path}");
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
fn races_rebinding_redirects_and_self_judgement_are_refused() {
    let server = Server::start_full("", "", ROSTER);
    // Two first-run setups at once: one admin.
    let racers: Vec<Browser> = (0..6)
        .map(|_| {
            let mut b = Browser::new(server.http);
            b.get("/setup");
            b
        })
        .collect();
    let outcomes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = racers
            .into_iter()
            .enumerate()
            .map(|(i, mut b)| {
                s.spawn(move || {
                    let token = b.cookies["mimamori_form"].clone();
                    let name = format!("admin{i}");
                    b.post(
                        "/setup",
                        &[
                            ("csrf", &token),
                            ("name", &name),
                            ("password", ADMIN_PASSWORD),
                            ("password2", ADMIN_PASSWORD),
                        ],
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        outcomes.iter().filter(|s| **s == 303).count(),
        1,
        "{outcomes:?}"
    );
    let listed = server.cli_config(&["user", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 1);

    // A page elsewhere whose name now points here (DNS rebinding) is not served.
    let mut rebound = Browser::new(server.http);
    let answer = rebound.request("GET", "/setup", &[("Host", "evil.example:8480")], "");
    assert_eq!(answer.status, 421);
    let answer = rebound.request("GET", "/api/v1/search?q=*", &[("Host", "evil.example")], "");
    assert_eq!(answer.status, 421);

    // Guesses sent at once do not outrun the lockout.
    add_user(&server, "auditor1", "auditor", "kansa-tanto-2026");
    std::thread::scope(|s| {
        for _ in 0..12 {
            s.spawn(|| {
                let mut b = Browser::new(server.http);
                let token = b.get("/login").csrf();
                b.post(
                    "/login",
                    &[
                        ("csrf", &token),
                        ("name", "auditor1"),
                        ("password", "wrong-guess-123"),
                    ],
                );
            });
        }
    });
    let mut late = Browser::new(server.http);
    let token = late.get("/login").csrf();
    let refused = late.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", "auditor1"),
            ("password", "kansa-tanto-2026"),
        ],
    );
    assert_eq!(refused.status, 401, "locked after the burst");

    // After signing in, only this server's paths: no `/\t/host` (a browser reads `//host`).
    let mut admin = Browser::new(server.http);
    let token = admin.get("/login").csrf();
    let name = server
        .cli_config(&["user", "list"])
        .stdout
        .split(|b| *b == b'\t')
        .next()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap();
    let answer = admin.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", &name),
            ("password", ADMIN_PASSWORD),
            ("next", "/\t/evil.example/"),
        ],
    );
    assert_eq!(answer.header("location"), Some("/search"));

    // Nobody judges an alert about themselves.
    add_user(&server, "n002", "auditor", "kango-shi-2026x");
    raise_alerts(&server);
    wait("alerts raised", 30, &|| {
        common::delivery::alerts(&server).len() >= 2
    });
    let id = common::delivery::alerts(&server)
        .iter()
        .find(|a| a["user"] == "n002")
        .map(|a| a["id"].as_i64().unwrap())
        .unwrap();
    let mut nurse = Browser::new(server.http);
    nurse.sign_in("n002", "kango-shi-2026x");
    let token = nurse.get(&format!("/alerts/{id}")).csrf();
    let close = nurse.post(
        &format!("/alerts/{id}"),
        &[
            ("csrf", &token),
            ("action", "close"),
            ("resolution", "false_positive"),
            ("reason", "it was me"),
        ],
    );
    assert_eq!(close.status, 403, "{}", close.body);
    let comment = nurse.post(
        &format!("/alerts/{id}"),
        &[
            ("csrf", &token),
            ("action", "comment"),
            ("reason", "主治医の指示でした"),
        ],
    );
    assert_eq!(comment.status, 303, "a comment is welcome");
    let assign = nurse.post(
        &format!("/alerts/{id}"),
        &[
            ("csrf", &token),
            ("action", "assign"),
            ("assignee", "<script>"),
        ],
    );
    assert_eq!(assign.status, 400, "only reviewers' accounts");
}

#[test]
fn a_second_factor_guards_the_sign_in_and_only_its_owner_or_an_admin_touches_it() {
    let server = Server::start_full("", "", "");
    let mut admin = setup(&server);
    add_user(&server, "auditor1", "auditor", "kansa-tanto-2026");
    let mut auditor = Browser::new(server.http);
    auditor.sign_in("auditor1", "kansa-tanto-2026");
    let token = auditor.get("/account").csrf();
    let started = auditor.post("/account/totp", &[("csrf", &token), ("action", "start")]);
    let secret = started
        .body
        .split("id=\"secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_owned();
    let code = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .with_account_name("auditor1")
        .build()
        .unwrap()
        .generate_current()
        .to_string();
    let confirmed = auditor.post(
        "/account/totp",
        &[("csrf", &token), ("action", "confirm"), ("code", &code)],
    );
    let recovery: Vec<String> = confirmed
        .body
        .split("id=\"recovery\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(recovery.len(), 10, "{}", confirmed.body);

    // Another's second factor is an administrator's business only.
    assert_eq!(auditor.get("/users/admin/totp").status, 403);
    let token = auditor.get("/search").csrf();
    assert_eq!(
        auditor
            .post("/users/admin/totp", &[("csrf", &token)])
            .status,
        403
    );

    // Signing in now takes the password and then a code.
    let mut again = Browser::new(server.http);
    let token = again.get("/login").csrf();
    let step = again.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", "auditor1"),
            ("password", "kansa-tanto-2026"),
            ("next", "/alerts"),
        ],
    );
    assert_eq!(step.header("location"), Some("/login/code?next=%2Falerts"));
    assert_eq!(
        again.get("/search").status,
        303,
        "nothing but the code page yet"
    );
    let page = again.get("/login/code?next=%2Falerts");
    let token = page.csrf();
    let wrong = again.post(
        "/login/code",
        &[("csrf", &token), ("code", "000000"), ("next", "/alerts")],
    );
    assert_eq!(wrong.status, 401);
    let replayed = again.post(
        "/login/code",
        &[
            ("csrf", &wrong.csrf()),
            ("code", &code),
            ("next", "/alerts"),
        ],
    );
    assert_eq!(
        replayed.status, 401,
        "the code that confirmed the set-up is used"
    );
    let done = again.post(
        "/login/code",
        &[
            ("csrf", &replayed.csrf()),
            ("code", &recovery[0]),
            ("next", "/alerts"),
        ],
    );
    assert_eq!(done.header("location"), Some("/alerts"), "{}", done.body);
    assert_eq!(again.get("/alerts").status, 200);

    // A lost phone: the administrator turns it off.
    let page = admin.get("/users/auditor1/totp");
    assert!(page.body.contains("id=\"reset\""));
    let reset = admin.post("/users/auditor1/totp", &[("csrf", &page.csrf())]);
    assert_eq!(reset.status, 303);
    let mut plain = Browser::new(server.http);
    plain.sign_in("auditor1", "kansa-tanto-2026");
    assert_eq!(plain.get("/search").status, 200);
    wait("second-factor changes audited", 20, &|| {
        audit_count(&server, "event.action:totp.enable") == 1
            && audit_count(&server, "event.action:totp.reset") == 1
            && audit_count(&server, "event.action:access_denied AND user.name:auditor1") >= 2
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
    // Plain HTTP on the HTTPS port gets nowhere.
    assert!(common::http_get(server.http, "/login").is_none_or(|(s, _)| s != 200));
}
