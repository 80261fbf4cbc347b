//! Alert delivery end to end, with real receivers: HTTP receivers on loopback that check the
//! exact Slack, Teams, Chatwork, LINE WORKS and signed-webhook formats, a receiver that fails
//! and comes back, a `kill -9` with messages still queued, the live SSE stream resumed with
//! `Last-Event-ID`, a real SMTP server (aiosmtpd) with STARTTLS and login, and a syslog
//! collector over TLS receiving RFC 5424 and CEF. No patient data and no secret leaves by
//! default.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::receiver::{Received, Receiver};
use common::{Server, http_get, http_post, make_cert};

const ROSTER: &str = r#"
[[roster.staff]]
id = "n002"
name = "山田花子"
roles = ["nurse"]
site = "main"
[[roster.staff]]
id = "r001"
name = "受付一郎"
roles = ["reception"]
[detections]
lateness_seconds = 1
[detections.sensitive_records]
vip_patients = ["P0099"]
"#;

const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const CHATWORK_TOKEN: &str = "cw-token-0123456789abcdef";
const LW_SECRET: &str = "lw-client-secret-0123456789";

fn secret_b() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    )
}

/// Sends EHR events that raise alerts: reception exporting 300 records (bulk_export and
/// access_outside_role for r001), and a nurse opening a VIP's chart (sensitive_records, whose
/// explanation names patient P0099).
fn raise_alerts(server: &Server) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    writeln!(
        tcp,
        "<134>1 {now} ehr01 ehr - - - user=r001 action=EXPORT count=300 src=10.10.1.12\n\
         <134>1 {now} ehr01 ehr - - - user=n002 action=VIEW_CHART patient=P0099 src=10.10.1.23"
    )
    .unwrap();
}

fn wait(what: &str, secs: u64, f: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alerts(server: &Server) -> Vec<serde_json::Value> {
    let (_, body) = http_get(server.http, "/api/v1/alerts").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["alerts"].as_array().unwrap().clone()
}

/// The alert ids named in accepted webhook bodies.
fn webhook_alert_ids(got: &[Received]) -> Vec<i64> {
    let mut ids: Vec<i64> = got
        .iter()
        .flat_map(|r| {
            r.json()["data"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["alert_id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Checks the Standard Webhooks signature with `secret`.
fn signature_ok(r: &Received, secret: &str) -> bool {
    use hmac::{KeyInit, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let (id, ts) = (
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", r.body).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    // The receiver's replay window: 5 minutes.
    age.abs() < 300
        && r.header("webhook-signature")
            .unwrap()
            .split(' ')
            .any(|s| s == expected)
}

/// A small JSON Schema check for the subset `schemas/alert.v1.json` uses: type, required,
/// properties, additionalProperties = false, enum, items, minItems, minimum, $ref to $defs.
fn validate(schema: &serde_json::Value, root: &serde_json::Value, v: &serde_json::Value, at: &str) {
    let schema = match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => &root["$defs"][r.trim_start_matches("#/$defs/")],
        None => schema,
    };
    if let Some(t) = schema.get("type").and_then(|t| t.as_str()) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        assert!(ok, "{at}: expected {t}, got {v}");
    }
    if let Some(e) = schema.get("enum").and_then(|e| e.as_array()) {
        assert!(e.contains(v), "{at}: {v} is not one of {e:?}");
    }
    if let Some(min) = schema.get("minimum").and_then(|m| m.as_i64()) {
        assert!(v.as_i64().unwrap() >= min, "{at}: below {min}");
    }
    if let Some(f) = schema.get("format").and_then(|f| f.as_str())
        && f == "date-time"
    {
        assert!(
            chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).is_ok(),
            "{at}: not a date-time"
        );
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            assert!(obj.contains_key(r.as_str().unwrap()), "{at}: {r} missing");
        }
        let props = schema.get("properties").and_then(|p| p.as_object());
        for (k, value) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => validate(s, root, value, &format!("{at}.{k}")),
                None => assert!(
                    schema.get("additionalProperties") != Some(&serde_json::Value::Bool(false)),
                    "{at}: {k} is not in the schema"
                ),
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = schema.get("minItems").and_then(|m| m.as_u64()) {
            assert!(items.len() as u64 >= min, "{at}: fewer than {min} items");
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(s, root, item, &format!("{at}[{i}]"));
            }
        }
    }
}

fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/alert.v1.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rsa_key(dir: &Path) -> String {
    let path = dir.join("lineworks.key");
    let status = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    path.display().to_string()
}

#[test]
fn every_chat_and_webhook_format_arrives_grouped_signed_and_without_patient_data() {
    let rx = Receiver::start();
    let keys = tempfile::tempdir().unwrap();
    let key = rsa_key(keys.path());
    let (a, b) = (SECRET_A, secret_b());
    let channels = format!(
        r#"
[delivery]
group_wait_seconds = 1
link_base = "https://mimamori.clinic.local:8480"
appliance_name = "clinic-a"
[[channels]]
name = "slack"
kind = "slack"
url = "{slack}"
min_interval_ms = 0
[[channels]]
name = "teams"
kind = "teams"
url = "{teams}"
min_interval_ms = 0
[[channels]]
name = "chatwork"
kind = "chatwork"
url = "{base}"
token = "{CHATWORK_TOKEN}"
room_id = "4242"
min_interval_ms = 0
[[channels]]
name = "soc"
kind = "webhook"
url = "{hook}"
secrets = ["{a}", "{b}"]
[[channels]]
name = "soc-trusted"
kind = "webhook"
url = "{trusted}"
secrets = ["{a}"]
include_patient_data = true
[[channels]]
name = "lineworks"
kind = "lineworks"
url = "{lw}"
auth_url = "{lwauth}"
bot_id = "B1"
client_id = "C1"
client_secret = "{LW_SECRET}"
service_account = "sa@example"
private_key_file = "{key}"
channel_id = "room-7"
min_interval_ms = 0
"#,
        slack = rx.url("/slack/T000/B000/XXXX"),
        teams = rx.url("/teams/workflows/abc"),
        base = rx.url("/chatwork"),
        hook = rx.url("/hook"),
        trusted = rx.url("/trusted"),
        lw = rx.url("/lw/v1.0"),
        lwauth = rx.url("/lw/token"),
    );
    let server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    let raised = alerts(&server);
    wait("every channel told of every alert", 60, &|| {
        let got = rx.accepted("/hook");
        webhook_alert_ids(&got).len() >= 3
            && rx.accepted("/trusted").len() >= 3
            && rx.accepted("/slack").len() >= 3
            && rx.accepted("/teams").len() >= 3
            && rx.accepted("/chatwork").len() >= 3
            && rx.accepted("/lw/v1.0").len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    // Grouped by rule + user + site: one message per alert here, never more.
    for prefix in [
        "/hook",
        "/trusted",
        "/slack",
        "/teams",
        "/chatwork",
        "/lw/v1.0",
    ] {
        assert_eq!(rx.accepted(prefix).len(), raised.len(), "{prefix}");
    }
    // Signed webhooks: both secrets sign (rotation); the body validates against the schema.
    let schema = schema();
    for r in rx.accepted("/hook") {
        assert!(
            signature_ok(&r, SECRET_A) && signature_ok(&r, &secret_b()),
            "{r:?}"
        );
        assert!(r.header("webhook-id").unwrap().starts_with("mimamori-"));
        let body = r.json();
        validate(&schema, &schema, &body, "body");
        let doc = &body["data"]["alerts"][0];
        assert_eq!(doc["appliance"], "clinic-a");
        assert!(
            doc["link"]
                .as_str()
                .unwrap()
                .starts_with("https://mimamori.clinic.local:8480/alerts/")
        );
        assert!(doc.get("patients").is_none());
    }
    // Slack: text + blocks.
    for r in rx.accepted("/slack") {
        let v = r.json();
        assert!(v["text"].as_str().unwrap().starts_with("[mimamori]"), "{v}");
        assert_eq!(v["blocks"][0]["type"], "header");
        assert_eq!(v["blocks"][1]["type"], "section");
    }
    // Teams Workflows: a message with an Adaptive Card.
    for r in rx.accepted("/teams") {
        let v = r.json();
        assert_eq!(v["type"], "message");
        assert_eq!(
            v["attachments"][0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(v["attachments"][0]["content"]["type"], "AdaptiveCard");
    }
    // Chatwork: the room's messages, the token header, a form body.
    for r in rx.accepted("/chatwork") {
        assert_eq!(r.path, "/chatwork/v2/rooms/4242/messages");
        assert_eq!(r.header("x-chatworktoken"), Some(CHATWORK_TOKEN));
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/x-www-form-urlencoded")
        );
        assert!(
            r.body.starts_with("body=%5Binfo%5D%5Btitle%5D"),
            "{}",
            r.body
        );
    }
    // LINE WORKS: one token from a signed service-account JWT, then bot messages.
    let tokens: Vec<Received> = rx.accepted("/lw/token");
    assert_eq!(tokens.len(), 1, "the access token is cached");
    let form: Vec<(String, String)> = tokens[0]
        .body
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap()
    };
    assert_eq!(
        get("grant_type"),
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    );
    let jwt = get("assertion");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some("C1"), Some("sa@example"))
    );
    for r in rx.accepted("/lw/v1.0") {
        assert_eq!(r.path, "/lw/v1.0/bots/B1/channels/room-7/messages");
        assert_eq!(r.header("authorization"), Some("Bearer at-12345"));
        let text = r.json()["content"]["text"].as_str().unwrap().to_owned();
        assert!(text.chars().count() <= 2000 && text.contains("mimamori"));
    }
    // No patient id in any default message; the trusted channel has it (so the check can fail).
    let vip = raised
        .iter()
        .find(|a| a["rule"] == "sensitive_records")
        .unwrap();
    assert!(
        vip["explanation"].as_str().unwrap().contains("P0099"),
        "{vip}"
    );
    for r in rx
        .requests()
        .iter()
        .filter(|r| !r.path.starts_with("/trusted"))
    {
        assert!(!r.body.contains("P0099"), "{}: {}", r.path, r.body);
    }
    assert!(
        rx.accepted("/trusted")
            .iter()
            .any(|r| r.body.contains("P0099"))
    );
    // No secret in the service's log, its metrics, or the deliveries it lists.
    let (_, metrics) = http_get(server.http, "/metrics").unwrap();
    let (_, listed) = http_get(server.http, "/api/v1/deliveries").unwrap();
    let out = server.cli_config(&["channels", "list"]);
    let shown = format!(
        "{}{}{metrics}{listed}{}",
        server.log(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [
        SECRET_A,
        &secret_b(),
        CHATWORK_TOKEN,
        LW_SECRET,
        "/slack/T000",
        "/teams/workflows",
        "at-12345",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(
        metrics.contains("mimamori_deliveries_sent_total{channel=\"soc\"} 3"),
        "{metrics}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("slack"));
}

#[test]
fn a_receiver_that_fails_then_recovers_and_a_kill_9_lose_nothing_and_resend_nothing_taken() {
    // The receiver's port is known but nothing listens yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let channels = format!(
        "[delivery]\ngroup_wait_seconds = 0\n[[channels]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecrets = [\"{SECRET_A}\"]\n"
    );
    let mut server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    wait("a failed attempt", 30, &|| {
        server.metric("mimamori_delivery_retries_total") >= 1.0
    });
    let (_, health) = http_get(server.http, "/healthz").unwrap();
    assert!(health.contains("delivery soc"), "{health}");
    // Killed with messages queued; the receiver comes up answering 500, 500, then 429.
    server.kill9();
    let rx = Receiver::on(std::net::TcpListener::bind(addr).unwrap());
    rx.answer_next(&[(500, None), (500, None), (429, Some(("Retry-After", "1")))]);
    server.spawn();
    wait("every alert delivered after the restart", 90, &|| {
        webhook_alert_ids(&rx.accepted("/hook")).len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    let accepted = rx.accepted("/hook");
    let all = rx.requests();
    assert!(
        all.iter().filter(|r| r.answered >= 500).count() >= 2,
        "{all:#?}"
    );
    // A message tried again carries its first idempotency key; each is taken once.
    let mut keys: Vec<&str> = accepted
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a message the receiver took was sent again");
    for failed in all.iter().filter(|r| r.answered >= 300) {
        let key = failed.header("webhook-id").unwrap();
        assert!(
            keys.contains(&key),
            "a retried message never arrived: {key}"
        );
    }
    // Another restart sends nothing already taken.
    server.stop();
    server.spawn();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.accepted("/hook").len(), n, "resent after a restart");
    let out = server.cli_config(&["alerts", "deliveries", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("\"state\":\"sent\""))
            .count(),
        n,
        "{listed}"
    );
}

/// Reads SSE events (id, data) until `n` arrived.
fn read_events(
    stream: &mut BufReader<std::net::TcpStream>,
    n: usize,
) -> Vec<(i64, serde_json::Value)> {
    let mut out = Vec::new();
    let mut id = None;
    while out.len() < n {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).unwrap() > 0, "stream ended");
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            out.push((id.unwrap(), serde_json::from_str(v.trim()).unwrap()));
        }
    }
    out
}

fn open_stream(server: &Server, token: &str, last: Option<i64>) -> BufReader<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    write!(
        s,
        "GET /api/v1/alerts/stream?since=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    reader
}

#[test]
fn the_live_stream_resumes_with_last_event_id_and_a_subscriber_acknowledges_by_name() {
    let token = common::token() + "-soc-subscriber";
    let server = Server::start_full(
        "",
        "",
        &format!("{ROSTER}[[subscribers]]\nname = \"vendor-soc\"\ntoken = \"{token}\"\n"),
    );
    let (status, _) = http_get(server.http, "/api/v1/alerts/stream").unwrap();
    assert_eq!(status, 401, "the stream needs a token");
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    let mut stream = open_stream(&server, &token, None);
    let first = read_events(&mut stream, 3);
    assert!(
        first
            .iter()
            .all(|(_, d)| d["change"] == "raised" && d["schema"] == "mimamori.alert.v1")
    );
    assert!(!first.iter().any(|(_, d)| d.to_string().contains("P0099")));
    drop(stream);
    // While the subscriber is away: the subscriber's own acknowledgement and a close.
    let id = first[0].1["alert_id"].as_i64().unwrap();
    let (status, body) = http_post(
        server.http,
        &format!("/api/v1/alerts/{id}/status"),
        &[("Authorization", &format!("Bearer {token}"))],
        br#"{"status":"acknowledged","by":"analyst 7"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("analyst 7 (subscriber vendor-soc)"), "{body}");
    let last = first[2].0;
    let mut stream = open_stream(&server, &token, Some(last));
    let rest = read_events(&mut stream, 1);
    assert_eq!(
        rest[0].0,
        last + 1,
        "resumed right after the last event seen"
    );
    assert_eq!(rest[0].1["change"], "acknowledged");
    assert_eq!(rest[0].1["changed_by"], "analyst 7 (subscriber vendor-soc)");
}

#[test]
fn email_goes_over_starttls_with_login_to_a_real_smtp_server_in_japanese() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path());
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut smtp = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py"))
        .args([
            &port.to_string(),
            &cert,
            &key,
            out.to_str().unwrap(),
            "mimamori",
            "smtp-pass-0123456789",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with aiosmtpd (python3-aiosmtpd)");
    let mut ready = String::new();
    BufReader::new(smtp.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let channels = format!(
        r#"
[delivery]
group_wait_seconds = 0
[[channels]]
name = "office"
kind = "email"
smtp_host = "localhost"
smtp_port = {port}
tls = "starttls"
ca_file = "{cert}"
username = "mimamori"
password = "smtp-pass-0123456789"
from = "mimamori <mimamori@clinic.example>"
to = ["director@clinic.example", "office@clinic.example"]
min_severity = "high"
"#
    );
    let server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    let test = server.cli_config(&["channels", "test", "office"]);
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(
        String::from_utf8_lossy(&test.stdout).contains("SMTP 250"),
        "{test:?}"
    );
    raise_alerts(&server);
    let high = || {
        alerts(&server)
            .iter()
            .filter(|a| a["severity"] == "high" || a["severity"] == "critical")
            .count()
    };
    wait("a high alert", 30, &|| high() >= 1);
    let expected = high() + 1;
    let mails = || {
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "eml")
            })
            .count()
    };
    wait("the mails", 60, &|| mails() >= expected);
    let _ = smtp.kill();
    let _ = smtp.wait();
    let mut text = String::new();
    std::fs::File::open(out.join("2.eml"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("Message-ID: <mimamori-"), "{text}");
    let subject = text.lines().find(|l| l.starts_with("Subject: ")).unwrap();
    assert!(
        subject.contains("=?utf-8?b?"),
        "a Japanese subject, encoded: {text}"
    );
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(
        text.contains("text/plain; charset=utf-8") && text.contains("text/html; charset=utf-8"),
        "{text}"
    );
    let rcpt = std::fs::read_to_string(out.join("2.rcpt")).unwrap();
    assert_eq!(rcpt, "director@clinic.example\noffice@clinic.example");
    // Decode the plain part (lettre writes it quoted-printable or base64) to read it.
    let decoded = decode_parts(&text);
    assert!(decoded.contains("職員 / Staff"), "{decoded}");
    assert!(!decoded.contains("P0099") && !text.contains("P0099"));
    assert!(!server.log().contains("smtp-pass-0123456789"));
}

/// The text of every base64 or quoted-printable part of a mail.
fn decode_parts(mail: &str) -> String {
    let mut out = String::new();
    for part in mail.split("\r\n--") {
        let Some((head, body)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let lower = head.to_lowercase();
        if lower.contains("content-transfer-encoding: base64") {
            let joined: String = body
                .split_whitespace()
                .take_while(|l| !l.starts_with("--"))
                .collect();
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(joined) {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        } else if lower.contains("quoted-printable") {
            let mut bytes = Vec::new();
            let body = body.replace("=\r\n", "");
            let raw = body.as_bytes();
            let mut i = 0;
            while i < raw.len() {
                if raw[i] == b'='
                    && i + 2 < raw.len()
                    && let Ok(b) = u8::from_str_radix(&body[i + 1..i + 3], 16)
                {
                    bytes.push(b);
                    i += 3;
                    continue;
                }
                bytes.push(raw[i]);
                i += 1;
            }
            out.push_str(&String::from_utf8_lossy(&bytes));
        } else {
            out.push_str(body);
        }
    }
    out
}

/// rsyslog as the SOC's collector: TLS on a port, every message written to a file.
fn rsyslog_tls(
    dir: &Path,
    cert: &str,
    key: &str,
) -> (std::process::Child, u16, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.join("collected.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{cert}" DefaultNetstreamDriverCertFile="{cert}" DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{out}" template="raw")
"#,
            work = dir.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/rsyslogd")
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rsyslogd is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rsyslog did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port, out)
}

#[test]
fn syslog_forwarding_over_tls_reaches_rsyslog_as_rfc5424_and_cef() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path());
    let (mut rsyslog, port, out) = rsyslog_tls(dir.path(), &cert, &key);
    let channels = format!(
        r#"
[delivery]
group_wait_seconds = 0
[[channels]]
name = "soc5424"
kind = "syslog"
address = "localhost:{port}"
tls = "tls"
ca_file = "{cert}"
format = "rfc5424"
[[channels]]
name = "soccef"
kind = "syslog"
address = "localhost:{port}"
tls = "tls"
ca_file = "{cert}"
format = "cef"
"#
    );
    let server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    let collected = || std::fs::read_to_string(&out).unwrap_or_default();
    wait("six messages at the collector", 60, &|| {
        collected().lines().count() >= 6
    });
    let _ = rsyslog.kill();
    let _ = rsyslog.wait();
    let text = collected();
    let rfc: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[mimamori@32473 "))
        .collect();
    let cef: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("CEF:0|mimamori|mimamori|"))
        .collect();
    assert_eq!((rfc.len(), cef.len()), (3, 3), "{text}");
    assert!(
        rfc.iter()
            .all(|l| l.starts_with('<') && l.contains(">1 ") && l.contains(" mimamori - ALERT ")),
        "{text}"
    );
    assert!(
        rfc.iter()
            .any(|l| l.contains("rule=\"bulk_export\"") && l.contains("user=\"r001\"")),
        "{text}"
    );
    assert!(
        cef.iter()
            .any(|l| l.contains("|bulk_export|") && l.contains("suser=r001")),
        "{text}"
    );
    assert!(!text.contains("P0099"), "{text}");
}
