//! How many matches have each value of a few fields (the facets beside a result list): a
//! Tantivy collector that counts term ordinals of the fields' columns a block of matches at a
//! time, per segment, and names only the most frequent values of each segment
//! ([`ValueCounts::per_segment`]). Exact when no segment's matches have more distinct values
//! than that; beyond it a value's count can be short, as with Tantivy's terms aggregation
//! (a week's two million patients would otherwise be two million strings per segment).

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Above this many values in a segment, counts are kept in a map instead of one slot each.
const DENSE_TERMS: usize = 1 << 22;

/// Counts per value of each of `fields` (in that order) over the matches.
pub(crate) struct ValueCounts {
    pub fields: Vec<String>,
    /// Values named per segment and field at most, the most frequent.
    pub per_segment: usize,
}

enum Counts {
    Dense(Vec<u32>),
    Sparse(HashMap<u64, u32>),
}

impl Counts {
    #[inline]
    fn add(&mut self, ord: u64) {
        match self {
            Counts::Dense(slots) => {
                if let Some(slot) = slots.get_mut(ord as usize) {
                    *slot += 1;
                }
            }
            Counts::Sparse(map) => *map.entry(ord).or_default() += 1,
        }
    }

    /// The counted ordinals, in order, with their counts.
    fn counted(self) -> Vec<(u64, u32)> {
        match self {
            Counts::Dense(slots) => slots
                .into_iter()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .map(|(ord, n)| (ord as u64, n))
                .collect(),
            Counts::Sparse(map) => {
                let mut counted: Vec<_> = map.into_iter().collect();
                counted.sort_unstable();
                counted
            }
        }
    }
}

/// One field in one segment (none when the segment has no value of it).
struct FieldCounts {
    column: StrColumn,
    counts: Counts,
}

pub(crate) struct SegmentValueCounts {
    fields: Vec<Option<FieldCounts>>,
    per_segment: usize,
    values: Vec<Option<u64>>,
    full: Vec<u64>,
}

impl Collector for ValueCounts {
    type Fruit = Vec<HashMap<String, u64>>;
    type Child = SegmentValueCounts;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentValueCounts> {
        let mut fields = Vec::with_capacity(self.fields.len());
        for name in &self.fields {
            fields.push(reader.fast_fields().str(name)?.map(|column| {
                let terms = column.num_terms();
                let counts = if terms <= DENSE_TERMS {
                    Counts::Dense(vec![0; terms])
                } else {
                    Counts::Sparse(HashMap::new())
                };
                FieldCounts { column, counts }
            }));
        }
        Ok(SegmentValueCounts {
            fields,
            per_segment: self.per_segment.max(1),
            values: Vec::new(),
            full: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        segments: Vec<Vec<HashMap<String, u64>>>,
    ) -> tantivy::Result<Vec<HashMap<String, u64>>> {
        let mut total: Vec<HashMap<String, u64>> = vec![HashMap::new(); self.fields.len()];
        for segment in segments {
            for (sum, counts) in total.iter_mut().zip(segment) {
                for (value, n) in counts {
                    *sum.entry(value).or_default() += n;
                }
            }
        }
        Ok(total)
    }
}

impl SegmentCollector for SegmentValueCounts {
    type Fruit = Vec<HashMap<String, u64>>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        for field in self.fields.iter_mut().flatten() {
            for ord in field.column.ords().values_for_doc(doc) {
                field.counts.add(ord);
            }
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        if docs.is_empty() {
            return;
        }
        let mut values = std::mem::take(&mut self.values);
        let mut full = std::mem::take(&mut self.full);
        for field in self.fields.iter_mut().flatten() {
            let ords = field.column.ords();
            if ords.get_cardinality() == Cardinality::Multivalued {
                for doc in docs {
                    for ord in ords.values_for_doc(*doc) {
                        field.counts.add(ord);
                    }
                }
                continue;
            }
            if ords.get_cardinality() == Cardinality::Full {
                // Every document has a value: read them by position, a run in one go.
                full.resize(docs.len(), 0);
                if (docs[docs.len() - 1] - docs[0]) as usize == docs.len() - 1 {
                    ords.values.get_range(u64::from(docs[0]), &mut full);
                } else {
                    ords.values.get_vals(docs, &mut full);
                }
                for ord in &full {
                    field.counts.add(*ord);
                }
                continue;
            }
            values.clear();
            values.resize(docs.len(), None);
            ords.first_vals(docs, &mut values);
            for ord in values.iter().flatten() {
                field.counts.add(*ord);
            }
        }
        self.values = values;
        self.full = full;
    }

    fn harvest(self) -> Vec<HashMap<String, u64>> {
        let keep = self.per_segment;
        self.fields
            .into_iter()
            .map(|field| {
                let mut named = HashMap::new();
                let Some(field) = field else { return named };
                let mut counted = field.counts.counted();
                if counted.len() > keep {
                    counted.select_nth_unstable_by(keep, |a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    counted.truncate(keep);
                    counted.sort_unstable_by_key(|(ord, _)| *ord);
                }
                let ords: Vec<u64> = counted.iter().map(|(ord, _)| *ord).collect();
                let mut counts = counted.into_iter().map(|(_, n)| u64::from(n));
                // A dictionary that cannot be read gives no names (and no counts) for the
                // segment rather than wrong ones.
                let _ = field
                    .column
                    .dictionary()
                    .sorted_ords_to_term_cb(&ords, |term| {
                        let n = counts.next().unwrap_or(0);
                        named.insert(String::from_utf8_lossy(term).into_owned(), n);
                    });
                named
            })
            .collect()
    }
}
