//! The appliance's own pages: the sources that send logs (last event, rate, silences), the
//! clinic model as a person reads it, and the accounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc, Weekday};
use minijinja::{Value, context};
use serde::Deserialize;
use store::{FacetRequest, SearchRequest};

use crate::AppState;
use crate::accounts::Role;
use crate::ui::PageError;
use crate::ui::audit::{self, Entry};
use crate::ui::i18n::format_time;
use crate::ui::pages::search::quoted;
use crate::ui::pages::{blocking, search_slot, store_error};
use crate::ui::session::{AdminRole, AnyRole, Page, Posted, ui_of};

/// Sources listed at most (per kind).
const MAX_SOURCES: u32 = 50;
/// A source silent for this many times its usual interval (and at least an hour) is flagged.
const SILENCE_FACTOR: i64 = 10;

/// Record-number gap events read for the sources page (a week's).
const MAX_GAP_EVENTS: usize = 500;

/// The gaps found in one source's numbering, and where and when last.
struct Gaps {
    line: report::weekly::GapLine,
    host: Option<String>,
    last: Option<chrono::DateTime<Utc>>,
}

/// One source: a kind of log (`event.dataset`) or a sender's address.
struct Source {
    field: &'static str,
    value: String,
    week: u64,
    day: u64,
}

pub(crate) async fn sources(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let now = Utc::now();
    let _slot = search_slot(&state).await?;
    let index = state.index.clone();
    let rows = blocking(move || {
        let count = |from| {
            index
                .facets(&FacetRequest {
                    query: "*".into(),
                    from,
                    to: now + Duration::seconds(1),
                    fields: vec!["event.dataset".into(), "log.source.address".into()],
                    size: MAX_SOURCES,
                    bucket_secs: 0,
                })
                .map_err(store_error)
        };
        let week = count(now - Duration::days(7))?;
        let day = count(now - Duration::days(1))?;
        let mut sources = Vec::new();
        for (i, field) in ["event.dataset", "log.source.address"]
            .into_iter()
            .enumerate()
        {
            for v in &week.fields[i].1 {
                let day = day.fields[i]
                    .1
                    .iter()
                    .find(|d| d.value == v.value)
                    .map_or(0, |d| d.count);
                sources.push(Source {
                    field,
                    value: v.value.clone(),
                    week: v.count,
                    day,
                });
            }
        }
        let mut rows = Vec::new();
        for s in sources {
            let last = index
                .search(&SearchRequest::newest(
                    format!("{}:{}", s.field, quoted(&s.value)),
                    1,
                ))
                .map_err(store_error)?
                .events
                .into_iter()
                .next()
                .map(|e| e.ingested);
            // The usual interval: a week over the week's events.
            let usual = Duration::seconds(7 * 86400 / s.week.max(1) as i64);
            let silent_after = (usual * SILENCE_FACTOR as i32).max(Duration::hours(1));
            let silent = last.is_none_or(|t| now - t > silent_after);
            rows.push((s, last, silent));
        }
        // Holes in a source's record numbering (found on import): the week's, per source.
        let found = index
            .search(
                &SearchRequest::newest("event.action:sequence_gap", MAX_GAP_EVENTS)
                    .between(now - Duration::days(7), now + Duration::seconds(1)),
            )
            .map_err(store_error)?;
        let mut gaps: BTreeMap<String, Gaps> = BTreeMap::new();
        for e in found.events {
            let source = e.labels.get("gap.source").cloned().unwrap_or_default();
            let g = gaps.entry(source.clone()).or_insert_with(|| Gaps {
                line: report::weekly::GapLine {
                    source,
                    gaps: 0,
                    missing: 0,
                },
                host: None,
                last: None,
            });
            g.line.count(&e);
            g.host = g.host.take().or(e.host.clone());
            g.last = g.last.max(Some(e.timestamp));
        }
        Ok((rows, gaps, found.total))
    })
    .await?;
    let (rows, gaps, gap_events) = rows;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(s, last, silent)| {
            context! {
                kind => if s.field == "event.dataset" { "dataset" } else { "sender" },
                value => s.value,
                week => s.week,
                day => s.day,
                per_hour => format!("{:.1}", s.day as f64 / 24.0),
                last => last.map(|t| format_time(t, zone, viewer.lang)),
                silent => silent,
            }
        })
        .collect();
    let gaps: Vec<Value> = gaps
        .into_iter()
        .map(|(source, g)| {
            context! {
                source => source,
                host => g.host,
                gaps => g.line.gaps,
                missing => g.line.missing,
                last => g.last.map(|t| format_time(t, zone, viewer.lang)),
            }
        })
        .collect();
    Ok(ui.render(
        "sources.html",
        &viewer,
        context! {
            sources => rows,
            gaps => gaps,
            gap_events => gap_events,
            more_gaps => gap_events > MAX_GAP_EVENTS as u64,
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    roster: String,
}

pub(crate) async fn settings(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AdminRole>,
    Query(query): Query<SettingsQuery>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    // The ids kept in the roster file are editable; the config file's own rows are not.
    // (A roster file broken by hand since is shown, not editable, until it is mended.)
    let in_file: Option<Vec<String>> = match ui.roster {
        Some(_) => crate::ui::pages::roster::read_current(&state)
            .await
            .ok()
            .map(|now| now.rows.into_iter().map(|r| r.id.to_lowercase()).collect()),
        None => None,
    };
    let clinic = ui.clinic();
    let text = |key: &str| ui.catalogues.text(viewer.lang, key);
    let days = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    let hours: Vec<Value> = days
        .iter()
        .map(|d| {
            let h = clinic.hours_text(*d);
            context! {
                day => text(&format!("days.{}", d.num_days_from_monday())),
                hours => if h.is_empty() { text("settings.closed") } else { h },
            }
        })
        .collect();
    let sites: Vec<Value> = clinic
        .sites
        .iter()
        .map(|s| {
            context! {
                name => s.name.clone(),
                networks => s.networks.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
                hosts => s.hosts.iter().map(|h| h.as_str().to_owned()).collect::<Vec<_>>().join(", "),
            }
        })
        .collect();
    let roles: Vec<Value> = clinic
        .roles
        .iter()
        .map(|(name, r)| {
            context! {
                name => name,
                allow => r.allow.iter().map(|p| p.text.clone()).collect::<Vec<_>>().join(", "),
                deny => r.deny.iter().map(|p| p.text.clone()).collect::<Vec<_>>().join(", "),
            }
        })
        .collect();
    let staff: Vec<Value> = clinic
        .staff
        .values()
        .map(|s| {
            context! {
                id => s.id.clone(),
                name => s.name.clone(),
                roles => s.roles.join(", "),
                site => s.site.clone(),
                start => s.start.map(|d| d.to_string()),
                end => s.end.map(|d| d.to_string()),
                flags => s.flags.join(", "),
                in_file => in_file.as_ref().is_some_and(|ids| ids.contains(&s.id.to_lowercase())),
            }
        })
        .collect();
    let today = Utc::now().with_timezone(&clinic.zone).date_naive();
    let upcoming: Vec<Value> = (0..60)
        .filter_map(|i| {
            let day = today + Duration::days(i);
            clinic.closed_date(day).map(|why| {
                let why = match why {
                    rules::clinic::Closed::Holiday(name) => name.to_owned(),
                    _ => text("settings.closed_date"),
                };
                context! { day => crate::ui::i18n::format_date(day, viewer.lang), why => why }
            })
        })
        .collect();
    audit::require(&state, &viewer, Entry::new("settings.view", "clinic model")).await?;
    Ok(ui.render(
        "settings.html",
        &viewer,
        context! {
            name => clinic.name.clone(),
            zone => clinic.zone.name(),
            grace => clinic.grace.num_minutes(),
            hours => hours,
            sites => sites,
            roles => roles,
            staff => staff,
            upcoming => upcoming,
            editable => in_file.is_some(),
            saved => query.roster == "saved",
        },
    ))
}

fn account_rows(state: &AppState) -> Result<Vec<Value>, PageError> {
    Ok(ui_of(state)?
        .accounts
        .list()
        .map_err(|_| PageError::Internal)?
        .into_iter()
        .map(|a| {
            context! {
                name => a.name,
                role => a.role.as_str(),
                disabled => a.disabled,
                locked => a.locked_until,
            }
        })
        .collect())
}

pub(crate) async fn users(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AdminRole>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let s = state.clone();
    let rows = blocking(move || account_rows(&s)).await?;
    Ok(ui.render(
        "users.html",
        &viewer,
        context! { accounts => rows, error => None::<String> },
    ))
}

#[derive(Debug, Deserialize)]
pub struct AddUser {
    name: String,
    role: String,
    password: String,
}

pub(crate) async fn add_user(
    State(state): State<Arc<AppState>>,
    Posted(viewer, form, _): Posted<AdminRole, AddUser>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    let (s, by) = (state.clone(), viewer.name().to_owned());
    let (name, role_text) = (form.name.clone(), form.role.clone());
    let result = blocking(move || {
        let role: Role = form
            .role
            .parse()
            .map_err(|e: crate::accounts::AccountError| PageError::Bad(e.to_string()))?;
        Ok(crate::ui::session::ui_of(&s)?
            .accounts
            .add(&form.name, role, &form.password, &by)
            .err()
            .map(|e| e.to_string()))
    })
    .await?;
    if let Some(error) = result {
        let s = state.clone();
        let rows = blocking(move || account_rows(&s)).await?;
        let mut response = ui.render(
            "users.html",
            &viewer,
            context! { accounts => rows, error => Some(error) },
        );
        *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    audit::record(
        &state,
        &viewer,
        Entry::new("user.add", format!("account {name} added as {role_text}")),
    )
    .await;
    Ok(Redirect::to("/users").into_response())
}
