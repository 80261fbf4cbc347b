//! `GET /healthz` and `GET /metrics`: open to anyone who reaches the port (no event data).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;

/// `GET /healthz`: 200 with `"status":"ok"` while every stage runs; 503 with the stages that
/// do not (a stage that died, the log refusing data on a full disk) and why.
pub(crate) async fn healthz(State(state): State<Arc<AppState>>) -> Response {
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

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&state.registry.gather())
        .unwrap_or_else(|e| format!("# encoding failed: {e}\n"));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
