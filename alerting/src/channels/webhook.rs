//! Signed webhooks for the SOC, per the Standard Webhooks spec: `webhook-id` (the delivery's
//! idempotency key), `webhook-timestamp` (seconds, the time of this attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one signature per
//! configured secret so a receiver can rotate keys. Receivers should refuse a timestamp more
//! than 5 minutes from their clock and de-duplicate on `webhook-id`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::json;

use super::http::post_json;
use super::{ChannelConfig, Notice, SendError, Sent};

/// The signing key of a `whsec_<base64>` secret.
pub(super) fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// The `webhook-signature` header value for a body sent at `timestamp`.
pub fn sign(secrets: &[String], id: &str, timestamp: i64, body: &str) -> String {
    secrets
        .iter()
        .filter_map(|s| secret_key(s))
        .map(|key| {
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key");
            mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The body: `{"type", "timestamp", "data"}` with the alert documents, or the admin's template.
pub fn webhook_body(notice: &Notice, template: Option<&std::path::Path>) -> Result<String, String> {
    let first = notice.alerts.first();
    let data = json!({
        "schema": "mimamori.notification.v1",
        "idempotency_key": notice.key,
        "digest": notice.digest,
        "storm": notice.storm,
        "alerts": notice.alerts,
    });
    let Some(template) = template else {
        return Ok(json!({
            "type": format!("alert.{}", first.map_or("test", |d| d.change.as_str())),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": data,
        })
        .to_string());
    };
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("webhook template {}: {e}", template.display()))?;
    // {{field}} of the first alert, as a JSON string's inside; {{alerts}} the documents.
    let doc = first.map(|d| serde_json::to_value(d).unwrap_or_default());
    let mut out = text.replace("{{alerts}}", &data["alerts"].to_string());
    out = out.replace("{{idempotency_key}}", &json_inside(&notice.key));
    if let Some(serde_json::Value::Object(fields)) = doc {
        for (k, v) in fields {
            let value = match v {
                serde_json::Value::String(s) => json_inside(&s),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{{{k}}}}}"), &value);
        }
    }
    Ok(out)
}

/// A text escaped for the inside of a JSON string.
fn json_inside(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

pub(super) async fn send(
    client: &reqwest::Client,
    c: &ChannelConfig,
    key: &str,
    body: &str,
) -> Result<Sent, SendError> {
    let timestamp = chrono::Utc::now().timestamp();
    let headers = [
        ("webhook-id", key.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(&c.secrets, key, timestamp, body)),
        ("idempotency-key", key.to_owned()),
    ];
    post_json(client, c.url.as_deref().unwrap_or(""), &headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks reference implementation's tests.
    #[test]
    fn the_signature_matches_the_spec_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let sig = sign(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn each_secret_signs_during_rotation() {
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let b = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let both = sign(&[a.clone(), b.clone()], "id", 1, "{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&[a], "id", 1, "{}"));
        assert_eq!(parts[1], sign(&[b], "id", 1, "{}"));
    }
}
