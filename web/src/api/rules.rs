//! `POST /api/v1/rules/reload`: reads the config file again (roster, clinic model, rules).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::ui::audit::{self, Entry};

/// `POST /api/v1/rules/reload`: reads the config file again (roster, clinic model, rules).
pub(crate) async fn reload(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reloader = state
        .reloader
        .clone()
        .ok_or_else(|| ApiError::Internal("no rules".into()))?;
    match tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    {
        Ok(summary) => {
            let entry = Entry::new("rules.reload", format!("API: {summary}"));
            audit::api(&state, &caller, entry).await;
            Ok(Json(json!({ "status": "reloaded", "message": summary })))
        }
        Err(message) => Err(ApiError::BadRequest {
            code: "bad_config",
            message: format!("{message} (the previous rules stay in force)"),
        }),
    }
}
