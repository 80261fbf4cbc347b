//! Matches per time bucket: the histogram above a result list. A Tantivy collector that reads
//! the `@timestamp` column a block of matches at a time and adds one to the bucket each falls
//! in. Tantivy's date-histogram aggregation gives the same counts with a hash-map step per
//! match, which was most of the time of a histogram over millions of events.

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Counts of matches in `buckets` buckets of `width_micros`, the first starting at
/// `start_micros`; matches outside them are not counted.
pub(crate) struct TimeBuckets {
    pub start_micros: i64,
    pub width_micros: i64,
    pub buckets: usize,
    /// Where the `@timestamp` column of each segment is kept open.
    pub times: std::sync::Arc<crate::time_order::TimeColumns>,
}

pub(crate) struct SegmentTimeBuckets {
    column: Column<tantivy::DateTime>,
    /// Every document has a value: contiguous matches are read as one range.
    full: bool,
    start_nanos: i64,
    width_nanos: i64,
    counts: Vec<u64>,
    /// The bucket the last match fell in, and its bounds: the next usually falls there too.
    current: usize,
    bounds: (i64, i64),
    values: Vec<tantivy::DateTime>,
    sparse: Vec<Option<tantivy::DateTime>>,
}

impl Collector for TimeBuckets {
    type Fruit = Vec<u64>;
    type Child = SegmentTimeBuckets;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTimeBuckets> {
        let column = self.times.segment(reader)?.timestamps.clone();
        Ok(SegmentTimeBuckets {
            full: column.get_cardinality() == tantivy::columnar::Cardinality::Full,
            column,
            start_nanos: self.start_micros.saturating_mul(1000),
            width_nanos: self.width_micros.max(1).saturating_mul(1000),
            counts: vec![0; self.buckets],
            current: 0,
            // Empty until the first match.
            bounds: (0, 0),
            values: Vec::new(),
            sparse: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, segments: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut total = vec![0; self.buckets];
        for counts in segments {
            for (sum, n) in total.iter_mut().zip(counts) {
                *sum += n;
            }
        }
        Ok(total)
    }
}

impl SegmentTimeBuckets {
    #[inline]
    fn add(&mut self, at: tantivy::DateTime) {
        let at = at.into_timestamp_nanos();
        if at >= self.bounds.0 && at < self.bounds.1 {
            self.counts[self.current] += 1;
            return;
        }
        let offset = at.saturating_sub(self.start_nanos);
        if offset < 0 {
            return;
        }
        let bucket = offset / self.width_nanos;
        if let Some(count) = self.counts.get_mut(bucket as usize) {
            *count += 1;
            self.current = bucket as usize;
            let lo = self.start_nanos + bucket * self.width_nanos;
            self.bounds = (lo, lo + self.width_nanos);
        }
    }
}

impl SegmentCollector for SegmentTimeBuckets {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(at) = self.column.first(doc) {
            self.add(at);
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        let (Some(first), Some(last)) = (docs.first(), docs.last()) else {
            return;
        };
        if self.full {
            // Every document has a value: read them by position, a run (every event in a time
            // range) in one go.
            let mut values = std::mem::take(&mut self.values);
            values.resize(docs.len(), tantivy::DateTime::default());
            if (last - first) as usize == docs.len() - 1 {
                self.column.values.get_range(u64::from(*first), &mut values);
            } else {
                self.column.values.get_vals(docs, &mut values);
            }
            for at in &values {
                self.add(*at);
            }
            self.values = values;
        } else {
            let mut sparse = std::mem::take(&mut self.sparse);
            sparse.clear();
            sparse.resize(docs.len(), None);
            self.column.first_vals(docs, &mut sparse);
            for at in sparse.iter().flatten() {
                self.add(*at);
            }
            self.sparse = sparse;
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}
