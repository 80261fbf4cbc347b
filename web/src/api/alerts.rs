//! `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` (with its evidence events) and
//! `POST /api/v1/alerts/{id}/status`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use store::{SearchRequest, parse_time_bound};

use crate::AppState;
use crate::api::search::event_json;
use crate::auth::{Caller, Changer, Reader};
use crate::error::{ApiError, BadParameter, bad_parameter, json_body, query};
use crate::ui::audit::{self, Entry};

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
) -> Result<alerting::db::AlertFilter, BadParameter> {
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
        ..Default::default()
    })
}

/// The shared alert database (requests take turns; each is short).
pub(crate) fn open_alerts(
    state: &AppState,
) -> Result<std::sync::MutexGuard<'_, alerting::db::AlertDb>, ApiError> {
    let db = state
        .alerts
        .as_ref()
        .ok_or_else(|| ApiError::Internal("no alert database".into()))?;
    Ok(db.lock().unwrap_or_else(|e| e.into_inner()))
}

pub(crate) async fn alerts(
    _: Reader,
    State(state): State<Arc<AppState>>,
    params: Result<Query<AlertParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query(params)?;
    let filter = alert_filter(
        params.since.as_deref(),
        params.status.as_deref(),
        params.limit,
    )
    .map_err(|e| bad_parameter(e.0))?;
    let list = tokio::task::spawn_blocking(move || {
        open_alerts(&state)?
            .list(&filter)
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(json!({ "alerts": list })))
}

pub(crate) async fn alert(
    _: Reader,
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
                count_up_to: None,
            };
            if let Some(e) = state.index.search(&request)?.events.first() {
                events.push(event_json(e, false));
            }
        }
        let deliveries =
            alerting::delivery::store::for_alert(open_alerts(&state)?.conn_for_reading(), id)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Json(
            json!({ "alert": found, "events": events, "deliveries": deliveries }),
        ))
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
pub(crate) async fn alert_status(
    Changer(subscriber, caller): Changer,
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let change: StatusChangeBody = json_body(
        body,
        MAX_STATUS_BODY,
        "a status change",
        "bad_body",
        r#"{"status": "acknowledged" | "closed" | "open", "reason": "...", "by": "..."}"#,
    )
    .await?;
    let status = change
        .status
        .parse::<alerting::db::AlertStatus>()
        .map_err(|e| ApiError::BadRequest {
            code: "bad_status",
            message: e.to_string(),
        })?;
    let audited = state.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let given = change
            .by
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());
        // A subscriber is recorded by its configured name, whatever it says it is.
        let by = match (&subscriber, given) {
            (Some(s), Some(by)) => format!("{by} (subscriber {})", s.name),
            (Some(s), None) => format!("subscriber {}", s.name),
            // A token is named with the change; a config token (older) says only "api".
            (None, by) if caller.name.starts_with("http.") => {
                format!("{} (api)", by.unwrap_or("api"))
            }
            (None, by) => format!("{} (api, {})", by.unwrap_or("api"), caller.name),
        };
        // Nobody judges an alert about themselves, through the API either.
        if let (Some(given), Ok(subject)) = (given, open_alerts(&state)?.get(id))
            && subject
                .alert
                .user
                .as_deref()
                .is_some_and(|u| crate::ui::audit::same_person(u, given))
        {
            return Err(ApiError::Status {
                status: StatusCode::FORBIDDEN,
                code: "own_alert",
                message: format!("alert {id} is about {given}: someone else must change it"),
            });
        }
        let caller = Caller {
            name: subscriber
                .as_ref()
                .map_or(caller.name.clone(), |s| format!("subscriber:{}", s.name)),
            ..caller
        };
        let changed = open_alerts(&state)?.set_status(id, status, change.reason.as_deref(), &by);
        let described = format!("API: alert {id} {status} by {by}");
        let answer = match changed {
            // A subscriber sees what its stream shows: patient data only if it may.
            Ok(a) => Ok(Json(match &subscriber {
                Some(s) => json!({ "alert": alerting::document::AlertDocument::new(
                    &a,
                    alerting::outbox::Change::from(a.status),
                    Some(&by),
                    &state.origin,
                    s.include_patient_data,
                ) }),
                None => json!({ "alert": a }),
            })),
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
        };
        Ok::<_, ApiError>((answer, caller, described))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (answer, caller, described) = answer;
    if answer.is_ok() {
        audit::api(&audited, &caller, Entry::new("alert.change", described)).await;
    }
    answer
}
