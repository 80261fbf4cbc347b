//! Search requests and the time bounds people type (`7d`, `24h`, RFC 3339).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::event::Event;

#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Tantivy query language; empty or `*` means everything.
    pub query: String,
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
    /// Matches skipped first (newest first): where a page starts.
    pub offset: usize,
    /// Bytes of stored events returned at most (the page stops short of `limit` there):
    /// [`MAX_RESULT_BYTES`] for a server's answers, where several run at once.
    pub max_bytes: usize,
    /// Count matches only this far (and past the page asked for), as the search page does
    /// ([`COUNTED_MATCHES`]) and the API when asked (`total_up_to`); `None` counts every match.
    /// Counting every match of a common word reads each one; the newest page alone needs only
    /// the newest.
    pub count_up_to: Option<u64>,
}

impl SearchRequest {
    /// The newest `limit` events matching `query`, any time, at most [`MAX_RESULT_BYTES`].
    pub fn newest(query: impl Into<String>, limit: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            from: None,
            to: None,
            limit,
            offset: 0,
            max_bytes: MAX_RESULT_BYTES,
            count_up_to: None,
        }
    }

    /// Only those in `[from, to)`.
    pub fn between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> SearchRequest {
        self.from = Some(from);
        self.to = Some(to);
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    /// Every match, not just the ones returned; at least this many when `total_exact` is
    /// false.
    pub total: u64,
    /// `total` counts every match. False when the request's `count_up_to` stopped the count:
    /// then there are more, and at least one past the page.
    pub total_exact: bool,
    /// Newest first, at most `limit`.
    pub events: Vec<Event>,
    /// Matches whose event could not be read from the log (a damaged block); left out.
    pub unreadable: u64,
    /// The page stopped short of `limit` because its events reached `max_bytes`: ask for the
    /// next page from `offset + events.len()`.
    pub truncated: bool,
}

/// Bytes of stored events one search returns at most, however many are asked for, so a few
/// concurrent searches for everything cannot exhaust memory.
pub const MAX_RESULT_BYTES: usize = 8 << 20;
/// Matches the search page's rows are counted to (its total is the histogram's), as
/// Elasticsearch's `track_total_hits` does by default.
pub const COUNTED_MATCHES: u64 = 10_000;
/// Furthest page start accepted.
pub const MAX_OFFSET: usize = 1_000_000;

/// Parses a time bound: RFC 3339 (`2026-11-22T09:00:00+09:00`), a date (`2026-11-22`, midnight
/// UTC), `now`, or an age before `now` (`90s`, `30m`, `24h`, `7d`, `2w`).
pub fn parse_time_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number
        .parse()
        .ok()
        .filter(|n| *n <= 100 * 366 * 86_400)
        .ok_or_else(|| bad_time(text))?;
    let age = match unit {
        "s" => Duration::seconds(amount),
        "m" => Duration::minutes(amount),
        "h" => Duration::hours(amount),
        "d" => Duration::days(amount),
        "w" => Duration::weeks(amount),
        _ => return Err(bad_time(text)),
    };
    now.checked_sub_signed(age).ok_or_else(|| bad_time(text))
}

fn bad_time(text: &str) -> String {
    format!(
        "`{text}` is not a time: use RFC 3339 (2026-11-22T09:00:00+09:00), a date (2026-11-22), \
         `now`, or an age such as 30m, 24h, 7d, 2w"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .to_utc();
        let at = |s: &str| parse_time_bound(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("24h").unwrap(), "2026-11-21T12:00:00+00:00");
        assert_eq!(at("7d").unwrap(), "2026-11-15T12:00:00+00:00");
        assert_eq!(
            at("2026-11-22T09:00:00+09:00").unwrap(),
            "2026-11-22T00:00:00+00:00"
        );
        assert_eq!(at("2026-11-01").unwrap(), "2026-11-01T00:00:00+00:00");
        assert_eq!(at("now").unwrap(), now.to_rfc3339());
        for bad in ["yesterday", "7x", "", "d", "99999999999999999999d", "-3d"] {
            let err = at(bad).unwrap_err();
            assert!(err.contains("is not a time"), "{bad}: {err}");
        }
    }
}
