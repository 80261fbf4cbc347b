//! `event.id:X`, exactly, without an inverted index of ids. The terms of 128-bit ids cost 35
//! bytes an event, a third of the index; instead every event keeps 32 bits of its id in the
//! `_id` column (4 bytes), a search scans that column for the candidates, and each candidate's
//! event is read from the log and its whole id compared. Two ids share 32 bits once in four
//! billion, so a search reads about one event per id it names. Scanning the column of 10
//! million events takes milliseconds: ids are looked up to show an alert's evidence or one
//! event, never in bulk (an import's duplicate check uses the terms imports still keep).

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use tantivy::columnar::ColumnIndex;
use tantivy::query::{
    BitSetDocSet, BooleanQuery, ConstScorer, EnableScoring, Explanation, Occur, Query, Scorer,
    TermQuery, Weight,
};
use tantivy::schema::Field;
use tantivy::{BitSet, DocId, Score, SegmentReader, TantivyError};

use crate::tokenizer::{id_key, id_term};
use crate::wal::LogLookup;

/// Events whose id is one of `terms` (as [`id_term`] makes them).
#[derive(Clone)]
pub(crate) struct IdQuery {
    /// Sorted by key: `(id_key, term)`.
    ids: Arc<Vec<(u64, String)>>,
    log: Arc<LogLookup>,
}

impl fmt::Debug for IdQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdQuery")
            .field("ids", &self.ids.len())
            .finish()
    }
}

impl IdQuery {
    fn new(terms: Vec<String>, log: Arc<LogLookup>) -> IdQuery {
        let mut ids: Vec<(u64, String)> = terms.into_iter().map(|t| (id_key(&t), t)).collect();
        ids.sort();
        ids.dedup();
        IdQuery {
            ids: Arc::new(ids),
            log,
        }
    }

    /// The documents of `reader` whose event has one of the ids, ascending.
    fn matching(&self, reader: &SegmentReader) -> tantivy::Result<Vec<DocId>> {
        let fast = reader.fast_fields();
        let keys = fast.u64("_id").map_err(|_| {
            TantivyError::InvalidArgument(
                "the index is of an older format, without the `_id` column event.id searches \
                 use: start `mimamori serve` (it rebuilds the index) or run `mimamori reindex`"
                    .into(),
            )
        })?;
        let seqs = fast.u64("_seq")?;
        let max_doc = reader.max_doc();
        let mut candidates = Vec::new();
        if let [(key, _)] = self.ids.as_slice() {
            keys.get_docids_for_value_range(*key..=*key, 0..max_doc, &mut candidates);
        } else {
            let wanted: Vec<u64> = self.ids.iter().map(|(k, _)| *k).collect();
            let hit = |k: u64| wanted.binary_search(&k).is_ok();
            if matches!(keys.index, ColumnIndex::Full) {
                // Every document has its value at its own row: read them a block at a time.
                let mut block = vec![0u64; 4096];
                for start in (0..max_doc).step_by(block.len()) {
                    let n = block.len().min((max_doc - start) as usize);
                    keys.values.get_range(u64::from(start), &mut block[..n]);
                    candidates.extend(
                        (start..)
                            .zip(&block[..n])
                            .filter(|(_, k)| hit(**k))
                            .map(|(doc, _)| doc),
                    );
                }
            } else {
                candidates = (0..max_doc)
                    .filter(|&doc| keys.first(doc).is_some_and(hit))
                    .collect();
            }
        }
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let wanted: Vec<u64> = candidates.iter().filter_map(|&d| seqs.first(d)).collect();
        let payloads = self
            .log
            .payloads(&wanted)
            .map_err(|e| TantivyError::InternalError(e.to_string()))?;
        let mut payloads = payloads.into_iter();
        let mut found = Vec::new();
        for doc in candidates {
            if seqs.first(doc).is_none() {
                continue;
            }
            // A candidate whose event cannot be read is not shown to be another id: it counts
            // as a match, and the search reports it unreadable, as any search does.
            let Some(payload) = payloads.next().flatten() else {
                found.push(doc);
                continue;
            };
            let Ok(IdOf { id }) = serde_json::from_slice::<IdOf>(&payload) else {
                found.push(doc);
                continue;
            };
            let term = id_term(&id);
            let key = id_key(&term);
            if self.ids.binary_search(&(key, term)).is_ok() {
                found.push(doc);
            }
        }
        Ok(found)
    }
}

/// The id of a stored event, read without the rest of it.
#[derive(Deserialize)]
struct IdOf {
    #[serde(rename = "event.id")]
    id: String,
}

impl Query for IdQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(IdWeight(self.clone())))
    }
}

struct IdWeight(IdQuery);

impl Weight for IdWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut docs = BitSet::with_max_value(reader.max_doc());
        for doc in self.0.matching(reader)? {
            docs.insert(doc);
        }
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        if self.0.matching(reader)?.contains(&doc) {
            Ok(Explanation::new("event.id", 1.0))
        } else {
            Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

/// `query` with every `event.id:X` (the term query the parser made on `id`) looked up by
/// [`IdQuery`]; `event.id:a OR event.id:b ...` (an alert's evidence) is one lookup.
pub(crate) fn ids_looked_up(
    query: Box<dyn Query>,
    id: Field,
    log: &Arc<LogLookup>,
) -> Box<dyn Query> {
    let term_of = |q: &dyn Query| -> Option<String> {
        let term = q.downcast_ref::<TermQuery>()?.term();
        (term.field() == id)
            .then(|| term.value().as_str().map(str::to_owned))
            .flatten()
    };
    if let Some(term) = term_of(&*query) {
        return Box::new(IdQuery::new(vec![term], log.clone()));
    }
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let clauses = boolean.clauses();
    if clauses.len() > 1
        && clauses
            .iter()
            .all(|(occur, q)| *occur == Occur::Should && term_of(&**q).is_some())
    {
        let terms = clauses.iter().filter_map(|(_, q)| term_of(&**q)).collect();
        return Box::new(IdQuery::new(terms, log.clone()));
    }
    Box::new(BooleanQuery::new(
        clauses
            .iter()
            .map(|(occur, q)| (*occur, ids_looked_up(q.box_clone(), id, log)))
            .collect(),
    ))
}
