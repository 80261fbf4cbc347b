//! Delivery over HTTP: `GET /api/v1/deliveries` (what was sent where, what failed),
//! silences (`GET`/`POST /api/v1/silences`, `DELETE /api/v1/silences/{id}`), and the live
//! alert stream `GET /api/v1/alerts/stream` (Server-Sent Events; `id:` is the outbox number,
//! so a subscriber that reconnects with `Last-Event-ID` misses nothing).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::alerts::open_alerts;
use crate::auth::{Admin, Reader, Subscriber};
use crate::error::{ApiError, json_body, query};
use crate::ui::audit::{self, Entry};
use alerting::db::AlertDbError;
use alerting::document::AlertDocument;
use alerting::silences::Silence;

/// Live streams open at once, at most.
pub const MAX_STREAMS: usize = 16;

/// Changes sent per look at the outbox.
const STREAM_BATCH: usize = 200;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    #[serde(default)]
    failed: bool,
    channel: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn deliveries(
    _: Reader,
    State(state): State<Arc<AppState>>,
    params: Result<Query<DeliveryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = query(params)?;
    tokio::task::spawn_blocking(move || {
        let db = open_alerts(&state)?;
        let list = alerting::delivery::store::list(
            db.conn_for_reading(),
            p.channel.as_deref(),
            p.failed,
            p.limit.unwrap_or(100).clamp(1, 10_000),
        )
        .map_err(internal)?;
        Ok(Json(json!({ "deliveries": list })))
    })
    .await
    .map_err(internal)?
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceParams {
    #[serde(default)]
    all: bool,
}

pub(crate) async fn silences(
    _: Reader,
    State(state): State<Arc<AppState>>,
    params: Result<Query<SilenceParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = query(params)?;
    tokio::task::spawn_blocking(move || {
        let list = alerting::silences::list(&*open_alerts(&state)?, !p.all).map_err(internal)?;
        Ok(Json(json!({ "silences": list })))
    })
    .await
    .map_err(internal)?
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    site: Option<String>,
    /// Default: now.
    #[serde(default)]
    starts_at: Option<chrono::DateTime<Utc>>,
    /// Either an end or a duration.
    #[serde(default)]
    ends_at: Option<chrono::DateTime<Utc>>,
    #[serde(default)]
    duration_minutes: Option<u32>,
    comment: String,
    created_by: String,
}

/// Largest body of a new silence.
const MAX_SILENCE_BODY: usize = 16 << 10;

pub(crate) async fn add_silence(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let new: NewSilence = json_body(
        body,
        MAX_SILENCE_BODY,
        "a silence",
        "bad_silence",
        r#"{"rule"|"user"|"site": "...", "duration_minutes": 120 (or "ends_at"), "comment": "why", "created_by": "who"}"#,
    )
    .await?;
    let bad = |message: String| ApiError::BadRequest {
        code: "bad_silence",
        message,
    };
    let starts_at = new.starts_at.unwrap_or_else(Utc::now);
    let ends_at = match (new.ends_at, new.duration_minutes) {
        (Some(end), None) => end,
        (None, Some(m)) => starts_at + chrono::Duration::minutes(i64::from(m)),
        _ => return Err(bad("give either ends_at or duration_minutes".into())),
    };
    let silence = Silence {
        id: 0,
        rule: new.rule,
        user: new.user,
        site: new.site,
        starts_at,
        ends_at,
        created_by: format!("{} (api)", new.created_by.trim()),
        comment: new.comment,
    };
    let audited = state.clone();
    let answer = tokio::task::spawn_blocking(move || {
        match alerting::silences::add(
            &*open_alerts(&state)?,
            &silence,
            &state.rule_names,
            &state.site_names,
        ) {
            Ok(s) => Ok((StatusCode::CREATED, Json(json!({ "silence": s })))),
            Err(AlertDbError::Invalid(m)) => Err(bad(m)),
            Err(e) => Err(internal(e)),
        }
    })
    .await
    .map_err(internal)??;
    let what = format!("API: silence added: {}", answer.1.0["silence"]);
    audit::api(&audited, &caller, Entry::new("silence.add", what)).await;
    Ok(answer)
}

pub(crate) async fn expire_silence(
    Admin(caller): Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let audited = state.clone();
    let answer = tokio::task::spawn_blocking(move || {
        match alerting::silences::expire(&*open_alerts(&state)?, id) {
            Ok(()) => Ok(Json(json!({ "expired": id }))),
            Err(AlertDbError::Invalid(message)) => Err(ApiError::Status {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message,
            }),
            Err(e) => Err(internal(e)),
        }
    })
    .await
    .map_err(internal)??;
    let what = format!("API: silence {id} expired");
    audit::api(&audited, &caller, Entry::new("silence.expire", what)).await;
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Start after this outbox number (as `Last-Event-ID` does); default: from now on.
    since: Option<i64>,
}

/// The changes after `cursor` as stream events.
fn next_events(
    state: &AppState,
    cursor: i64,
    include_patient_data: bool,
) -> Result<(i64, Vec<Event>), ApiError> {
    let db = open_alerts(state)?;
    let changes =
        alerting::outbox::after(db.conn_for_reading(), cursor, STREAM_BATCH).map_err(internal)?;
    let mut last = cursor;
    let mut events = Vec::with_capacity(changes.len());
    for c in changes {
        last = c.seq;
        let stored = match db.get(c.alert_id) {
            Ok(a) => a,
            Err(AlertDbError::NotFound(_)) => continue,
            Err(e) => return Err(internal(e)),
        };
        let doc = AlertDocument::new(
            &stored,
            c.change,
            c.by.as_deref(),
            &state.origin,
            include_patient_data,
        );
        let data = serde_json::to_string(&doc).map_err(internal)?;
        events.push(
            Event::default()
                .id(c.seq.to_string())
                .event("alert")
                .data(data),
        );
    }
    Ok((last, events))
}

/// How often an open stream's API token is checked again.
const REVALIDATE: Duration = Duration::from_secs(5);

pub(crate) async fn stream(
    subscriber: Subscriber,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let p = query(params)?;
    let permit = state
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            message: format!("at most {MAX_STREAMS} alert streams are open at once"),
        })?;
    // An id this server never gave (from before a restore, or garbage) resumes at the newest:
    // a browser's EventSource stops reconnecting after an error answer.
    let resume = headers.get("last-event-id").map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(i64::MAX)
    });
    let s = state.clone();
    let last = tokio::task::spawn_blocking(move || {
        alerting::outbox::last(open_alerts(&s)?.conn_for_reading()).map_err(internal)
    })
    .await
    .map_err(internal)??;
    // An id from before a restore (beyond the newest) resumes at the newest, not never.
    let start = resume.or(p.since).map_or(last, |seq| seq.clamp(0, last));
    tracing::info!(subscriber = %subscriber.name, after = start, "alert stream opened");
    let include = subscriber.include_patient_data;
    // An API token revoked while its stream is open ends the stream (within REVALIDATE); a
    // reconnect is then refused.
    let scoped = crate::auth::bearer(&headers).to_owned();
    let scoped = scoped
        .starts_with(crate::api_tokens::TOKEN_PREFIX)
        .then_some(scoped);
    let checked = tokio::time::Instant::now();
    let events = futures_util::stream::unfold(
        (
            state,
            start,
            std::collections::VecDeque::new(),
            permit,
            checked,
        ),
        move |(state, mut cursor, mut queued, permit, mut checked)| {
            let scoped = scoped.clone();
            async move {
                loop {
                    if let Some(token) = &scoped
                        && checked.elapsed() >= REVALIDATE
                    {
                        let (s, token) = (state.clone(), token.clone());
                        let valid = tokio::task::spawn_blocking(move || {
                            s.accounts
                                .as_ref()
                                .is_some_and(|a| a.token(&token).is_some())
                        })
                        .await
                        .unwrap_or(false);
                        if !valid {
                            tracing::info!("an alert stream ended: its API token was revoked");
                            return None;
                        }
                        checked = tokio::time::Instant::now();
                    }
                    if let Some(event) = queued.pop_front() {
                        return Some((Ok(event), (state, cursor, queued, permit, checked)));
                    }
                    let s = state.clone();
                    let read =
                        tokio::task::spawn_blocking(move || next_events(&s, cursor, include)).await;
                    match read {
                        Ok(Ok((last, events))) => {
                            cursor = last;
                            queued.extend(events);
                            if queued.is_empty() {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                        // The stream ends; the subscriber reconnects with its Last-Event-ID.
                        _ => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
