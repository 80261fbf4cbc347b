//! Events in time order, per index segment: what newest-first searches and time ranges read.
//!
//! - The `@timestamp` and `_seq` columns are opened once per segment and kept. Opening a
//!   column reads its block table; doing it for every segment of every search was a fifth of a
//!   short search's time over ten million events.
//! - Each run of [`RUN_DOCS`] documents has its earliest and latest time noted. Documents come
//!   into a segment in about the order they arrive, so a time range is most runs wholly in or
//!   wholly out, and only the runs on its edges are read one by one. Tantivy's range query
//!   reads the whole column of every segment the range touches, which a term with a 24 h range
//!   paid for on every search.
//!
//! [`TimeRange`] is the range as a query, [`NewestFirst`] the newest matches as a collector.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column};
use tantivy::index::SegmentId;
use tantivy::query::{
    AllScorer, ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight,
};
use tantivy::{
    DocAddress, DocId, DocSet, Score, Searcher, SegmentOrdinal, SegmentReader, TERMINATED,
    TantivyError,
};

/// Documents per noted run.
const RUN_DOCS: u32 = 1024;

/// A segment's time and log position columns, and its runs' time spans.
pub(crate) struct SegmentTimes {
    pub(crate) timestamps: Column<tantivy::DateTime>,
    pub(crate) seqs: Column<u64>,
    /// Every document has a time.
    full: bool,
    /// (earliest, latest) time of each run, in nanoseconds; `(i64::MAX, i64::MIN)` for a run
    /// without any.
    runs: Vec<(i64, i64)>,
    max_doc: u32,
    /// The earliest and latest time of the segment, if any document has one.
    bounds: Option<(i64, i64)>,
}

impl SegmentTimes {
    fn open(reader: &SegmentReader) -> tantivy::Result<SegmentTimes> {
        let fast = reader.fast_fields();
        let timestamps = fast.date("@timestamp")?;
        let seqs = fast.u64("_seq")?;
        let max_doc = reader.max_doc();
        let full = timestamps.get_cardinality() == Cardinality::Full;
        let mut runs = Vec::with_capacity(max_doc.div_ceil(RUN_DOCS) as usize);
        let mut values = vec![tantivy::DateTime::default(); RUN_DOCS as usize];
        let mut sparse = vec![None; RUN_DOCS as usize];
        let mut docs: Vec<DocId> = Vec::with_capacity(RUN_DOCS as usize);
        for start in (0..max_doc).step_by(RUN_DOCS as usize) {
            let n = RUN_DOCS.min(max_doc - start) as usize;
            let span = if full {
                timestamps
                    .values
                    .get_range(u64::from(start), &mut values[..n]);
                span(values[..n].iter().copied())
            } else {
                docs.clear();
                docs.extend(start..start + n as u32);
                timestamps.first_vals(&docs, &mut sparse[..n]);
                span(sparse[..n].iter().flatten().copied())
            };
            runs.push(span);
        }
        let (lo, hi) = span_of_spans(runs.iter().copied());
        Ok(SegmentTimes {
            timestamps,
            seqs,
            full,
            runs,
            max_doc,
            bounds: (lo <= hi).then_some((lo, hi)),
        })
    }

    /// The time of `doc`, in nanoseconds.
    #[inline]
    pub(crate) fn nanos(&self, doc: DocId) -> Option<i64> {
        if self.full {
            Some(self.timestamps.values.get_val(doc).into_timestamp_nanos())
        } else {
            self.timestamps.first(doc).map(|t| t.into_timestamp_nanos())
        }
    }

    /// Documents in runs that touch `[from, last]`: at least as many as match.
    fn estimate(&self, from: i64, last: i64) -> u32 {
        let touching = self
            .runs
            .iter()
            .filter(|(first, end)| *end >= from && *first <= last)
            .count() as u32;
        touching.saturating_mul(RUN_DOCS).min(self.max_doc)
    }
}

fn span(times: impl Iterator<Item = tantivy::DateTime>) -> (i64, i64) {
    span_of_spans(times.map(|t| {
        let nanos = t.into_timestamp_nanos();
        (nanos, nanos)
    }))
}

fn span_of_spans(spans: impl Iterator<Item = (i64, i64)>) -> (i64, i64) {
    spans.fold((i64::MAX, i64::MIN), |(lo, hi), (first, last)| {
        (lo.min(first), hi.max(last))
    })
}

/// The [`SegmentTimes`] of the segments searched lately. Segments never change, so an entry
/// stays right until its segment is merged away; [`TimeColumns::keep_only`] forgets those.
#[derive(Default)]
pub(crate) struct TimeColumns {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentTimes>>>,
    /// The last timeline made, and the segments it is of.
    timeline: Mutex<Option<(Vec<SegmentId>, Arc<Timeline>)>>,
}

impl TimeColumns {
    pub(crate) fn segment(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentTimes>> {
        let id = reader.segment_id();
        if let Some(found) = self.lock().get(&id) {
            return Ok(found.clone());
        }
        // Opened outside the lock: a large segment takes a moment, and searches of other
        // segments need not wait for it. Two searches may both open it; one copy is kept.
        let opened = Arc::new(SegmentTimes::open(reader)?);
        Ok(self.lock().entry(id).or_insert(opened).clone())
    }

    /// Forgets the segments `searcher` no longer has.
    pub(crate) fn keep_only(&self, searcher: &Searcher) {
        let live: HashSet<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        self.lock().retain(|id, _| live.contains(id));
    }

    /// Where the documents of `searcher`'s segments lie in time.
    pub(crate) fn timeline(&self, searcher: &Searcher) -> tantivy::Result<Arc<Timeline>> {
        let ids: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(|r| r.segment_id())
            .collect();
        let mut last = self.timeline.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((of, timeline)) = last.as_ref()
            && *of == ids
        {
            return Ok(timeline.clone());
        }
        let timeline = Arc::new(self.make_timeline(searcher)?);
        *last = Some((ids, timeline.clone()));
        Ok(timeline)
    }

    fn make_timeline(&self, searcher: &Searcher) -> tantivy::Result<Timeline> {
        let mut runs: Vec<(i64, u64)> = Vec::new();
        for reader in searcher.segment_readers() {
            let times = self.segment(reader)?;
            let mut left = u64::from(times.max_doc);
            for (first, last) in &times.runs {
                let docs = left.min(u64::from(RUN_DOCS));
                left -= docs;
                if first <= last {
                    runs.push((*last, docs));
                }
            }
        }
        runs.sort_unstable();
        let mut before = Vec::with_capacity(runs.len() + 1);
        before.push(0u64);
        for (_, docs) in &runs {
            before.push(before.last().copied().unwrap_or(0) + docs);
        }
        Ok(Timeline {
            ends: runs.into_iter().map(|(end, _)| end).collect(),
            before,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<SegmentTimes>>> {
        self.segments.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where documents lie in time, by runs: each run's latest time, oldest first, and the
/// documents of the runs before each. Approximate (a run counts as lying at its end), which is
/// enough to size the slices of a newest-first search by the documents they hold.
pub(crate) struct Timeline {
    ends: Vec<i64>,
    before: Vec<u64>,
}

impl Timeline {
    /// A time about `docs` documents before `upper`, and the documents between them; the
    /// earliest time (`i64::MIN`) when fewer lie before `upper`.
    pub(crate) fn back_from(&self, upper: i64, docs: u64) -> (i64, u64) {
        let i = self.ends.partition_point(|end| *end < upper);
        let total = self.before[i];
        if total <= docs {
            return (i64::MIN, total);
        }
        // The last run whose start leaves at least `docs` documents up to `upper`.
        let j = self.before.partition_point(|b| *b <= total - docs) - 1;
        (self.ends[j], total - self.before[j])
    }
}

/// Events whose `@timestamp` is in `[from, last]`, in nanoseconds. Both ends are included, so
/// that `i64::MIN..=i64::MAX` holds everything, even a time beyond what nanoseconds can say
/// (held as the largest or smallest value).
#[derive(Clone)]
pub(crate) struct TimeRange {
    pub(crate) from: i64,
    pub(crate) last: i64,
    pub(crate) times: Arc<TimeColumns>,
}

impl std::fmt::Debug for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimeRange({}..={})", self.from, self.last)
    }
}

impl Query for TimeRange {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for TimeRange {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let times = self.times.segment(reader)?;
        let Some((first, last)) = times.bounds else {
            return Ok(Box::new(EmptyScorer));
        };
        if last < self.from || first > self.last {
            return Ok(Box::new(EmptyScorer));
        }
        if times.full && first >= self.from && last <= self.last {
            return Ok(Box::new(ConstScorer::new(
                AllScorer::new(reader.max_doc()),
                boost,
            )));
        }
        let docs = InRange::new(times, self.from, self.last);
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let times = self.times.segment(reader)?;
        match times.nanos(doc) {
            Some(t) if t >= self.from && t <= self.last => Ok(Explanation::new("time range", 1.0)),
            _ => Err(TantivyError::InvalidArgument(format!(
                "document {doc} is not in {self:?}"
            ))),
        }
    }
}

/// The documents of one segment in a time range, in document order.
struct InRange {
    times: Arc<SegmentTimes>,
    from: i64,
    /// Included.
    last: i64,
    doc: DocId,
    estimate: u32,
}

impl InRange {
    fn new(times: Arc<SegmentTimes>, from: i64, last: i64) -> InRange {
        let estimate = times.estimate(from, last);
        let mut docs = InRange {
            times,
            from,
            last,
            doc: 0,
            estimate,
        };
        docs.doc = docs.next_from(0);
        docs
    }

    /// The first document at or after `doc` in the range.
    #[inline]
    fn next_from(&self, mut doc: DocId) -> DocId {
        while doc < self.times.max_doc {
            let run = doc / RUN_DOCS;
            let (first, last) = self.times.runs[run as usize];
            if last < self.from || first > self.last {
                doc = (run + 1) * RUN_DOCS;
                continue;
            }
            if self.times.full && first >= self.from && last <= self.last {
                return doc;
            }
            if self
                .times
                .nanos(doc)
                .is_some_and(|t| t >= self.from && t <= self.last)
            {
                return doc;
            }
            doc += 1;
        }
        TERMINATED
    }
}

impl DocSet for InRange {
    fn advance(&mut self) -> DocId {
        if self.doc != TERMINATED {
            self.doc = self.next_from(self.doc + 1);
        }
        self.doc
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc < target {
            self.doc = self.next_from(target);
        }
        self.doc
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.estimate
    }
}

/// A match in newest-first order: its time (nanoseconds), where it is in the log, and where
/// it is in the index.
pub(crate) type Newest = ((i64, u64), DocAddress);

/// The newest `k` matches: latest time first, events of the same instant in the log's order,
/// newest first, so that pages and a rebuilt index (whose documents lie in another order)
/// agree. A match without a time or a log position comes last.
pub(crate) struct NewestFirst {
    pub(crate) k: usize,
    pub(crate) times: Arc<TimeColumns>,
}

pub(crate) struct SegmentNewest {
    k: usize,
    times: Arc<SegmentTimes>,
    segment: SegmentOrdinal,
    kept: Vec<Newest>,
}

impl Collector for NewestFirst {
    type Fruit = Vec<Newest>;
    type Child = SegmentNewest;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentNewest> {
        Ok(SegmentNewest {
            k: self.k,
            times: self.times.segment(reader)?,
            segment,
            kept: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, segments: Vec<Vec<Newest>>) -> tantivy::Result<Vec<Newest>> {
        Ok(newest(segments.into_iter().flatten().collect(), self.k))
    }
}

impl SegmentCollector for SegmentNewest {
    type Fruit = Vec<Newest>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.k == 0 {
            return;
        }
        let at = self.times.nanos(doc).unwrap_or(i64::MIN);
        let seq = self.times.seqs.first(doc).unwrap_or(0);
        self.kept
            .push(((at, seq), DocAddress::new(self.segment, doc)));
        if self.kept.len() >= self.k.saturating_mul(2).max(64) {
            let kept = std::mem::take(&mut self.kept);
            self.kept = keep_newest(kept, self.k);
        }
    }

    fn harvest(self) -> Vec<Newest> {
        newest(self.kept, self.k)
    }
}

/// The newest `k` of `all`, in no particular order.
fn keep_newest(mut all: Vec<Newest>, k: usize) -> Vec<Newest> {
    if all.len() > k {
        all.select_nth_unstable_by(k, |a, b| b.0.cmp(&a.0));
        all.truncate(k);
    }
    all
}

/// The newest `k` of `all`, newest first.
fn newest(all: Vec<Newest>, k: usize) -> Vec<Newest> {
    let mut kept = keep_newest(all, k);
    kept.sort_unstable_by_key(|hit| std::cmp::Reverse(hit.0));
    kept
}
