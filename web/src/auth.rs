//! Who may call what in the API: an API token with the scope the endpoint needs
//! ([`crate::api_tokens`]: `search`, `alerts:read`, `alerts:write`, `ingest`), or one of the
//! `[http]` token lists (deprecated), checked by extractors so a handler that takes
//! [`Searcher`], [`Reader`], [`Admin`] or [`Ingester`] cannot forget it. Config tokens are
//! compared as fixed-length digests (no length or prefix leaks through timing); the scheme is
//! case-insensitive. A presented token that is refused is recorded in the audit trail.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use crate::AppState;
use crate::api_tokens::Scope;
use crate::error::ApiError;
use crate::ui::audit::{self, Actor, Entry};

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
/// The request came through a proxy: the connection's address is the proxy's, not the client's.
pub(crate) fn proxied(headers: &axum::http::HeaderMap) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-host",
    ]
    .iter()
    .any(|h| headers.contains_key(*h))
}

pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim())
}

/// Who called the API: an API token's name, a config token list, or nobody (open reads on
/// loopback); and from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub client: Option<IpAddr>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor {
            name: Some(self.name.clone()),
            role: None,
            client: self.client,
        }
    }
}

/// The legacy `[http]` list that also grants `scope`, with its key.
fn legacy(state: &AppState, scope: Scope) -> Vec<(&[String], &'static str)> {
    match scope {
        Scope::Ingest => vec![(&state.ingest_tokens, "ingest_tokens")],
        Scope::AlertsWrite => vec![(&state.admin_tokens, "admin_tokens")],
        Scope::Search | Scope::AlertsRead => vec![
            (&state.read_tokens, "read_tokens"),
            (&state.admin_tokens, "admin_tokens"),
        ],
    }
}

/// What a refusal says is needed.
fn needed(scope: Scope) -> (&'static str, &'static str) {
    match scope {
        Scope::Ingest => ("HTTP ingest", "ingest_tokens"),
        Scope::AlertsWrite => ("changing alerts and rules over HTTP", "admin_tokens"),
        Scope::Search | Scope::AlertsRead => ("reading over HTTP", "read_tokens"),
    }
}

/// The caller, if the request may use `scope`.
fn grant(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    scope: Scope,
) -> Result<Caller, ApiError> {
    let presented = bearer(headers);
    let caller = |name: String| Caller { name, client };
    let accounts = state.accounts.as_deref();
    if let Some((name, scopes)) = accounts.and_then(|a| a.token(presented)) {
        if scopes.contains(&scope) {
            return Ok(caller(format!("token:{name}")));
        }
        return Err(ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: "scope",
            message: format!(
                "token {name:?} may not do this: it needs the scope {}",
                scope.as_str()
            ),
        });
    }
    let lists = legacy(state, scope);
    if let Some((_, key)) = lists
        .iter()
        .find(|(tokens, _)| !presented.is_empty() && token_matches(tokens, presented))
    {
        return Ok(caller(format!("http.{key}")));
    }
    let (what, key) = needed(scope);
    let any_db_token = accounts.is_some_and(|a| a.any_token_with(scope));
    let reads = matches!(scope, Scope::Search | Scope::AlertsRead);
    // Reads are open only on loopback, not through a proxy (whose client is elsewhere), and
    // only while no token grants them.
    if reads
        && state.open_reads
        && !proxied(headers)
        && state.read_tokens.is_empty()
        && !any_db_token
    {
        return Ok(caller("anonymous".into()));
    }
    if !reads && lists.iter().all(|(t, _)| t.is_empty()) && !any_db_token {
        return Err(ApiError::Status {
            status: StatusCode::FORBIDDEN,
            code: "disabled",
            message: format!(
                "{what} is off: set http.{key} in the config, or create a token with the scope {} (`mimamori token add NAME --scope {}`)",
                scope.as_str(),
                scope.as_str()
            ),
        });
    }
    Err(ApiError::Status {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: format!(
            "a valid `Authorization: Bearer <token>` header is required: a token with the scope {} (or one of http.{key})",
            scope.as_str()
        ),
    })
}

/// Records a refused token (not its value) in the audit trail, within the cap.
fn audit_refusal(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    path: &str,
    error: &ApiError,
) {
    if !audit::unauthenticated_budget() {
        if let Some(ui) = state.ui.as_deref() {
            ui.metrics.audit_suppressed.inc();
        }
        return;
    }
    let ApiError::Status { code, .. } = error else {
        return;
    };
    // A known token refused for its scope is named (its value never is).
    let name = state
        .accounts
        .as_deref()
        .and_then(|a| a.token(bearer(headers)))
        .map(|(name, _)| format!("token:{name}"));
    let actor = Actor {
        name,
        role: None,
        client,
    };
    let entry = Entry::denied(&format!("API {path}: token refused ({code})"));
    let state = state.clone();
    tokio::spawn(async move { audit::record(&state, &actor, entry).await });
}

/// A request allowed to search events (`search`).
pub struct Searcher(pub Caller);

/// A request allowed to read alerts, deliveries and silences (`alerts:read`).
pub struct Reader(pub Caller);

/// A request allowed to change alerts and rules (`alerts:write`).
pub struct Admin(pub Caller);

/// A request allowed to send events (`ingest`).
pub struct Ingester;

/// A request allowed to change an alert's status: `alerts:write`, or a subscriber's token
/// (then the change is recorded with the subscriber's name).
pub struct Changer(pub Option<Subscriber>, pub Caller);

/// A request allowed to read the live alert stream: a subscriber (by name, and whether it may
/// see patient data) or an `alerts:read` token (without patient data).
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

/// What one extractor checks.
type Check<T> = fn(&AppState, &HeaderMap, Option<IpAddr>) -> Result<T, ApiError>;

/// Each extractor is one check of the request's headers; a refused token is audited.
macro_rules! extractors {
    ($($ty:ty => $check:expr;)*) => {$(
        impl FromRequestParts<Arc<AppState>> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &Arc<AppState>,
            ) -> Result<Self, Self::Rejection> {
                let check: Check<$ty> = $check;
                let client = parts
                    .extensions
                    .get::<ConnectInfo<crate::listener::ClientAddr>>()
                    .map(|c| c.0.0.ip());
                let result = check(state, &parts.headers, client);
                if let Err(e) = &result
                    && !bearer(&parts.headers).is_empty()
                {
                    audit_refusal(state, &parts.headers, client, parts.uri.path(), e);
                }
                result
            }
        }
    )*};
}

extractors! {
    Searcher => |state, headers, client| grant(state, headers, client, Scope::Search).map(Searcher);
    Reader => |state, headers, client| grant(state, headers, client, Scope::AlertsRead).map(Reader);
    Admin => |state, headers, client| grant(state, headers, client, Scope::AlertsWrite).map(Admin);
    Ingester => |state, headers, client| {
        if state.importer.is_none() {
            return Err(ApiError::Status {
                status: StatusCode::FORBIDDEN,
                code: "read_only",
                message: "this server does not store events".into(),
            });
        }
        grant(state, headers, client, Scope::Ingest).map(|_| Ingester)
    };
    Changer => |state, headers, client| match subscriber(state, headers) {
        Some(s) => Ok(Changer(Some(s), Caller { name: "subscriber".into(), client })),
        None => grant(state, headers, client, Scope::AlertsWrite).map(|c| Changer(None, c)),
    };
    Subscriber => |state, headers, client| {
        if let Some(s) = subscriber(state, headers) {
            return Ok(s);
        }
        grant(state, headers, client, Scope::AlertsRead)
            .ok()
            .filter(|c| c.name != "anonymous")
            .map(|_| Subscriber {
                name: "admin".into(),
                include_patient_data: false,
            })
            .ok_or_else(|| ApiError::Status {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "the alert stream needs a subscriber's token ([[subscribers]]) or a token with the scope alerts:read".into(),
            })
    };
}
