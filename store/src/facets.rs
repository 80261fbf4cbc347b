//! Counts over a search: hits per time bucket (the histogram above a result list) and the most
//! frequent values of a few fields (who, what, where). Both are Tantivy aggregations over the
//! facet columns ([`crate::schema::FACET_FIELDS`]), never a scan of the stored events.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::aggregation::{AggContextParams, AggregationCollector, AggregationLimitsGuard};
use tantivy::collector::Count;

use crate::error::StoreError;
use crate::index::EventIndex;
use crate::schema::FACET_FIELDS;

/// Values a page lists per field.
pub const MAX_FACET_VALUES: u32 = 50;
/// Values counted per field at most (a report's staff of a large clinic).
pub const MAX_COUNTED_VALUES: u32 = 2_000;
/// Buckets of a histogram at most: a longer range gets wider buckets.
pub const MAX_BUCKETS: i64 = 400;
/// Memory one aggregation may use before it fails (instead of the process).
const AGGREGATION_MEMORY: u64 = 64 << 20;

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
        let mut aggs = serde_json::Map::new();
        let size = request.size.clamp(1, MAX_COUNTED_VALUES);
        for (i, field) in request.fields.iter().enumerate() {
            aggs.insert(
                format!("f{i}"),
                json!({"terms": {"field": field, "size": size}}),
            );
        }
        let bucket_secs = if request.bucket_secs > 0 {
            bucket_width(request.from, request.to, request.bucket_secs)
        } else {
            0
        };
        if bucket_secs > 0 {
            let min = request.from.timestamp_millis();
            let max = request.to.timestamp_millis() - 1;
            // Buckets start at multiples of the width from the epoch; `offset` moves them to
            // start at `from` instead, so the first bar is the range's first.
            let offset = min.rem_euclid(bucket_secs * 1000);
            aggs.insert(
                "histogram".into(),
                json!({"date_histogram": {
                    "field": "@timestamp",
                    "fixed_interval": format!("{bucket_secs}s"),
                    "offset": format!("{offset}ms"),
                    "min_doc_count": 0,
                    "extended_bounds": {"min": min, "max": max},
                    "hard_bounds": {"min": min, "max": max},
                }}),
            );
        }
        let aggs: Aggregations = serde_json::from_value(serde_json::Value::Object(aggs))
            .map_err(|e| StoreError::BadQuery(format!("aggregation: {e}")))?;
        let limits = AggregationLimitsGuard::new(Some(AGGREGATION_MEMORY), None);
        let collector = AggregationCollector::from_aggs(
            aggs,
            AggContextParams::new(limits, self.index.tokenizers().clone()),
        );
        let searcher = self.reader.searcher();
        let (total, results): (usize, AggregationResults) =
            searcher.search(&query, &(Count, collector))?;
        let results = serde_json::to_value(&results)
            .map_err(|e| StoreError::BadQuery(format!("aggregation result: {e}")))?;
        let buckets = |name: &str| {
            results
                .get(name)
                .and_then(|a| a.get("buckets"))
                .and_then(|b| b.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let histogram = buckets("histogram")
            .iter()
            .filter_map(|b| {
                let ms = b.get("key")?.as_f64()? as i64;
                let count = b.get("doc_count")?.as_u64()?;
                Some((DateTime::from_timestamp_millis(ms)?, count))
            })
            .collect();
        let fields = request
            .fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let values = buckets(&format!("f{i}"))
                    .iter()
                    .filter_map(|b| {
                        let value = match b.get("key")? {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Some(FacetValue {
                            value,
                            count: b.get("doc_count")?.as_u64()?,
                        })
                    })
                    .collect();
                (field.clone(), values)
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
