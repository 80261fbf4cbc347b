//! LINE WORKS (API 2.0): a bot posts to a talk room or a person. The service account's JWT
//! (RS256, signed with its private key) is exchanged for an access token, kept until shortly
//! before it expires and fetched again after a 401. A text is at most 2,000 characters.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::http::{answer, network_error};

use super::{ChannelConfig, Notice, SendError, Sent};

/// LINE WORKS's limit for a text message.
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Default)]
pub(super) struct TokenCache {
    token: Option<(String, Instant)>,
}

pub(super) fn text(notice: &Notice) -> String {
    let text = format!("{}\n\n{}", notice.subject(), notice.plain_text());
    super::chat::clip(&text, MAX_TEXT_CHARS)
}

/// The service account's assertion: `header.claims.signature`, RS256.
fn assertion(c: &ChannelConfig) -> Result<String, SendError> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let path = c.private_key_file.clone().unwrap_or_default();
    let bad = |e: &dyn std::fmt::Display| {
        SendError::Permanent(format!("private_key_file {}: {e}", path.display()))
    };
    let key = PrivatePkcs8KeyDer::from_pem_file(&path).map_err(|e| bad(&e))?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der())
        .map_err(|e| bad(&format!("not an RSA key in PKCS#8 ({e})")))?;
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "iss": c.client_id,
            "sub": c.service_account,
            "iat": now,
            "exp": now + 3600,
        })
        .to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| bad(&"signing failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

async fn token(
    client: &reqwest::Client,
    c: &ChannelConfig,
    cache: &mut TokenCache,
) -> Result<String, SendError> {
    if let Some((token, until)) = &cache.token
        && Instant::now() < *until
    {
        return Ok(token.clone());
    }
    let url = c
        .auth_url
        .as_deref()
        .unwrap_or("https://auth.worksmobile.com/oauth2/v2.0/token");
    let assertion = assertion(c)?;
    let form = [
        ("assertion", assertion.as_str()),
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("client_id", c.client_id.as_deref().unwrap_or("")),
        ("client_secret", c.client_secret.as_deref().unwrap_or("")),
        ("scope", "bot"),
    ];
    let response = client
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| SendError::Retry {
            reason: format!("LINE WORKS token: {}", network_error(&e)),
            after: None,
        })?;
    let status = response.status();
    let body: serde_json::Value =
        serde_json::from_slice(&super::http::bounded_body(response).await).unwrap_or_default();
    let Some(token) = body["access_token"].as_str() else {
        let reason = format!(
            "LINE WORKS refused the service account (HTTP {}): {}",
            status.as_u16(),
            body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("no token")
        );
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            SendError::Retry {
                reason,
                after: None,
            }
        } else {
            SendError::Permanent(reason)
        });
    };
    let lifetime = body["expires_in"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or(body["expires_in"].as_u64())
        .unwrap_or(3600);
    // Fetched again ten minutes before it expires.
    let until = Instant::now() + Duration::from_secs(lifetime.saturating_sub(600).max(60));
    cache.token = Some((token.to_owned(), until));
    Ok(token.to_owned())
}

pub(super) async fn send(
    client: &reqwest::Client,
    c: &ChannelConfig,
    cache: &mut TokenCache,
    body: &str,
) -> Result<Sent, SendError> {
    let token = token(client, c, cache).await?;
    let base = c.url.as_deref().unwrap_or("https://www.worksapis.com/v1.0");
    let bot = c.bot_id.as_deref().unwrap_or("");
    let url = match (&c.channel_id, &c.user_id) {
        (Some(channel), _) => format!(
            "{}/bots/{bot}/channels/{channel}/messages",
            base.trim_end_matches('/')
        ),
        (None, user) => format!(
            "{}/bots/{bot}/users/{}/messages",
            base.trim_end_matches('/'),
            user.as_deref().unwrap_or("")
        ),
    };
    let message = json!({"content": {"type": "text", "text": body}});
    let result = client
        .post(url)
        .bearer_auth(&token)
        .json(&message)
        .send()
        .await;
    if let Ok(r) = &result
        && r.status() == reqwest::StatusCode::UNAUTHORIZED
    {
        // The token was revoked or expired early: fetch a new one on the next try.
        cache.token = None;
        return Err(SendError::Retry {
            reason: "LINE WORKS: the access token was refused; a new one is fetched".into(),
            after: Some(Duration::from_secs(1)),
        });
    }
    answer(result).await
}
