//! The web UI's safety over real HTTP: first-run setup, sign-in, the refusals (no session, an
//! expired session, a forged or missing CSRF token, a token of the wrong scope, a viewer trying
//! an admin's action) and that each is audited; races, rebinding, the second factor.

mod common;

use std::io::Write;

use common::Server;
use common::delivery::{ROSTER, raise_alerts, wait};
use common::web::{ADMIN_PASSWORD, Browser, add_user, audit_count, setup};

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
    // The setup token for another machine is in a file only the service's user reads, never
    // in the log (which the journal keeps).
    let token_file = server.data_dir().join("setup-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(token.trim().len() >= 16 && !server.log().contains(token.trim()));
    assert!(server.log().contains("setup-token"), "{}", server.log());

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
    // A stream open with a token that is then revoked ends; the token opens no other.
    let mut stream = std::net::TcpStream::connect(server.http).unwrap();
    write!(
        stream,
        "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {feed}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        server
            .cli_config(&["token", "revoke", "feed"])
            .status
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    loop {
        assert!(std::time::Instant::now() < deadline, "the stream goes on");
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    assert_eq!(api("/api/v1/alerts/stream", "GET", &feed), 401);

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
        (
            "the scope refusal, naming the token",
            "event.action:access_denied AND user.name:\"token:soc-search\"",
            1,
        ),
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

    // Guessing codes counts against the account: five wrong ones lock it, password and all.
    for _ in 0..5 {
        let mut guesser = Browser::new(server.http);
        let token = guesser.get("/login").csrf();
        guesser.post(
            "/login",
            &[
                ("csrf", &token),
                ("name", "auditor1"),
                ("password", "kansa-tanto-2026"),
            ],
        );
        let token = guesser.get("/login/code").csrf();
        guesser.post("/login/code", &[("csrf", &token), ("code", "999999")]);
    }
    let mut locked = Browser::new(server.http);
    let token = locked.get("/login").csrf();
    let refused = locked.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", "auditor1"),
            ("password", "kansa-tanto-2026"),
        ],
    );
    assert_eq!(refused.status, 401, "locked by the wrong codes");
    // The administrator may not strip their own second factor this way.
    let token = admin.get("/search").csrf();
    assert_eq!(
        admin.post("/users/admin/totp", &[("csrf", &token)]).status,
        403
    );

    // A lost phone: the administrator turns it off.
    let page = admin.get("/users/auditor1/totp");
    assert!(page.body.contains("id=\"reset\""));
    let reset = admin.post("/users/auditor1/totp", &[("csrf", &page.csrf())]);
    assert_eq!(reset.status, 303);
    assert_eq!(
        again.get("/alerts").status,
        303,
        "its sessions ended with it"
    );
    // (The account stays locked from the guesses for its 15 minutes.)
    wait("second-factor changes audited", 20, &|| {
        audit_count(&server, "event.action:totp.enable") == 1
            && audit_count(&server, "event.action:totp.reset") == 1
            && audit_count(&server, "event.action:access_denied AND user.name:auditor1") >= 2
    });
}

#[test]
fn an_unreadable_account_database_turns_the_ui_off_and_keeps_reads_closed() {
    let mut server = Server::prepare("", "", "");
    std::fs::write(server.data_dir().join("accounts.db"), vec![0x5a; 8192]).unwrap();
    server.spawn();
    let (status, _) = common::http_get(server.http, "/api/v1/search?q=*").unwrap();
    assert_eq!(status, 401, "no token can be checked: reads are closed");
    let (status, _) = common::http_get(server.http, "/login").unwrap();
    assert_eq!(status, 404, "the pages are off");
    assert!(server.log().contains("the account database cannot be used"));
    let (status, _) = common::http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 200, "collection goes on");
}
