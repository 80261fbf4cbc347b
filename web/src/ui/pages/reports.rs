//! The access reports: everyone who touched one patient in a period (printable, for a
//! patient's disclosure request), and one person's activity by day.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{Duration, Timelike, Utc};
use minijinja::{Value, context};
use serde::Deserialize;
use store::{Event, FacetRequest, SearchRequest};

use crate::AppState;
use crate::ui::audit::{self, Entry};
use crate::ui::i18n::{format_date, format_time};
use crate::ui::pages::range::{PRESETS, RangeParams, span};
use crate::ui::pages::search::quoted;
use crate::ui::pages::{alert_db, blocking, search_slot, store_error};
use crate::ui::session::{AnyRole, Page, ui_of};
use crate::ui::{PageError, svg};

/// Accesses listed in one report at most (the page says when there were more).
pub const MAX_REPORT_EVENTS: usize = 5000;
/// Events further apart than this are two sessions.
const SESSION_GAP_MINUTES: i64 = 30;

#[derive(Debug, Deserialize, Default)]
pub struct ReportParams {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    user: String,
    #[serde(flatten)]
    range: RangeParams,
}

/// A report's subject (a patient id, an account) as typed, at most 200 characters.
fn subject(text: &str) -> Result<String, PageError> {
    let text = text.trim();
    if text.chars().count() > 200 {
        return Err(PageError::Bad(
            "200文字までにしてください / at most 200 characters".into(),
        ));
    }
    Ok(text.to_owned())
}

/// The roster's name for an account, if the roster knows it (`CLINIC\n001`, `n001@clinic`).
pub(crate) fn staff_name(clinic: &rules::clinic::Clinic, user: &str) -> Option<String> {
    let bare = user.rsplit('\\').next().unwrap_or(user);
    let bare = bare.split('@').next().unwrap_or(bare).to_lowercase();
    clinic
        .staff
        .get(&bare)
        .or_else(|| clinic.staff.get(user))
        .map(|s| s.name.clone())
        .filter(|n| !n.is_empty())
}

/// The events of `query` in the range, oldest first, at most [`MAX_REPORT_EVENTS`].
async fn events(
    state: &Arc<AppState>,
    query: String,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> Result<(Vec<Event>, u64), PageError> {
    let _slot = search_slot(state).await?;
    let index = state.index.clone();
    let request = SearchRequest {
        max_bytes: store::MAX_RESULT_BYTES * 4,
        ..SearchRequest::newest(query, MAX_REPORT_EVENTS).between(from, to)
    };
    let found = blocking(move || index.search(&request).map_err(store_error)).await?;
    let mut events = found.events;
    events.reverse();
    Ok((events, found.total))
}

/// Alert ids by the event ids they hold as evidence, for alerts seen since `from`.
async fn alerts_by_evidence(
    state: &Arc<AppState>,
    from: chrono::DateTime<Utc>,
    user: Option<String>,
) -> Result<(HashMap<String, i64>, Vec<alerting::db::StoredAlert>), PageError> {
    let Ok(db) = alert_db(state) else {
        return Ok((HashMap::new(), Vec::new()));
    };
    blocking(move || {
        let db = db.lock().map_err(|_| PageError::Internal)?;
        let alerts = db
            .list(&alerting::db::AlertFilter {
                since: Some(from),
                user,
                limit: 1000,
                ..Default::default()
            })
            .map_err(|_| PageError::Internal)?;
        let mut by_event = HashMap::new();
        for a in &alerts {
            for id in &a.alert.evidence {
                by_event.insert(id.as_str().to_owned(), a.id);
            }
        }
        Ok((by_event, alerts))
    })
    .await
}

pub(crate) async fn patient(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Query(params): Query<ReportParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let patient = subject(&params.patient)?;
    let span = span(&params.range, zone, "90d", Utc::now())?;
    let mut values = context! {};
    if !patient.is_empty() {
        let (events, total) = events(
            &state,
            // Views in mimamori itself are accesses too (`event.dataset:*` takes the audit trail).
            format!("patient.id:{} AND event.dataset:*", quoted(&patient)),
            span.from,
            span.to,
        )
        .await?;
        let (alerts, _) = alerts_by_evidence(&state, span.from, None).await?;
        audit::require(
            &state,
            &viewer,
            Entry::new(
                "report.patient",
                format!("patient access report {}", span.describe()),
            )
            .patient(Some(&patient)),
        )
        .await?;
        let text = |key: &str| ui.catalogues.text(viewer.lang, key);
        let clinic = ui.clinic();
        let mut people: BTreeMap<String, u64> = BTreeMap::new();
        let mut unexplained = 0u64;
        let rows: Vec<Value> = events
            .iter()
            .map(|e| {
                let user = e.user.clone().unwrap_or_default();
                *people.entry(user.clone()).or_default() += 1;
                let local_day = e.timestamp.with_timezone(&zone).date_naive();
                let site = e.site.clone().or_else(|| clinic.site_of(e));
                let own = staff_record(&clinic, &user, &patient);
                let alert = alerts.get(e.id.as_str()).copied();
                let (explanation, explained) = if let Some(alert) = alert {
                    (format!("{} #{alert}", text("report.alerted")), false)
                } else if own {
                    (text("report.own_record"), false)
                } else if e.dataset == audit::DATASET {
                    (text("report.audit_access"), true)
                } else if ui
                    .appointments
                    .as_ref()
                    .is_some_and(|a| a.related(&patient, site.as_deref(), local_day, 0))
                {
                    (text("report.appointment"), true)
                } else {
                    (text("report.unexplained"), false)
                };
                if !explained {
                    unexplained += 1;
                }
                context! {
                    id => e.id.as_str(),
                    time => format_time(e.timestamp, zone, viewer.lang),
                    user => user,
                    name => staff_name(&clinic, e.user.as_deref().unwrap_or("")),
                    host => e.host.clone().unwrap_or_default(),
                    site => site.unwrap_or_default(),
                    action => e.action.clone(),
                    category => e.category.clone().unwrap_or_default(),
                    explanation => explanation,
                    explained => explained,
                    alert => alert,
                }
            })
            .collect();
        values = context! {
            rows => rows,
            total => total,
            shown => events.len(),
            people => people.len(),
            unexplained => unexplained,
            has_appointments => ui.appointments.is_some(),
        };
    }
    Ok(ui.render(
        "patient.html",
        &viewer,
        context! {
            patient => patient,
            range => span.key,
            presets => crate::ui::ser(PRESETS),
            from => span.from_text,
            to => span.to_text,
            span_from => format_time(span.from, zone, viewer.lang),
            span_to => format_time(span.to, zone, viewer.lang),
            generated => format_time(Utc::now(), zone, viewer.lang),
            ..values
        },
    ))
}

/// Whether the account belongs to the staff member who is this patient (their own record).
fn staff_record(clinic: &rules::clinic::Clinic, user: &str, patient: &str) -> bool {
    let bare = user.rsplit('\\').next().unwrap_or(user);
    let bare = bare.split('@').next().unwrap_or(bare).to_lowercase();
    clinic
        .staff
        .get(&bare)
        .and_then(|s| s.patient_id.as_deref())
        .is_some_and(|p| p.eq_ignore_ascii_case(patient))
}

pub(crate) async fn staff(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Query(params): Query<ReportParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let user = subject(&params.user)?;
    let span = span(&params.range, zone, "7d", Utc::now())?;
    let mut values = context! {};
    if !user.is_empty() {
        let query = format!("user.name:{} AND event.dataset:*", quoted(&user));
        let (events, total) = events(&state, query.clone(), span.from, span.to).await?;
        let index = state.index.clone();
        let (from, to) = (span.from, span.to);
        let patients = blocking(move || {
            index
                .facets(&FacetRequest {
                    query,
                    from,
                    to,
                    fields: vec!["patient.id".into()],
                    size: store::MAX_FACET_VALUES,
                    bucket_secs: 0,
                })
                .map_err(store_error)
        })
        .await?;
        let (_, alerts) = alerts_by_evidence(&state, span.from, Some(user.clone())).await?;
        audit::require(
            &state,
            &viewer,
            Entry::new(
                "report.staff",
                format!("staff activity report of {user} {}", span.describe()),
            ),
        )
        .await?;
        // Sessions per local day: runs of events no more than SESSION_GAP apart.
        let mut days: BTreeMap<chrono::NaiveDate, Vec<(u32, u32, u64)>> = BTreeMap::new();
        let mut last: Option<chrono::DateTime<Utc>> = None;
        for e in &events {
            let local = e.timestamp.with_timezone(&zone);
            let minute = local.hour() * 60 + local.minute();
            let list = days.entry(local.date_naive()).or_default();
            let continues = last
                .is_some_and(|l| e.timestamp - l <= Duration::minutes(SESSION_GAP_MINUTES))
                && !list.is_empty();
            if continues {
                let s = list.last_mut().expect("not empty");
                s.1 = minute.max(s.1);
                s.2 += 1;
            } else {
                list.push((minute, minute + 1, 1));
            }
            last = Some(e.timestamp);
        }
        let day_rows: Vec<Value> = days
            .iter()
            .map(|(day, sessions)| {
                let open: Vec<(u32, u32)> = ui
                    .clinic()
                    .hours_on(*day)
                    .iter()
                    .map(|(a, b)| (a.hour() * 60 + a.minute(), b.hour() * 60 + b.minute()))
                    .collect();
                let bars: Vec<(u32, u32, String)> = sessions
                    .iter()
                    .map(|(a, b, n)| {
                        (
                            *a,
                            *b,
                            format!(
                                "{:02}:{:02}-{:02}:{:02} ({n})",
                                a / 60,
                                a % 60,
                                b / 60,
                                b % 60
                            ),
                        )
                    })
                    .collect();
                let count: u64 = sessions.iter().map(|s| s.2).sum();
                context! {
                    day => format_date(*day, viewer.lang),
                    closed => open.is_empty(),
                    count => count,
                    sessions => sessions.len(),
                    first => bars.first().map(|b| b.2.clone()),
                    timeline => Value::from_safe_string(svg::day_timeline(&open, &bars)),
                }
            })
            .collect();
        let patients: Vec<Value> = patients
            .fields
            .first()
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|v| context! { id => v.value, count => v.count })
            .collect();
        let alerts: Vec<Value> = alerts
            .iter()
            .map(|a| {
                context! {
                    id => a.id,
                    rule => a.alert.rule.clone(),
                    severity => a.alert.severity.as_str(),
                    status => a.status.as_str(),
                    time => format_time(a.alert.last_seen, zone, viewer.lang),
                    explanation => a.alert.explanation.clone(),
                }
            })
            .collect();
        values = context! {
            days => day_rows,
            total => total,
            shown => events.len(),
            patients => patients,
            alerts => alerts,
            name => staff_name(&ui.clinic(), &user),
        };
    }
    Ok(ui.render(
        "staff.html",
        &viewer,
        context! {
            subject => user,
            range => span.key,
            presets => crate::ui::ser(PRESETS),
            from => span.from_text,
            to => span.to_text,
            span_from => format_time(span.from, zone, viewer.lang),
            span_to => format_time(span.to, zone, viewer.lang),
            ..values
        },
    ))
}
