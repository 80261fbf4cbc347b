//! The HTTP API: search, metrics, health.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use store::{EventIndex, SearchRequest, StoreError, parse_time_bound};
use tracing::error;

/// Longest query string accepted.
const MAX_QUERY_BYTES: usize = 4096;
const DEFAULT_LIMIT: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub index: EventIndex,
    pub registry: prometheus::Registry,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/search", get(search))
        .with_state(Arc::new(state))
}

/// An error as the API reports it: `{"code": "bad_query", "message": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    BadRequest { code: &'static str, message: String },
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

async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "events": state.index.num_events() }))
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

async fn search(
    State(state): State<Arc<AppState>>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest {
        code: "bad_parameter",
        message: e.body_text(),
    })?;
    let request = search_request(
        &params.q,
        params.from.as_deref(),
        params.to.as_deref(),
        params.limit,
    )
    .map_err(|message| ApiError::BadRequest {
        code: "bad_parameter",
        message,
    })?;
    let (index, original) = (state.index.clone(), params.original);
    let started = std::time::Instant::now();
    let results = tokio::task::spawn_blocking(move || index.search(&request))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({
        "total": results.total,
        "returned": results.events.len(),
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
    Ok(SearchRequest {
        query: query.to_owned(),
        from,
        to,
        limit,
    })
}
