//! Alert delivery to real receivers, each kind in its exact format: HTTP receivers on loopback
//! for Slack, Teams, Chatwork, LINE WORKS and signed webhooks (checked against the published
//! schema), a real SMTP server (aiosmtpd) with STARTTLS and login, and rsyslog over TLS
//! receiving RFC 5424 and CEF. No patient data and no secret leaves by default.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::delivery::{
    ROSTER, SECRET_A, SMTP_PASSWORD, Smtp, alerts, raise_alerts, schema, secret_b, signature_ok,
    validate, wait, webhook_alert_ids,
};
use common::receiver::{Received, Receiver};
use common::{Server, http_get, make_cert};

const CHATWORK_TOKEN: &str = "cw-token-0123456789abcdef";
const LW_SECRET: &str = "lw-client-secret-0123456789";

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
    let template = keys.path().join("template.json");
    std::fs::write(
        &template,
        r#"{"summary": "{{title}}: {{explanation}}", "who": "{{user}}", "count": {{count}}, "key": "{{idempotency_key}}"}"#,
    )
    .unwrap();
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
name = "templated"
kind = "webhook"
url = "{templated}"
secrets = ["{a}"]
template = "{template}"
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
        templated = rx.url("/templated"),
        template = template.display(),
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
    // The admin's template, filled in as valid JSON.
    for r in rx.accepted("/templated") {
        let v = r.json();
        assert!(v["summary"].as_str().unwrap().contains(" / "), "{v}");
        assert!(v["count"].as_u64().unwrap() >= 1);
        assert_eq!(v["key"].as_str(), r.header("webhook-id"));
        assert!(!r.body.contains("P0099"));
    }
    assert_eq!(rx.accepted("/templated").len(), raised.len());
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
fn email_goes_over_starttls_with_login_to_a_real_smtp_server_in_japanese() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let out = smtp.out.clone();
    let channels = format!(
        "[delivery]\ngroup_wait_seconds = 0\n{}",
        smtp.channel("office", "min_severity = \"high\"")
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
    drop(smtp);
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
    assert!(!server.log().contains(SMTP_PASSWORD));
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
