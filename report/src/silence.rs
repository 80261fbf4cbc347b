//! Sources silent longer than usual: for each kind of log (`event.dataset`) and each sender
//! (`log.source.address`), the longest run of empty hours in the period against its longest in
//! each of the periods before. A clinic's EHR is quiet every night and weekend, so only a
//! silence longer than any of the recent ones is a finding: a sender that stopped, a log
//! switched off, a hole in the audit trail.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use store::{EventIndex, FacetRequest};

use crate::ReportError;
use crate::period::Period;
use crate::weekly::quoted;

/// Sources looked at, at most, per field.
pub const MAX_SOURCES: u32 = 50;
/// A silence shorter than this is never a finding.
pub const MIN_SILENCE_HOURS: i64 = 2;

/// A source silent longer than usual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// `event.dataset` or `log.source.address`.
    pub field: String,
    pub source: String,
    /// The longest silence in the period: from, to (the period's end if it never spoke
    /// again), and its hours.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub hours: i64,
    /// Its longest silence in the periods before that held any of its events.
    pub usual_hours: i64,
}

/// The longest run of empty buckets in `histogram` (bucket `width` seconds, ending at `end`):
/// its start, end and length.
fn longest_empty(
    histogram: &[(DateTime<Utc>, u64)],
    width: i64,
    end: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut best: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let mut run: Option<DateTime<Utc>> = None;
    let mut close = |start: DateTime<Utc>, stop: DateTime<Utc>| {
        if best.is_none_or(|(a, b)| stop - start > b - a) {
            best = Some((start, stop));
        }
    };
    for (at, n) in histogram {
        match (n, run) {
            (0, None) => run = Some(*at),
            (0, Some(_)) => {}
            (_, Some(start)) => {
                close(start, *at);
                run = None;
            }
            (_, None) => {}
        }
    }
    if let Some(start) = run {
        let last = histogram
            .last()
            .map_or(end, |(at, _)| *at + Duration::seconds(width));
        close(start, last.min(end));
    }
    best
}

/// The hourly (or wider) counts of `query` over `period`: the histogram, its bucket width and
/// the total.
fn hours(index: &EventIndex, query: &str, period: Period) -> Result<store::Facets, ReportError> {
    let (from, to) = period.range();
    Ok(index.facets(&FacetRequest {
        query: query.to_owned(),
        from,
        to,
        fields: Vec::new(),
        size: 0,
        bucket_secs: 3600,
    })?)
}

/// The sources silent longer than usual in `period`, longest first.
pub fn silences(index: &EventIndex, period: Period) -> Result<Vec<Silence>, ReportError> {
    let (from, to) = period.range();
    let earliest = period.back(period.baseline()).range().0;
    let fields = ["event.dataset", "log.source.address"];
    let present = index.facets(&FacetRequest {
        query: "*".into(),
        from: earliest,
        to,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        size: MAX_SOURCES,
        bucket_secs: 0,
    })?;
    let mut found = Vec::new();
    for (field, values) in present.fields {
        for v in values {
            let query = format!("{field}:{}", quoted(&v.value));
            let mut usual: Option<i64> = None;
            for n in 1..=period.baseline() {
                let before = period.back(n);
                let counts = hours(index, &query, before)?;
                if counts.total == 0 {
                    continue;
                }
                let longest =
                    longest_empty(&counts.histogram, counts.bucket_secs, before.range().1)
                        .map_or(0, |(a, b)| (b - a).num_hours());
                usual = Some(usual.unwrap_or(0).max(longest));
            }
            // A source new this period has no usual to be compared with.
            let Some(usual) = usual else { continue };
            let counts = hours(index, &query, period)?;
            let Some((a, b)) = longest_empty(&counts.histogram, counts.bucket_secs, to) else {
                continue;
            };
            let hours = (b - a).num_hours();
            if hours > usual && hours >= MIN_SILENCE_HOURS {
                found.push(Silence {
                    field: field.clone(),
                    source: v.value.clone(),
                    from: a.max(from),
                    to: b,
                    hours,
                    usual_hours: usual,
                });
            }
        }
    }
    found.sort_by(|a, b| b.hours.cmp(&a.hours).then(a.source.cmp(&b.source)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_of_empty_hours_to_the_end() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let h = |i: i64| t0 + Duration::hours(i);
        let histogram: Vec<(DateTime<Utc>, u64)> = [1, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0]
            .iter()
            .enumerate()
            .map(|(i, n)| (h(i as i64), *n))
            .collect();
        assert_eq!(longest_empty(&histogram, 3600, h(12)), Some((h(8), h(12))));
        assert_eq!(
            longest_empty(&histogram[..8], 3600, h(8)),
            Some((h(4), h(7)))
        );
        assert_eq!(longest_empty(&[(h(0), 5)], 3600, h(1)), None);
    }
}
