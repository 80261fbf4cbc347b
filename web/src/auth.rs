//! Who may do what: bearer tokens per role (ingest, read, admin), checked by extractors, so a
//! handler that takes [`Reader`], [`Admin`] or [`Ingester`] cannot forget it. Tokens are
//! compared as fixed-length digests (no length or prefix leaks through timing); the scheme is
//! case-insensitive.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::error::ApiError;

/// Whether `presented` is one of `tokens`. Fixed-length digests are compared, every byte of
/// every configured token, so the time taken says nothing of a token's length or how much of
/// it matched.
fn token_matches(tokens: &[String], presented: &str) -> bool {
    use sha2::{Digest, Sha256};
    let presented = Sha256::digest(presented.as_bytes());
    tokens.iter().fold(false, |found, token| {
        let digest = Sha256::digest(token.as_bytes());
        let differ = digest
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        found | (differ == 0)
    })
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive.
fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim())
}

/// Writes through the API need a bearer token from `tokens`, the config key `http.<setting>`;
/// without any, `what` is off.
pub(crate) fn authorized(
    tokens: &[String],
    setting: &str,
    what: &str,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: "disabled",
            message: format!("{what} is off: set http.{setting} in the config"),
        });
    }
    if !token_matches(tokens, bearer(headers)) {
        return Err(ApiError::Status {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: format!(
                "a valid `Authorization: Bearer <token>` header is required (one of http.{setting})"
            ),
        });
    }
    Ok(())
}

/// Reading events and alerts needs a token from `http.read_tokens` (or an admin token) when
/// any are set.
pub(crate) fn reader(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if state.read_tokens.is_empty() {
        return Ok(());
    }
    admin(state, headers).or_else(|_| {
        authorized(
            &state.read_tokens,
            "read_tokens",
            "reading over HTTP",
            headers,
        )
    })
}

/// Changing alerts and rules needs a token from `http.admin_tokens`.
pub(crate) fn admin(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    authorized(
        &state.admin_tokens,
        "admin_tokens",
        "changing alerts and rules over HTTP",
        headers,
    )
}

/// A request allowed to read events and alerts.
pub struct Reader;

/// A request allowed to change alerts and rules.
pub struct Admin;

/// A request allowed to send events.
pub struct Ingester;

/// A request allowed to change an alert's status: an admin token, or a subscriber's token
/// (then the change is recorded with the subscriber's name).
pub struct Changer(pub Option<Subscriber>);

/// A request allowed to read the live alert stream: a subscriber (by name, and whether it may
/// see patient data) or an admin token (without patient data).
pub struct Subscriber {
    pub name: String,
    pub include_patient_data: bool,
}

/// The subscriber whose token the request carries, if any.
fn subscriber(state: &AppState, headers: &axum::http::HeaderMap) -> Option<Subscriber> {
    let presented = bearer(headers);
    state
        .subscribers
        .iter()
        .find(|s| token_matches(std::slice::from_ref(&s.token), presented))
        .map(|s| Subscriber {
            name: s.name.clone(),
            include_patient_data: s.include_patient_data,
        })
}

/// An admin token, or a subscriber's own (its name kept).
fn changer(state: &AppState, headers: &HeaderMap) -> Result<Changer, ApiError> {
    if let Some(s) = subscriber(state, headers) {
        return Ok(Changer(Some(s)));
    }
    admin(state, headers).map(|()| Changer(None))
}

/// A subscriber's token, or an admin token (which sees no patient data).
fn streamer(state: &AppState, headers: &HeaderMap) -> Result<Subscriber, ApiError> {
    if let Some(s) = subscriber(state, headers) {
        return Ok(s);
    }
    admin(state, headers).map_err(|_| ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: "the alert stream needs a subscriber's token ([[subscribers]]) or an admin token"
            .into(),
    })?;
    Ok(Subscriber {
        name: "admin".into(),
        include_patient_data: false,
    })
}

/// An ingest token, on a server that stores events.
fn ingester(state: &AppState, headers: &HeaderMap) -> Result<Ingester, ApiError> {
    if state.importer.is_none() {
        return Err(ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: "read_only",
            message: "this server does not store events".into(),
        });
    }
    authorized(
        &state.ingest_tokens,
        "ingest_tokens",
        "HTTP ingest",
        headers,
    )
    .map(|()| Ingester)
}

/// Each extractor is one check of the request's headers.
macro_rules! extractors {
    ($($ty:ty => $check:expr;)*) => {$(
        impl FromRequestParts<Arc<AppState>> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &Arc<AppState>,
            ) -> Result<Self, Self::Rejection> {
                let check: fn(&AppState, &HeaderMap) -> Result<$ty, ApiError> = $check;
                check(state, &parts.headers)
            }
        }
    )*};
}

extractors! {
    Reader => |state, headers| reader(state, headers).map(|()| Reader);
    Admin => |state, headers| admin(state, headers).map(|()| Admin);
    Ingester => ingester;
    Changer => changer;
    Subscriber => streamer;
}
