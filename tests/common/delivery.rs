//! What the delivery tests share: a roster whose events raise alerts, the events, waiting,
//! the webhook signature check and a JSON Schema check of the published document.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;

use super::receiver::Received;
use super::{Server, http_get};

pub const ROSTER: &str = r#"
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

pub const SECRET_A: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn secret_b() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([9u8; 32])
    )
}

/// Sends EHR events that raise alerts: reception exporting 300 records (bulk_export and
/// access_outside_role for r001), and a nurse opening a VIP's chart (sensitive_records, whose
/// explanation names patient P0099).
pub fn raise_alerts(server: &Server) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    writeln!(
        tcp,
        "<134>1 {now} ehr01 ehr - - - user=r001 action=EXPORT count=300 src=10.10.1.12\n\
         <134>1 {now} ehr01 ehr - - - user=n002 action=VIEW_CHART patient=P0099 src=10.10.1.23"
    )
    .unwrap();
}

pub fn wait(what: &str, secs: u64, f: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn alerts(server: &Server) -> Vec<serde_json::Value> {
    let (_, body) = http_get(server.http, "/api/v1/alerts").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["alerts"].as_array().unwrap().clone()
}

/// The alert ids named in accepted webhook bodies.
pub fn webhook_alert_ids(got: &[Received]) -> Vec<i64> {
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
pub fn signature_ok(r: &Received, secret: &str) -> bool {
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
pub fn validate(
    schema: &serde_json::Value,
    root: &serde_json::Value,
    v: &serde_json::Value,
    at: &str,
) {
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

pub fn schema() -> serde_json::Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/alert.v1.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A real SMTP server (aiosmtpd, `tests/fixtures/smtp_server.py`): STARTTLS with a certificate
/// made in `dir`, login `mimamori` / [`SMTP_PASSWORD`]; each mail it takes is written to
/// `dir/mail` as `<n>.eml` and, as a mail client reads it, `<n>.json`. Stopped when dropped.
pub struct Smtp {
    pub port: u16,
    pub cert: String,
    pub out: std::path::PathBuf,
    child: std::process::Child,
}

pub const SMTP_PASSWORD: &str = "smtp-pass-0123456789";

impl Smtp {
    pub fn start(dir: &Path) -> Smtp {
        use std::io::BufRead;
        let (cert, key) = super::make_cert(dir);
        let out = dir.join("mail");
        std::fs::create_dir(&out).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py"))
            .args([
                &port.to_string(),
                &cert,
                &key,
                out.to_str().unwrap(),
                "mimamori",
                SMTP_PASSWORD,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 with aiosmtpd (python3-aiosmtpd)");
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        Smtp {
            port,
            cert,
            out,
            child,
        }
    }

    /// An `[[channels]]` entry of kind email sending here.
    pub fn channel(&self, name: &str, extra: &str) -> String {
        format!(
            r#"
[[channels]]
name = "{name}"
kind = "email"
smtp_host = "localhost"
smtp_port = {port}
tls = "starttls"
ca_file = "{cert}"
username = "mimamori"
password = "{SMTP_PASSWORD}"
from = "mimamori <mimamori@clinic.example>"
to = ["director@clinic.example", "office@clinic.example"]
{extra}
"#,
            port = self.port,
            cert = self.cert,
        )
    }

    /// The mails taken so far, in order, as a mail client reads them.
    pub fn mails(&self) -> Vec<serde_json::Value> {
        (1..)
            .map(|n| self.out.join(format!("{n}.json")))
            .take_while(|p| p.exists())
            .filter_map(|p| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
