//! The search page: a query box (plain words or the query language), a time range, a histogram
//! of hits, facets that narrow the search when clicked, a results table with paging; one
//! event's detail with its raw original; the results as CSV.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};
use store::{Event, FacetRequest, SearchRequest};

use crate::AppState;
use crate::ui::audit::{self, Entry};
use crate::ui::i18n::format_time;
use crate::ui::pages::range::{PRESETS, RangeParams, Span, span};
use crate::ui::pages::{blocking, search_slot, store_error};
use crate::ui::session::{AnyRole, Page, ui_of};
use crate::ui::{PageError, svg, urlencode};

/// Rows per page.
const PAGE_ROWS: usize = 50;
/// Rows of a CSV export at most.
pub const MAX_EXPORT_ROWS: usize = 10_000;
/// Longest query accepted.
const MAX_QUERY_CHARS: usize = 2000;
/// The fields shown as facets, with their catalogue keys.
const FACETS: &[(&str, &str)] = &[
    ("user.name", "user"),
    ("event.action", "action"),
    ("host.name", "host"),
    ("site", "site"),
    ("event.dataset", "dataset"),
];

#[derive(Debug, Deserialize, Default)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(flatten)]
    range: RangeParams,
    #[serde(default)]
    page: Option<usize>,
}

/// One result row as the table shows it.
#[derive(Debug, Serialize)]
pub struct Row {
    id: String,
    time: String,
    user: String,
    action: String,
    outcome: String,
    patient: String,
    host: String,
    site: String,
    message: String,
    dataset: String,
}

pub(crate) fn row(event: &Event, zone: chrono_tz::Tz, lang: crate::ui::i18n::Lang) -> Row {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut message = event.message.clone();
    if message.chars().count() > 160 {
        message = message.chars().take(160).collect::<String>() + "…";
    }
    Row {
        id: event.id.as_str().to_owned(),
        time: format_time(event.timestamp, zone, lang),
        user: text(&event.user),
        action: event.action.clone(),
        outcome: event.outcome.as_str().to_owned(),
        patient: text(&event.patient),
        host: text(&event.host),
        site: text(&event.site),
        message,
        dataset: event.dataset.clone(),
    }
}

/// A quoted value for the query language.
pub(crate) fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn checked_query(q: &str) -> Result<String, PageError> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(PageError::Bad(format!(
            "検索語が長すぎます / a query is at most {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(q.trim().to_owned())
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let params = params.map(|Query(p)| p).unwrap_or_default();
    let zone = ui.zone();
    let q = checked_query(&params.q)?;
    let span = span(&params.range, zone, "24h", Utc::now());
    let page_no = params.page.unwrap_or(1).clamp(1, 1000);
    let mut error = None;
    let mut values = context! {};
    match span {
        Err(PageError::Bad(message)) => error = Some(message),
        Err(e) => return Err(e),
        Ok(span) => {
            let found = run(&state, &q, &span, page_no).await;
            let entry = Entry::new("search", format!("{q} {}", span.describe()))
                .patient(store::query::patients_named(&q).first().map(String::as_str));
            match found {
                Ok(found) => {
                    audit::require(&state, &viewer, entry).await?;
                    values = found.render(&q, &span, page_no, zone, viewer.lang);
                }
                Err(PageError::Bad(message)) => {
                    audit::record(&state, &viewer, entry.failed()).await;
                    error = Some(message);
                }
                Err(e) => return Err(e),
            }
        }
    }
    let range = params.range.range.clone().unwrap_or_else(|| "24h".into());
    Ok(ui.render(
        "search.html",
        &viewer,
        context! {
            q => q,
            error => error,
            range => range,
            presets => crate::ui::ser(PRESETS),
            from => params.range.from.clone().unwrap_or_default(),
            to => params.range.to.clone().unwrap_or_default(),
            fields => crate::ui::ser(store::EventSchema::new().searchable_fields()),
            ..values
        },
    ))
}

struct Found {
    results: store::SearchResults,
    facets: store::Facets,
}

async fn run(
    state: &Arc<AppState>,
    q: &str,
    span: &Span,
    page_no: usize,
) -> Result<Found, PageError> {
    let _slot = search_slot(state).await?;
    let index = state.index.clone();
    let search = SearchRequest {
        offset: (page_no - 1) * PAGE_ROWS,
        // The page's total comes from the counts below, which count every match anyway.
        count_up_to: Some(store::COUNTED_MATCHES),
        ..SearchRequest::newest(q, PAGE_ROWS).between(span.from, span.to)
    };
    let facets = FacetRequest {
        query: q.to_owned(),
        from: span.from,
        to: span.to,
        fields: FACETS.iter().map(|(f, _)| (*f).to_owned()).collect(),
        size: 8,
        // About a hundred bars, whatever the range.
        bucket_secs: ((span.to - span.from).num_seconds() / 100).max(60),
    };
    blocking(move || {
        let results = index.search(&search).map_err(store_error)?;
        let facets = index.facets(&facets).map_err(store_error)?;
        Ok(Found { results, facets })
    })
    .await
}

impl Found {
    fn render(
        &self,
        q: &str,
        span: &Span,
        page_no: usize,
        zone: chrono_tz::Tz,
        lang: crate::ui::i18n::Lang,
    ) -> Value {
        let rows: Vec<Row> = self
            .results
            .events
            .iter()
            .map(|e| row(e, zone, lang))
            .collect();
        let bars: Vec<(String, u64)> = self
            .facets
            .histogram
            .iter()
            .map(|(t, n)| (format_time(*t, zone, lang), *n))
            .collect();
        let link = |query: &str| format!("/search?q={}&{}", urlencode(query), span.query());
        let facets: Vec<Value> = FACETS
            .iter()
            .zip(&self.facets.fields)
            .map(|((field, key), (_, values))| {
                let items: Vec<Value> = values
                    .iter()
                    .map(|v| {
                        let narrowed =
                            format!("{q} {field}:{}", quoted(&v.value)).trim().to_owned();
                        context! { value => v.value.clone(), count => v.count, href => link(&narrowed) }
                    })
                    .collect();
                context! { field => *field, key => *key, values => items }
            })
            .collect();
        let pages = (self.facets.total as usize).div_ceil(PAGE_ROWS).max(1);
        let page_link = |n: usize| format!("{}&page={n}", link(q));
        context! {
            total => self.facets.total,
            rows => crate::ui::ser(&rows),
            histogram => Value::from_safe_string(svg::histogram(&bars, 960, 80)),
            bucket_minutes => self.facets.bucket_secs / 60,
            facets => facets,
            page => page_no,
            pages => pages,
            prev => (page_no > 1).then(|| page_link(page_no - 1)),
            next => (page_no < pages.min(1000)).then(|| page_link(page_no + 1)),
            export => format!("/search/export.csv?q={}&{}", urlencode(q), span.query()),
            span_from => format_time(span.from, zone, lang),
            span_to => format_time(span.to, zone, lang),
        }
    }
}

/// A cell of a CSV file: quoted, and a leading `=`, `+`, `-` or `@` made plain text so a
/// spreadsheet does not run it as a formula.
fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '|', '%', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Query(params): Query<SearchParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let zone = ui.zone();
    let q = checked_query(&params.q)?;
    let span = span(&params.range, zone, "24h", Utc::now())?;
    let _slot = search_slot(&state).await?;
    let index = state.index.clone();
    let request = SearchRequest {
        max_bytes: store::MAX_RESULT_BYTES * 4,
        ..SearchRequest::newest(q.clone(), MAX_EXPORT_ROWS).between(span.from, span.to)
    };
    let results = blocking(move || index.search(&request).map_err(store_error)).await?;
    // A byte-order mark: Excel on a Japanese Windows reads UTF-8 only with one.
    let mut out = String::from("\u{feff}");
    out.push_str(
        "time,user,action,outcome,patient,host,site,source_ip,dataset,message,event_id\r\n",
    );
    for e in &results.events {
        let t = e.timestamp.with_timezone(&zone).to_rfc3339();
        let cells = [
            t.as_str(),
            e.user.as_deref().unwrap_or(""),
            &e.action,
            e.outcome.as_str(),
            e.patient.as_deref().unwrap_or(""),
            e.host.as_deref().unwrap_or(""),
            e.site.as_deref().unwrap_or(""),
            e.source_ip.as_deref().unwrap_or(""),
            &e.dataset,
            &e.message,
            e.id.as_str(),
        ];
        out.push_str(&cells.map(csv_cell).join(","));
        out.push_str("\r\n");
    }
    let entry = Entry::new(
        "export",
        format!(
            "CSV of {} events: {q} {}",
            results.events.len(),
            span.describe()
        ),
    )
    .patient(store::query::patients_named(&q).first().map(String::as_str));
    audit::require(&state, &viewer, entry).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"mimamori-{}.csv\"",
                    Utc::now().with_timezone(&zone).format("%Y%m%d-%H%M")
                ),
            ),
        ],
        out,
    )
        .into_response())
}

/// One event with every field and its raw original.
pub(crate) async fn event(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(PageError::NotFound);
    }
    let index = state.index.clone();
    let request = SearchRequest::newest(format!("event.id:{id} AND event.dataset:*"), 1);
    let found = blocking(move || index.search(&request).map_err(store_error)).await?;
    let event = found.events.into_iter().next().ok_or(PageError::NotFound)?;
    let entry = Entry::new("event.view", format!("event {id}")).patient(event.patient.as_deref());
    audit::require(&state, &viewer, entry).await?;
    let mut fields: Vec<(String, String)> = match serde_json::to_value(&event) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(k, _)| k != "event.original")
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
        _ => Vec::new(),
    };
    fields.sort();
    Ok(ui.render(
        "event.html",
        &viewer,
        context! {
            time => format_time(event.timestamp, ui.zone(), viewer.lang),
            fields => crate::ui::ser(&fields),
            original => event.original,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("-1"), "\"'-1\"");
        assert_eq!(quoted(r#"a"b\"#), r#""a\"b\\""#);
    }
}
