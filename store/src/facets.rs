//! Counts over a search: hits per time bucket (the histogram above a result list) and the most
//! frequent values of a few fields (who, what, where). Both read columns of the index
//! ([`crate::histogram`] the `@timestamp` column, [`crate::value_counts`] those of
//! [`crate::schema::FACET_FIELDS`]), never a scan of the stored events.

use std::time::Instant;

use chrono::{DateTime, Utc};
use tantivy::collector::Count;

use crate::error::StoreError;
use crate::histogram::TimeBuckets;
use crate::index::EventIndex;
use crate::schema::FACET_FIELDS;
use crate::value_counts::ValueCounts;

/// Values a page lists per field.
pub const MAX_FACET_VALUES: u32 = 50;
/// Values counted per field at most (a report's staff of a large clinic).
pub const MAX_COUNTED_VALUES: u32 = 2_000;
/// Values of a field named per index segment at least (ten times those asked for, if more):
/// counts are exact below it (see [`crate::value_counts`]).
const PER_SEGMENT_VALUES: usize = 100_000;
/// Buckets of a histogram at most: a longer range gets wider buckets.
pub const MAX_BUCKETS: i64 = 400;

/// What to count.
#[derive(Debug, Clone)]
pub struct FacetRequest {
    /// The query language, as in [`crate::SearchRequest`].
    pub query: String,
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    /// Fields whose most frequent values are wanted (each one of [`FACET_FIELDS`]).
    pub fields: Vec<String>,
    /// Values per field, at most [`MAX_COUNTED_VALUES`].
    pub size: u32,
    /// Width of a histogram bucket in seconds; 0: no histogram. Widened so that the range
    /// has at most [`MAX_BUCKETS`].
    pub bucket_secs: i64,
}

/// One value of a field and how many matching events have it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FacetValue {
    pub value: String,
    pub count: u64,
}

/// The counts of a [`FacetRequest`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facets {
    pub total: u64,
    /// Start of each bucket and its count, oldest first, every bucket of the range (empty
    /// ones included).
    pub histogram: Vec<(DateTime<Utc>, u64)>,
    /// The bucket width used (after widening), seconds.
    pub bucket_secs: i64,
    /// Per requested field, its most frequent values, most frequent first.
    pub fields: Vec<(String, Vec<FacetValue>)>,
}

/// A bucket width at least `wanted` for which `[from, to)` has at most [`MAX_BUCKETS`].
pub fn bucket_width(from: DateTime<Utc>, to: DateTime<Utc>, wanted: i64) -> i64 {
    let span = (to - from).num_seconds().max(1);
    let least = (span + MAX_BUCKETS - 1) / MAX_BUCKETS;
    const STEPS: &[i64] = &[
        60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
    ];
    let need = wanted.max(least);
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= need)
        .unwrap_or((need + 86399) / 86400 * 86400)
}

impl EventIndex {
    /// Counts the events matching `request` per time bucket and per value of its fields.
    pub fn facets(&self, request: &FacetRequest) -> Result<Facets, StoreError> {
        let started = Instant::now();
        if let Some(bad) = request
            .fields
            .iter()
            .find(|f| !FACET_FIELDS.contains(&f.as_str()))
        {
            return Err(StoreError::BadQuery(format!(
                "`{bad}` cannot be counted; fields that can: {}",
                FACET_FIELDS.join(", ")
            )));
        }
        if request.to <= request.from {
            return Err(StoreError::BadQuery(
                "the end of the time range must be after its start".into(),
            ));
        }
        let query = self.bounded_query(&request.query, Some(request.from), Some(request.to))?;
        let size = request.size.clamp(1, MAX_COUNTED_VALUES) as usize;
        let bucket_secs = if request.bucket_secs > 0 {
            bucket_width(request.from, request.to, request.bucket_secs)
        } else {
            0
        };
        let buckets = if bucket_secs > 0 {
            let width = bucket_secs * 1000;
            let span = (request.to - request.from).num_milliseconds();
            ((span + width - 1) / width) as usize
        } else {
            0
        };
        // Buckets start at `from`, so the first bar is the range's first.
        let histogram = TimeBuckets {
            start_micros: request.from.timestamp_micros(),
            width_micros: bucket_secs * 1_000_000,
            buckets,
            times: self.times.clone(),
        };
        let values = ValueCounts {
            fields: request.fields.clone(),
            per_segment: (size * 10).max(PER_SEGMENT_VALUES),
        };
        let searcher = self.searcher();
        let (total, counts, values) = searcher.search(&query, &(Count, histogram, values))?;
        let histogram = counts
            .into_iter()
            .enumerate()
            .map(|(i, count)| {
                (
                    request.from + chrono::Duration::seconds(bucket_secs * i as i64),
                    count,
                )
            })
            .collect();
        let fields = request
            .fields
            .iter()
            .cloned()
            .zip(values)
            .map(|(field, counts)| {
                let mut values: Vec<FacetValue> = counts
                    .into_iter()
                    .map(|(value, count)| FacetValue { value, count })
                    .collect();
                // Most frequent first; equal counts in the values' order.
                values.sort_unstable_by(|a, b| {
                    b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value))
                });
                values.truncate(size);
                (field, values)
            })
            .collect();
        if let Some(metrics) = &self.metrics {
            metrics
                .search_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(Facets {
            total: total as u64,
            histogram,
            bucket_secs,
            fields,
        })
    }
}
