//! One HTTP POST and what its answer means: 2xx sent; 429, 408, 5xx and network errors worth
//! another try (after `Retry-After` when given); any other 4xx will not get better by itself.
//! Errors never carry the URL (a webhook URL is a secret).

use std::time::Duration;

use super::{SendError, Sent};

/// Longest part of an answer kept.
const ANSWER_BYTES: usize = 300;

pub(super) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<Sent, SendError> {
    let mut request = client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    answer(request.send().await).await
}

/// Reads the answer of a request.
pub(super) async fn answer(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Sent, SendError> {
    let response = response.map_err(|e| SendError::Retry {
        reason: network_error(&e),
        after: None,
    })?;
    let status = response.status();
    let after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let said = format!("HTTP {} {}", status.as_u16(), short(&text));
    if status.is_success() {
        return Ok(Sent(said.trim_end().to_owned()));
    }
    let code = status.as_u16();
    if code == 429 || code == 408 || code == 425 || status.is_server_error() {
        Err(SendError::Retry {
            reason: said.trim_end().to_owned(),
            after,
        })
    } else {
        Err(SendError::Permanent(said.trim_end().to_owned()))
    }
}

/// A network error in words, without the URL.
pub(super) fn network_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The source chain says why (refused, certificate, DNS) without the URL.
    let mut why = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = s.to_string();
        source = s.source();
    }
    if why.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", short(&why))
    }
}

/// `Retry-After` in seconds (an HTTP date is read as a time from now), at most an hour.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64
        }
    };
    Some(Duration::from_secs(secs.min(3600)))
}

/// The first [`ANSWER_BYTES`] of a text, on one line.
pub(super) fn short(text: &str) -> String {
    let mut end = text.len().min(ANSWER_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
