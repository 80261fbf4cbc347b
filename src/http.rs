//! The HTTP API: search, ingest, metrics, health.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use ingest::import::{Format, Importer};
use serde::Deserialize;
use serde_json::json;
use store::{EventIndex, Health, SearchRequest, StoreError, StoreHandle, parse_time_bound};
use tracing::error;

/// Longest query string accepted.
const MAX_QUERY_BYTES: usize = 4096;
const DEFAULT_LIMIT: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub index: EventIndex,
    pub registry: prometheus::Registry,
    /// Present when the store is writable (not for a read-only search server).
    pub importer: Option<Arc<Importer>>,
    /// The store, when this server writes one: HTTP ingest asks it whether it takes data.
    pub store: Option<StoreHandle>,
    /// Every stage's state, for `/healthz`.
    pub health: Health,
    pub ingest_tokens: Arc<Vec<String>>,
    /// Tokens for changing things: alert status, rule reload.
    pub admin_tokens: Arc<Vec<String>>,
    /// Tokens for reading search results and alerts; none: reads are open.
    pub read_tokens: Arc<Vec<String>>,
    pub max_body_bytes: usize,
    /// The alert database, opened per request (readers do not block the rules).
    pub alerts_db: Option<std::path::PathBuf>,
    pub reloader: Option<Arc<alerting::runner::Reloader>>,
    /// Searches running at once, at most [`SEARCH_SLOTS`]: each may hold up to
    /// [`store::MAX_RESULT_BYTES`] of events.
    pub search_slots: Arc<tokio::sync::Semaphore>,
    /// A request not answered within this long gets 503 (`http.request_timeout_secs`).
    pub request_timeout: std::time::Duration,
}

/// Searches (and CSV-sized reads) answered at once; more wait up to [`SEARCH_WAIT`].
pub const SEARCH_SLOTS: usize = 4;
const SEARCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/search", get(search))
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules/reload", post(reload))
        .route("/api/v1/alerts/{id}", get(alert))
        .route("/api/v1/alerts/{id}/status", post(alert_status))
        // The body limit is enforced in the handler (with a 413 that says so).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ))
        .with_state(state)
}

/// Every request is answered within `http.request_timeout_secs`: 503 after that.
async fn deadline(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "timeout",
            message: format!(
                "the request took longer than {} s (http.request_timeout_secs)",
                state.request_timeout.as_secs()
            ),
        }
        .into_response(),
    }
}

/// An error as the API reports it: `{"code": "bad_query", "message": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    /// Any other client error with its status (401, 403, 413, ...).
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { code, message } => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "code": code, "message": message })),
            )
                .into_response(),
            ApiError::Status {
                status,
                code,
                message,
            } => {
                let mut response =
                    (status, Json(json!({ "code": code, "message": message }))).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // The store refuses data for now (a full disk): senders should come back.
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                }
                response
            }
            ApiError::Internal(detail) => {
                error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "code": "internal", "message": "internal error" })),
                )
                    .into_response()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::BadQuery(message) => ApiError::BadRequest {
                code: "bad_query",
                message,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// `GET /healthz`: 200 with `"status":"ok"` while every stage runs; 503 with the stages that
/// do not (a stage that died, the log refusing data on a full disk) and why.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let stages: serde_json::Map<String, serde_json::Value> = state
        .health
        .snapshot()
        .into_iter()
        .map(|(name, status)| {
            let value = match status.reason() {
                Some(reason) => json!({ "status": status.as_str(), "reason": reason }),
                None => json!({ "status": status.as_str() }),
            };
            (name, value)
        })
        .collect();
    let ok = state.health.all_running();
    let body = Json(json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "events": state.index.num_events(),
        "stages": stages,
    }));
    if ok {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&state.registry.gather())
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    /// Matches to skip (newest first): the start of the page.
    offset: Option<usize>,
    /// Include `event.original`.
    #[serde(default)]
    original: bool,
}

/// An event as search output shows it: `event.original` repeats the message, so it is left out
/// unless asked for (it is always stored).
pub fn event_json(event: &store::Event, original: bool) -> serde_json::Value {
    let mut value = serde_json::to_value(event).expect("events serialize");
    if !original && let Some(object) = value.as_object_mut() {
        object.remove("event.original");
    }
    value
}

/// A query-string parameter that is wrong, and why.
fn bad_parameter(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "bad_parameter",
        message,
    }
}

/// The query string's parameters, or what is wrong with them.
fn query<T>(
    params: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| bad_parameter(e.body_text()))
}

async fn search(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reader(&state, &headers)?;
    let params = query(params)?;
    let request = search_request(
        &params.q,
        params.from.as_deref(),
        params.to.as_deref(),
        params.limit,
        params.offset,
    )
    .map_err(bad_parameter)?;
    let _slot = tokio::time::timeout(SEARCH_WAIT, state.search_slots.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            message: format!("{SEARCH_SLOTS} searches are running; try again shortly"),
        })?;
    let (index, original) = (state.index.clone(), params.original);
    let offset = request.offset;
    let started = std::time::Instant::now();
    let results = tokio::task::spawn_blocking(move || index.search(&request))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let next = offset + results.events.len() + results.unreadable as usize;
    Ok(Json(json!({
        "total": results.total,
        "returned": results.events.len(),
        "offset": offset,
        // Where the next page starts, while matches remain.
        "next_offset": (next < results.total as usize).then_some(next),
        // The page was cut short of `limit` at the size a response may have.
        "truncated": results.truncated,
        // Matches whose stored event a damaged index file made unreadable (run verify).
        "unreadable": results.unreadable,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
        "events": results.events.iter().map(|e| event_json(e, original)).collect::<Vec<_>>(),
    })))
}

/// Builds a search from what a person typed (CLI and API alike).
pub fn search_request(
    query: &str,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Result<SearchRequest, String> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query is {} bytes; at most {MAX_QUERY_BYTES} are accepted",
            query.len()
        ));
    }
    let now = Utc::now();
    let bound = |name: &str, t: Option<&str>| {
        t.filter(|t| !t.trim().is_empty())
            .map(|t| parse_time_bound(t, now).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let (from, to) = (bound("from", from)?, bound("to", to)?);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(format!("from ({f}) must be before to ({t})"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > store::MAX_SEARCH_LIMIT {
        return Err(format!(
            "limit must be from 1 to {}",
            store::MAX_SEARCH_LIMIT
        ));
    }
    let offset = offset.unwrap_or(0);
    if offset > store::MAX_OFFSET {
        return Err(format!(
            "offset must be at most {}; narrow the time range instead",
            store::MAX_OFFSET
        ));
    }
    Ok(SearchRequest {
        query: query.to_owned(),
        from,
        to,
        limit,
        offset,
        max_bytes: store::MAX_RESULT_BYTES,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    format: Option<String>,
}

/// Per-record errors listed in an ingest answer, at most.
const MAX_LISTED_ERRORS: usize = 1000;

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
fn authorized(
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
fn reader(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
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
fn admin(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    authorized(
        &state.admin_tokens,
        "admin_tokens",
        "changing alerts and rules over HTTP",
        headers,
    )
}

/// `POST /api/v1/rules/reload`: reads the config file again (roster, clinic model, rules).
async fn reload(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&state, &headers)?;
    let reloader = state
        .reloader
        .clone()
        .ok_or_else(|| ApiError::Internal("no rules".into()))?;
    match tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    {
        Ok(summary) => Ok(Json(json!({ "status": "reloaded", "message": summary }))),
        Err(message) => Err(ApiError::BadRequest {
            code: "bad_config",
            message: format!("{message} (the previous rules stay in force)"),
        }),
    }
}

/// `POST /api/v1/ingest?format=<an import format>` (default auto): the body's records are
/// imported as `mimamori import` would, and the answer comes once they are durable.
async fn ingest(
    State(state): State<Arc<AppState>>,
    params: Result<Query<IngestParams>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = |status, code, message: String| ApiError::Status {
        status,
        code,
        message,
    };
    let Some(importer) = state.importer.clone() else {
        return Err(status(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server does not store events".into(),
        ));
    };
    authorized(
        &state.ingest_tokens,
        "ingest_tokens",
        "HTTP ingest",
        &headers,
    )?;
    let params = query(params)?;
    // A store that refuses data (a full disk) says so before the body is read.
    if let Some(reason) = state.store.as_ref().and_then(StoreHandle::refusing) {
        return Err(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{reason}; try again later"),
        ));
    }
    // The same names as `mimamori import --format`.
    let format = params
        .format
        .as_deref()
        .unwrap_or("auto")
        .parse::<Format>()
        .map_err(|message| bad_parameter(format!("format: {message}")))?;
    let max = state.max_body_bytes;
    let too_large = move |what: &str| ApiError::Status {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        message: format!("the {what} is over the limit of {max} bytes (http.max_body_bytes)"),
    };
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large("request body"))?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || bytes.starts_with(&[0x1f, 0x8b]);
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        use std::io::Read;
        let body: Vec<u8> = if gzip {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest {
                    code: "bad_gzip",
                    message: format!("the gzip body does not decompress: {e}"),
                })?;
            if out.len() > max {
                return Err(too_large("decompressed body"));
            }
            out
        } else {
            bytes.to_vec()
        };
        // The answer lists the first rejects; the count says how many there were.
        let mut rejects = ingest::import::LineCap::new(Vec::new(), MAX_LISTED_ERRORS as u64);
        let report = importer
            .import_stream(format, &mut &body[..], "http", Some(&mut rejects))
            .map_err(|e| match e {
                ingest::import::ImportError::Store(message) => ApiError::Status {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message,
                },
                ingest::import::ImportError::Input(message) => ApiError::BadRequest {
                    code: "bad_body",
                    message,
                },
            })?;
        let listed: Vec<u8> = rejects.finish().unwrap_or_default();
        Ok((report, listed))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (report, rejects) = outcome?;
    let errors: Vec<&str> = std::str::from_utf8(&rejects)
        .unwrap_or("")
        .lines()
        .take(MAX_LISTED_ERRORS)
        .map(|l| l.strip_prefix("http: ").unwrap_or(l))
        .collect();
    Ok(Json(json!({
        "accepted": report.accepted,
        "rejected": report.rejected,
        "duplicates": report.duplicates,
        "filtered": report.filtered.values().sum::<u64>(),
        "gaps": report.gaps,
        "searchable": report.not_searchable == 0,
        "errors": errors,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    since: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

/// Reads alerts the way `mimamori alerts` does: `since` as in search, `status` open,
/// acknowledged or closed.
pub fn alert_filter(
    since: Option<&str>,
    status: Option<&str>,
    limit: Option<usize>,
) -> Result<alerting::db::AlertFilter, String> {
    let since = since
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_time_bound(s, Utc::now()).map_err(|e| format!("since: {e}")))
        .transpose()?;
    let status = status
        .map(str::parse::<alerting::db::AlertStatus>)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(alerting::db::AlertFilter {
        since,
        status,
        limit: limit.unwrap_or(1000).clamp(1, 100_000),
    })
}

fn open_alerts(state: &AppState) -> Result<alerting::db::AlertDb, ApiError> {
    let path = state
        .alerts_db
        .as_ref()
        .ok_or_else(|| ApiError::Internal("no alert database".into()))?;
    alerting::db::AlertDb::open(path, chrono::Duration::hours(1))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn alerts(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    params: Result<Query<AlertParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    reader(&state, &headers)?;
    let params = query(params)?;
    let filter = alert_filter(
        params.since.as_deref(),
        params.status.as_deref(),
        params.limit,
    )
    .map_err(bad_parameter)?;
    let list = tokio::task::spawn_blocking(move || {
        open_alerts(&state)?
            .list(&filter)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "alerts": list })))
}

async fn alert(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    reader(&state, &headers)?;
    tokio::task::spawn_blocking(move || {
        let found = match open_alerts(&state)?.get(id) {
            Ok(a) => a,
            Err(alerting::db::AlertDbError::NotFound(_)) => {
                return Err(ApiError::Status {
                    status: StatusCode::NOT_FOUND,
                    code: "not_found",
                    message: format!("no alert {id}"),
                });
            }
            Err(e) => return Err(ApiError::Internal(e.to_string())),
        };
        let mut events = Vec::new();
        for evidence in &found.alert.evidence {
            let request = SearchRequest {
                query: format!("event.id:{}", evidence.as_str()),
                from: None,
                to: None,
                limit: 1,
                offset: 0,
                max_bytes: store::MAX_RESULT_BYTES,
            };
            if let Some(e) = state.index.search(&request)?.events.first() {
                events.push(event_json(e, false));
            }
        }
        Ok(Json(json!({ "alert": found, "events": events })))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Largest body of a status change.
const MAX_STATUS_BODY: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChangeBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    /// Who is making the change (a name for the alert's history).
    #[serde(default)]
    by: Option<String>,
}

/// `POST /api/v1/alerts/{id}/status` with `{"status": "acknowledged" | "closed" | "open",
/// "reason": "...", "by": "..."}` (closing needs a reason): answers with the alert and its
/// history.
async fn alert_status(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin(&state, &headers)?;
    let bytes = axum::body::to_bytes(body, MAX_STATUS_BODY)
        .await
        .map_err(|_| ApiError::Status {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: format!("a status change is at most {MAX_STATUS_BODY} bytes"),
        })?;
    let change: StatusChangeBody =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
            code: "bad_body",
            message: format!(
                "expected {{\"status\": \"acknowledged\" | \"closed\" | \"open\", \"reason\": \"...\", \"by\": \"...\"}}: {e}"
            ),
        })?;
    let status = change
        .status
        .parse::<alerting::db::AlertStatus>()
        .map_err(|e| ApiError::BadRequest {
            code: "bad_status",
            message: e.to_string(),
        })?;
    tokio::task::spawn_blocking(move || {
        let by = change
            .by
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .unwrap_or("an admin token");
        let by = format!("{by} (api)");
        match open_alerts(&state)?.set_status(id, status, change.reason.as_deref(), &by) {
            Ok(a) => Ok(Json(json!({ "alert": a }))),
            Err(alerting::db::AlertDbError::NotFound(_)) => Err(ApiError::Status {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!("no alert {id}"),
            }),
            Err(alerting::db::AlertDbError::Invalid(message)) => Err(ApiError::BadRequest {
                code: "bad_status",
                message,
            }),
            Err(e) => Err(ApiError::Internal(e.to_string())),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}
