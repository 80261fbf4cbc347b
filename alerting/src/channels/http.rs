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

/// Reads the answer of a request: the status, and at most [`BODY_BYTES`] of the body within
/// [`BODY_WAIT`] (a receiver cannot fill our memory, nor hold a taken message unrecorded).
pub(super) async fn answer(
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<Sent, SendError> {
    let response = response.map_err(|e| SendError::Retry {
        reason: network_error(&e),
        after: None,
    })?;
    let status = response.status();
    let after = retry_after(response.headers());
    let text = String::from_utf8_lossy(&bounded_body(response).await).into_owned();
    let said = format!("HTTP {} {}", status.as_u16(), short(&text));
    let said = said.trim_end().to_owned();
    if status.is_success() {
        return Ok(Sent(said));
    }
    if permanent(status.as_u16()) {
        Err(SendError::Permanent(said))
    } else {
        Err(SendError::Retry {
            reason: said,
            after,
        })
    }
}

/// Answers that will not change however long we wait: the message itself is refused (bad
/// request, too large, wrong type, unprocessable). Everything else (401, 403 and 404 during a
/// proxy's maintenance or a token's rotation, 3xx, 429, 5xx) is tried again until
/// `give_up_hours`.
fn permanent(code: u16) -> bool {
    matches!(code, 400 | 413 | 414 | 415 | 422)
}

/// Most of an answer's body read.
pub(super) const BODY_BYTES: usize = 64 << 10;

/// Longest wait for an answer's body once its status has come.
const BODY_WAIT: Duration = Duration::from_secs(5);

/// At most [`BODY_BYTES`] of the body, for at most [`BODY_WAIT`]; the rest is not read.
pub(super) async fn bounded_body(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = BODY_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(BODY_WAIT, read).await;
    body
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
