//! The alerts: a list with filters and counts, and one alert's page with its explanation,
//! evidence, the surrounding session and the investigation (acknowledge, assign, comment,
//! close as true positive / false positive / allowed, open again).

use std::sync::Arc;

use alerting::db::{AlertFilter, AlertStatus, StoredAlert};
use alerting::triage::{RESOLUTIONS, Resolution, Step};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use minijinja::{Value, context};
use serde::Deserialize;
use store::SearchRequest;

use crate::AppState;
use crate::ui::PageError;
use crate::ui::audit::{self, Entry};
use crate::ui::i18n::format_time;
use crate::ui::pages::range::{RangeParams, span};
use crate::ui::pages::search::{quoted, row};
use crate::ui::pages::{alert_db, blocking, search_slot, store_error};
use crate::ui::session::{AnyRole, AuditorRole, Page, Posted, ui_of};

/// Alerts listed at most.
const MAX_LISTED: usize = 500;
/// How far around an alert its session is shown.
const SESSION_MARGIN_MINUTES: i64 = 30;

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    user: String,
    #[serde(flatten)]
    range: RangeParams,
}

fn some(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn alert_row(a: &StoredAlert, zone: chrono_tz::Tz, lang: crate::ui::i18n::Lang) -> Value {
    context! {
        id => a.id,
        rule => a.alert.rule.clone(),
        title => rules::RuleId::from_name(&a.alert.rule).map_or(a.alert.rule.clone(), |r| r.title().to_owned()),
        severity => a.alert.severity.as_str(),
        user => a.alert.user.clone(),
        site => a.alert.site.clone(),
        first => format_time(a.alert.first_seen, zone, lang),
        last => format_time(a.alert.last_seen, zone, lang),
        count => a.alert.count,
        status => a.status.as_str(),
        resolution => a.resolution.map(|r| r.as_str()),
        assignee => a.assignee.clone(),
        explanation => a.alert.explanation.clone(),
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let span = span(&params.range, zone, "30d", Utc::now())?;
    let status = some(&params.status)
        .map(|s| s.parse::<AlertStatus>())
        .transpose()
        .map_err(|e| PageError::Bad(e.to_string()))?;
    let severity = some(&params.severity).map(|s| rules::Severity::from_name(&s));
    let filter = AlertFilter {
        since: Some(span.from),
        until: Some(span.to),
        status,
        severity,
        rule: some(&params.rule),
        site: some(&params.site),
        user: some(&params.user),
        limit: MAX_LISTED,
        oldest_first: false,
    };
    let db = alert_db(&state)?;
    let (alerts, counts) = blocking(move || {
        let db = db.lock().map_err(|_| PageError::Internal)?;
        let alerts = db.list(&filter).map_err(|_| PageError::Internal)?;
        let counts = db.counts().map_err(|_| PageError::Internal)?;
        Ok((alerts, counts))
    })
    .await?;
    let count = |s: AlertStatus| counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
    let rows: Vec<Value> = alerts
        .iter()
        .map(|a| alert_row(a, zone, viewer.lang))
        .collect();
    Ok(ui.render(
        "alerts.html",
        &viewer,
        context! {
            alerts => rows,
            open => count(AlertStatus::Open),
            acknowledged => count(AlertStatus::Acknowledged),
            closed => count(AlertStatus::Closed),
            f_status => params.status,
            f_severity => params.severity,
            f_rule => params.rule,
            f_site => params.site,
            f_user => params.user,
            range => span.key,
            from => span.from_text,
            to => span.to_text,
            rules => state.rule_names.as_ref(),
            sites => state.site_names.as_ref(),
            presets => crate::ui::ser(crate::ui::pages::range::PRESETS),
        },
    ))
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let db = alert_db(&state)?;
    let alert = blocking(move || {
        let db = db.lock().map_err(|_| PageError::Internal)?;
        db.get(id).map_err(|e| match e {
            alerting::db::AlertDbError::NotFound(_) => PageError::NotFound,
            _ => PageError::Internal,
        })
    })
    .await?;
    let evidence_query = alert
        .alert
        .evidence
        .iter()
        .take(100)
        .map(|e| format!("event.id:{}", e.as_str()))
        .collect::<Vec<_>>()
        .join(" OR ");
    let session_query = alert
        .alert
        .user
        .as_deref()
        .map(|u| format!("user.name:{}", quoted(u)));
    let (from, to) = (
        alert.alert.first_seen - Duration::minutes(SESSION_MARGIN_MINUTES),
        alert.alert.last_seen + Duration::minutes(SESSION_MARGIN_MINUTES),
    );
    let _slot = search_slot(&state).await?;
    let index = state.index.clone();
    let (evidence, session) = blocking(move || {
        let search = |request: SearchRequest| index.search(&request).map_err(store_error);
        let evidence = if evidence_query.is_empty() {
            Vec::new()
        } else {
            search(SearchRequest::newest(evidence_query, 100))?.events
        };
        let session = match session_query {
            Some(q) => search(SearchRequest::newest(q, 200).between(from, to))?.events,
            None => Vec::new(),
        };
        Ok((evidence, session))
    })
    .await?;
    let patients: Vec<String> = alert.alert.private.clone();
    audit::require(
        &state,
        &viewer,
        Entry::new("alert.view", format!("alert {id}"))
            .patient(patients.first().map(String::as_str)),
    )
    .await?;
    let evidence_ids: Vec<&str> = alert.alert.evidence.iter().map(|e| e.as_str()).collect();
    let session_rows: Vec<Value> = session
        .iter()
        .rev()
        .map(|e| {
            let r = row(e, zone, viewer.lang);
            context! { is_evidence => evidence_ids.contains(&e.id.as_str()), ..crate::ui::ser(&r) }
        })
        .collect();
    let history: Vec<Value> = alert
        .history
        .iter()
        .map(|h| {
            context! {
                at => format_time(h.at, zone, viewer.lang),
                kind => serde_json::to_value(h.kind).ok().and_then(|v| v.as_str().map(str::to_owned)),
                status => h.status.as_str(),
                resolution => h.resolution.map(|r| r.as_str()),
                assignee => h.assignee.clone(),
                reason => h.reason.clone(),
                by => h.by.clone(),
            }
        })
        .collect();
    let db = state.ui.as_ref().map(|_| state.clone());
    let reviewers = match db {
        Some(s) => {
            blocking(move || {
                Ok(crate::ui::session::ui_of(&s)?
                    .accounts
                    .list()
                    .map_err(|_| PageError::Internal)?
                    .into_iter()
                    .filter(|a| a.role >= crate::accounts::Role::Auditor && !a.disabled)
                    .map(|a| a.name)
                    .collect::<Vec<_>>())
            })
            .await?
        }
        None => Vec::new(),
    };
    Ok(ui.render(
        "alert.html",
        &viewer,
        context! {
            alert => alert_row(&alert, zone, viewer.lang),
            reason => alert.status_reason,
            evidence => crate::ui::ser(evidence.iter().map(|e| row(e, zone, viewer.lang)).collect::<Vec<_>>()),
            session => session_rows,
            history => history,
            resolutions => crate::ui::ser(RESOLUTIONS.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
            reviewers => reviewers,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    assignee: String,
}

pub(crate) async fn change(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Posted(viewer, form, _): Posted<AuditorRole, ChangeForm>,
) -> Result<Response, PageError> {
    let resolution = some(&form.resolution)
        .map(|r| r.parse::<Resolution>())
        .transpose()
        .map_err(|e| PageError::Bad(e.to_string()))?;
    let db = alert_db(&state)?;
    let by = viewer.name().to_owned();
    let action = form.action.clone();
    // A reviewer is someone who may triage: an auditor or admin account that is not disabled.
    let accounts = ui_of(&state)?.accounts.clone();
    let assignee = some(&form.assignee);
    if form.action == "assign"
        && let Some(name) = assignee.clone()
    {
        let known = blocking(move || {
            Ok(accounts
                .list()
                .map_err(|_| PageError::Internal)?
                .into_iter()
                .any(|a| {
                    a.name.eq_ignore_ascii_case(&name)
                        && a.role >= crate::accounts::Role::Auditor
                        && !a.disabled
                }))
        })
        .await?;
        if !known {
            return Err(PageError::Bad(
                "担当者は監査担当か管理者のアカウントにしてください / a reviewer is an auditor's or administrator's account".into(),
            ));
        }
    }
    let described = blocking(move || {
        let mut db = db.lock().map_err(|_| PageError::Internal)?;
        // Nobody judges an alert about themselves (comments are welcome).
        let subject = db.get(id).map_err(|e| match e {
            alerting::db::AlertDbError::NotFound(_) => PageError::NotFound,
            _ => PageError::Internal,
        })?;
        if form.action != "comment"
            && subject
                .alert
                .user
                .as_deref()
                .is_some_and(|u| crate::ui::audit::same_person(u, &by))
        {
            return Err(PageError::Refused(
                "自分についてのアラートは、他の人が対応してください / an alert about you is for someone else to handle".into(),
            ));
        }
        let reason = some(&form.reason);
        let step = match form.action.as_str() {
            "acknowledge" => Step::Status {
                status: AlertStatus::Acknowledged,
                resolution: None,
                reason: reason.as_deref(),
            },
            "close" => {
                if resolution.is_none() {
                    return Err(PageError::Bad(
                        "判定を選んでください / choose how the alert was judged".into(),
                    ));
                }
                Step::Status {
                    status: AlertStatus::Closed,
                    resolution,
                    reason: reason.as_deref(),
                }
            }
            "reopen" => Step::Status {
                status: AlertStatus::Open,
                resolution: None,
                reason: reason.as_deref(),
            },
            "assign" => Step::Assign(&form.assignee),
            "comment" => Step::Comment(&form.reason),
            other => return Err(PageError::Bad(format!("unknown action {other:?}"))),
        };
        let described = step.to_string();
        db.investigate(id, step, &by).map_err(|e| match e {
            alerting::db::AlertDbError::NotFound(_) => PageError::NotFound,
            alerting::db::AlertDbError::Invalid(m) => PageError::Bad(m),
            _ => PageError::Internal,
        })?;
        Ok(described)
    })
    .await?;
    audit::record(
        &state,
        &viewer,
        Entry::new("alert.change", format!("alert {id}: {action}: {described}")),
    )
    .await;
    Ok(Redirect::to(&format!("/alerts/{id}")).into_response())
}
