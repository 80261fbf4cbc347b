//! `GET /api/v1/search`: the query language, a time range, a page; bounded in size and in how
//! many run at once.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;
use store::{SearchRequest, parse_time_bound};

use crate::AppState;
use crate::auth::Searcher;
use crate::error::{ApiError, BadParameter, bad_parameter, query};
use crate::ui::audit::{self, Entry};

/// Longest query string accepted.
const MAX_QUERY_BYTES: usize = 4096;
const DEFAULT_LIMIT: usize = 100;

/// Searches (and CSV-sized reads) answered at once; more wait up to [`SEARCH_WAIT`].
pub const SEARCH_SLOTS: usize = 4;
const SEARCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Count matches only this far (and one past the page): `"total_exact": false` then says
    /// `total` is a lower bound. A newest page of a common word is then as fast as a rare one's.
    total_up_to: Option<u64>,
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

pub(crate) async fn search(
    Searcher(caller): Searcher,
    State(state): State<Arc<AppState>>,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query(params)?;
    let request = search_request(
        &params.q,
        params.from.as_deref(),
        params.to.as_deref(),
        params.limit,
        params.offset,
        state.zone(),
    )
    .map_err(|e| bad_parameter(e.0))?;
    let request = SearchRequest {
        count_up_to: params.total_up_to,
        ..request
    };
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
    let patient = store::query::patients_named(&request.query)
        .into_iter()
        .next();
    let described = format!(
        "API search: {} [{} .. {}]",
        request.query,
        request.from.map(|t| t.to_rfc3339()).unwrap_or_default(),
        request.to.map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let results = tokio::task::spawn_blocking(move || index.search(&request))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let entry = Entry::new("search", described).patient(patient.as_deref());
    // Events are handed out only when the record of it is kept.
    if !audit::api(&state, &caller, entry).await {
        return Err(ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "audit_unavailable",
            message: "the audit trail cannot be written (is the disk full?): nothing is answered until it can".into(),
        });
    }
    let next = offset + results.events.len() + results.unreadable as usize;
    Ok(Json(json!({
        "total": results.total,
        // False when the count stopped at `total_up_to`: `total` is then a lower bound.
        "total_exact": results.total_exact,
        "returned": results.events.len(),
        "offset": offset,
        // Where the next page starts, while matches remain.
        "next_offset": (next < results.total as usize).then_some(next),
        // The page was cut short of `limit` at the size a response may have.
        "truncated": results.truncated,
        // Matches whose event a damaged log block made unreadable (run verify).
        "unreadable": results.unreadable,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
        "events": results.events.iter().map(|e| event_json(e, original)).collect::<Vec<_>>(),
    })))
}

/// `text`, when it is a date alone, as the first instant of that day in `zone`.
fn local_midnight(text: &str, zone: chrono_tz::Tz) -> Option<chrono::DateTime<Utc>> {
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let midnight = date.and_hms_opt(0, 0, 0)?;
    // A day that starts in a clock change starts at its first existing instant.
    let local = zone.from_local_datetime(&midnight).earliest().or_else(|| {
        zone.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
            .earliest()
    })?;
    Some(local.with_timezone(&Utc))
}

/// Builds a search from what a person typed (CLI and API alike). A date alone (`2026-11-22`)
/// is its midnight in the clinic's time zone `zone`, as the pages and the CLI show times.
pub fn search_request(
    query: &str,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<usize>,
    offset: Option<usize>,
    zone: chrono_tz::Tz,
) -> Result<SearchRequest, BadParameter> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query is {} bytes; at most {MAX_QUERY_BYTES} are accepted",
            query.len()
        )
        .into());
    }
    let now = Utc::now();
    let bound = |name: &str, t: Option<&str>| {
        t.filter(|t| !t.trim().is_empty())
            .map(|t| {
                local_midnight(t, zone)
                    .map_or_else(|| parse_time_bound(t, now), Ok)
                    .map_err(|e| format!("{name}: {e}"))
            })
            .transpose()
    };
    let (from, to) = (bound("from", from)?, bound("to", to)?);
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(format!("from ({f}) must be before to ({t})").into());
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > store::MAX_SEARCH_LIMIT {
        return Err(format!("limit must be from 1 to {}", store::MAX_SEARCH_LIMIT).into());
    }
    let offset = offset.unwrap_or(0);
    if offset > store::MAX_OFFSET {
        return Err(format!(
            "offset must be at most {}; narrow the time range instead",
            store::MAX_OFFSET
        )
        .into());
    }
    Ok(SearchRequest {
        query: query.to_owned(),
        from,
        to,
        limit,
        offset,
        max_bytes: store::MAX_RESULT_BYTES,
        count_up_to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_alone_is_midnight_in_the_clinics_zone_and_other_bounds_are_as_written() {
        let tokyo = chrono_tz::Asia::Tokyo;
        let request = search_request(
            "*",
            Some("2026-11-15"),
            Some("2026-11-16"),
            None,
            None,
            tokyo,
        )
        .unwrap();
        assert_eq!(
            request.from.unwrap().to_rfc3339(),
            "2026-11-14T15:00:00+00:00"
        );
        assert_eq!(
            request.to.unwrap().to_rfc3339(),
            "2026-11-15T15:00:00+00:00"
        );
        let utc =
            search_request("*", Some("2026-11-15"), None, None, None, chrono_tz::UTC).unwrap();
        assert_eq!(utc.from.unwrap().to_rfc3339(), "2026-11-15T00:00:00+00:00");
        let written = search_request(
            "*",
            Some("2026-11-15T09:00:00+09:00"),
            None,
            None,
            None,
            tokyo,
        )
        .unwrap();
        assert_eq!(
            written.from.unwrap().to_rfc3339(),
            "2026-11-15T00:00:00+00:00"
        );
        // A day that begins in a clock change begins at its first instant.
        let havana = search_request(
            "*",
            Some("2026-03-08"),
            None,
            None,
            None,
            chrono_tz::America::Havana,
        )
        .unwrap();
        assert_eq!(
            havana.from.unwrap().to_rfc3339(),
            "2026-03-08T05:00:00+00:00"
        );
        assert!(search_request("*", Some("2026-13-01"), None, None, None, tokyo).is_err());
    }
}
