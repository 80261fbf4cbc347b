//! The Tantivy index as a search handle: [`EventIndex`] searches it, in the server or in a
//! separate process (the CLI) while the server writes. The indexer (`indexer.rs`) fills it.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tantivy::collector::Count;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, TermQuery,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, ReloadPolicy, Term};
use tracing::warn;

use crate::error::StoreError;
use crate::event::Event;
use crate::metrics::StoreMetrics;
use crate::schema::{DEFAULT_FIELDS, EventSchema, to_tantivy};
use crate::search::{COUNTED_MATCHES, SearchRequest, SearchResults};
use crate::time_order::{Newest, NewestFirst, TimeColumns, TimeRange};
use crate::wal::LogLookup;

/// The highest search limit honoured; bigger requests are cut to it.
pub const MAX_SEARCH_LIMIT: usize = 100_000;

/// A search handle on the index. Cheap to clone.
#[derive(Clone)]
pub struct EventIndex {
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) schema: Arc<EventSchema>,
    pub(crate) metrics: Option<StoreMetrics>,
    /// Where results are read from: the index stores no event.
    log: Arc<LogLookup>,
    /// The last log record the committed index holds, for [`EventIndex::wait_committed`].
    committed: Arc<(Mutex<u64>, Condvar)>,
    /// Each segment's time columns, opened once.
    pub(crate) times: Arc<TimeColumns>,
}

/// Opens the index in `dir`, creating it when `create` is set. An index that cannot be opened
/// is [`StoreError::IndexUnreadable`].
pub(crate) fn open_index(dir: &Path, create: bool) -> Result<Index, StoreError> {
    let schema = EventSchema::new();
    let exists = dir.join("meta.json").exists();
    let index = if exists {
        Index::open_in_dir(dir).map_err(|e| StoreError::IndexUnreadable {
            reason: e.to_string(),
        })?
    } else if create {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        // The index stores no event, but tantivy keeps a document store all the same: its
        // per-document offsets take half the bytes with zstd that they take with lz4.
        let settings = tantivy::IndexSettings {
            docstore_compression: tantivy::store::Compressor::Zstd(
                tantivy::store::ZstdCompressor::default(),
            ),
            ..tantivy::IndexSettings::default()
        };
        Index::builder()
            .schema(schema.schema.clone())
            .settings(settings)
            .create_in_dir(dir)?
    } else {
        return Err(StoreError::DataDir {
            path: dir.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no index here yet: start `mimamori serve` (or import) with this data directory first",
            ),
        });
    };
    EventSchema::register_tokenizers(&index);
    Ok(index)
}

/// Whether the index has this build's schema (an index of the first format lacks `_seq`, one
/// of the second `user.domain`, one of the third the facet columns); an older one is rebuilt from the log.
pub(crate) fn is_current_schema(index: &Index) -> bool {
    index.schema() == EventSchema::new().schema
}

/// Files of the index whose checksums fail (a damaged `.store` file and the like).
pub(crate) fn damaged_files(index: &Index) -> Result<Vec<String>, StoreError> {
    let bad = index
        .validate_checksum()
        .map_err(|e| StoreError::IndexUnreadable {
            reason: e.to_string(),
        })?;
    let mut names: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
    names.sort();
    Ok(names)
}

impl EventIndex {
    /// A search handle on `index`, whose events are in the log in `wal_dir`.
    pub(crate) fn new(
        index: Index,
        wal_dir: &Path,
        metrics: Option<StoreMetrics>,
    ) -> Result<EventIndex, StoreError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()?;
        Ok(EventIndex {
            index,
            reader,
            schema: Arc::new(EventSchema::new()),
            metrics,
            log: Arc::new(LogLookup::new(wal_dir)),
            committed: Arc::new((Mutex::new(0), Condvar::new())),
            times: Arc::default(),
        })
    }

    pub(crate) fn set_committed(&self, seq: u64) {
        // The time columns of segments merged away meanwhile keep their files mapped (and
        // their disk space held) until forgotten: here, not only at the next search.
        self.times.keep_only(&self.reader.searcher());
        let (lock, changed) = &*self.committed;
        *lock.lock().expect("committed lock") = seq;
        changed.notify_all();
    }

    /// The last log record the committed index holds.
    pub fn committed(&self) -> u64 {
        *self.committed.0.lock().expect("committed lock")
    }

    /// Waits until the index holds log record `seq`; false when `timeout` passed first.
    pub fn wait_committed(&self, seq: u64, timeout: Duration) -> bool {
        let (lock, changed) = &*self.committed;
        let guard = lock.lock().expect("committed lock");
        let (guard, _) = changed
            .wait_timeout_while(guard, timeout, |committed| *committed < seq)
            .expect("committed lock");
        *guard >= seq
    }

    /// Whether an event with this id is already searchable, among the events a listener did
    /// not receive (imports, HTTP ingest, gap notices): what an import's duplicate check needs,
    /// as a listener's events carry another source key and never share an id with them. The
    /// ids of listeners' events are found by `event.id:` searches.
    pub fn contains_id(&self, id: &str) -> bool {
        let term = Term::from_field_text(self.schema.id, &crate::tokenizer::id_term(id));
        self.reader.searcher().doc_freq(&term).is_ok_and(|n| n > 0)
    }

    /// Opens an index another process writes, for searching only.
    pub fn open_read_only(data_dir: &Path) -> Result<EventIndex, StoreError> {
        EventIndex::new(
            open_index(&data_dir.join("index"), false)?,
            &data_dir.join("wal"),
            None,
        )
    }

    pub(crate) fn reload(&self) -> Result<(), StoreError> {
        Ok(self.reader.reload()?)
    }

    /// Number of searchable events.
    pub fn num_events(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Bytes of the index by part (`postings message`, `fast @timestamp`, `store`, ...), the
    /// largest first: where the index's size goes, for the bench.
    pub fn space_usage(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let usage = self.reader.searcher().space_usage()?;
        let mut parts: std::collections::BTreeMap<String, u64> = Default::default();
        for segment in usage.segments() {
            let kinds = [
                ("terms", segment.termdict()),
                ("postings", segment.postings()),
                ("positions", segment.positions()),
                ("fast", segment.fast_fields()),
                ("norms", segment.fieldnorms()),
            ];
            for (kind, per_field) in kinds {
                for field in per_field.fields() {
                    *parts
                        .entry(format!("{kind} {}", field.field_name()))
                        .or_default() += field.total().get_bytes();
                }
            }
            *parts.entry("store".into()).or_default() += segment.store().total().get_bytes();
        }
        let mut parts: Vec<(String, u64)> = parts.into_iter().collect();
        parts.sort_by_key(|part| std::cmp::Reverse(part.1));
        Ok(parts)
    }

    /// Parses `text` as the query language, with friendly errors.
    pub fn parse_query(&self, text: &str) -> Result<Box<dyn Query>, StoreError> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(Box::new(AllQuery));
        }
        let fields = DEFAULT_FIELDS
            .iter()
            .map(|name| {
                self.schema
                    .schema
                    .get_field(name)
                    .expect("default fields exist")
            })
            .collect();
        let mut parser = QueryParser::for_index(&self.index, fields);
        parser.set_conjunction_by_default();
        if let Some(why) = crate::query::refused(text) {
            return Err(StoreError::BadQuery(why));
        }
        let rewritten = crate::query::accounts_as_typed(text);
        parser
            .parse_query(&rewritten)
            .map(crate::query::negations_complete)
            .map(|q| crate::id_query::ids_looked_up(q, self.schema.id, &self.log))
            .map_err(|e| self.explain(text, e))
            .and_then(|q| {
                // Only whole ids are looked up (`event.id:X`): a boost or a fuzzy id would
                // find only imported events, so it is refused rather than half answered.
                let mut left = false;
                q.query_terms(&mut |term, _| left |= term.field() == self.schema.id);
                if left {
                    return Err(StoreError::BadQuery(format!(
                        "`{text}`: event.id takes whole ids only (`event.id:ID`, joined by AND, OR, NOT)"
                    )));
                }
                Ok(q)
            })
    }

    fn explain(&self, text: &str, error: QueryParserError) -> StoreError {
        let message = match error {
            QueryParserError::FieldDoesNotExist(field) => format!(
                "unknown field `{field}`; fields are: {}",
                self.schema.searchable_fields().join(", ")
            ),
            QueryParserError::SyntaxError(_) => format!(
                "cannot parse `{text}`: check for an unclosed bracket or quote, or a `:` with \
                 nothing after it (write `user.name:tanaka`, `\"exact phrase\"`, \
                 `@timestamp:[2026-11-01T00:00:00Z TO *]`)"
            ),
            QueryParserError::DateFormatError(_) => {
                format!("a date in `{text}` is not RFC 3339 (write 2026-11-22T09:00:00Z)")
            }
            QueryParserError::AllButQueryForbidden => {
                "a query cannot only exclude (`NOT x`): say what to include too, e.g. `* AND NOT x`"
                    .into()
            }
            other => format!("cannot use `{text}`: {other}"),
        };
        StoreError::BadQuery(message)
    }

    /// `text` parsed, limited to `[from, to)` when either is given. mimamori's own audit trail
    /// (`event.dataset:mimamori.audit`) is left out unless the query names a dataset, so a
    /// search for a patient finds the accesses, not the earlier searches for them
    /// (`event.dataset:*` takes everything).
    pub(crate) fn bounded_query(
        &self,
        text: &str,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Box<dyn Query>, StoreError> {
        let query = self.text_query(text)?;
        if from.is_none() && to.is_none() {
            return Ok(query);
        }
        Ok(self.within(
            query,
            from.map_or(i64::MIN, nanos),
            to.map_or(i64::MAX, nanos),
        ))
    }

    /// `text` parsed, without mimamori's own audit trail unless it names a dataset.
    fn text_query(&self, text: &str) -> Result<Box<dyn Query>, StoreError> {
        let query = self.parse_query(text)?;
        if text.contains("event.dataset") {
            return Ok(query);
        }
        let audit = Term::from_field_text(self.schema.dataset, crate::event::AUDIT_DATASET);
        Ok(Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (
                Occur::MustNot,
                Box::new(TermQuery::new(audit, IndexRecordOption::Basic)),
            ),
        ])))
    }

    /// `query` limited to events of `[from, to)`, in nanoseconds; `to` = `i64::MAX` has no
    /// end.
    fn within(&self, query: Box<dyn Query>, from: i64, to: i64) -> Box<dyn Query> {
        let range = TimeRange {
            from,
            last: if to == i64::MAX {
                to
            } else {
                to.saturating_sub(1)
            },
            times: self.times.clone(),
        };
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::Must, Box::new(range)),
        ]))
    }

    /// The current searcher, with the time columns of merged-away segments forgotten.
    pub(crate) fn searcher(&self) -> tantivy::Searcher {
        let searcher = self.reader.searcher();
        self.times.keep_only(&searcher);
        searcher
    }

    /// Runs `collector`; a query that needs what the index does not have is the caller's
    /// mistake, told as such.
    fn collect<C: tantivy::collector::Collector>(
        &self,
        searcher: &tantivy::Searcher,
        query: &dyn Query,
        collector: &C,
        text: &str,
    ) -> Result<C::Fruit, StoreError> {
        searcher.search(query, collector).map_err(|e| match e {
            // `user.name:*` (any value) needs a fast field: a question about the query,
            // not a failure of the store.
            tantivy::TantivyError::SchemaError(reason) if reason.contains("fast field") => {
                StoreError::BadQuery(format!(
                    "`{text}`: `field:*` (any value) works only on @timestamp, event.ingested, record.count and {}; `*` alone finds everything ({reason})",
                    crate::schema::FACET_FIELDS.join(", ")
                ))
            }
            other => other.into(),
        })
    }

    pub fn search(&self, request: &SearchRequest) -> Result<SearchResults, StoreError> {
        let started = Instant::now();
        let query = self.text_query(&request.query)?;
        let searcher = self.searcher();
        let limit = request.limit.clamp(1, MAX_SEARCH_LIMIT);
        let offset = request.offset.min(crate::search::MAX_OFFSET);
        let wanted = offset + limit;
        let (from, to) = (
            request.from.map_or(i64::MIN, nanos),
            request.to.map_or(i64::MAX, nanos),
        );
        let most = request
            .count_up_to
            .map_or(u64::MAX, |most| most.max(wanted as u64 + 1));
        let (total, total_exact, hits) = self.newest_by_slices(
            &searcher,
            query.as_ref(),
            (from, to),
            wanted,
            most,
            &request.query,
        )?;
        let seqs: Vec<Option<u64>> = hits
            .into_iter()
            .skip(offset)
            .take(request.limit)
            .map(|((_, seq), _)| (seq > 0).then_some(seq))
            .collect();
        // The events are read from the log, a batch at a time until the size limit.
        let mut events = Vec::with_capacity(seqs.len());
        let mut unreadable = 0u64;
        let (mut bytes, mut truncated) = (0usize, false);
        'batches: for batch in seqs.chunks(256) {
            let wanted: Vec<u64> = batch.iter().flatten().copied().collect();
            let mut payloads = self.log.payloads(&wanted)?.into_iter();
            for seq in batch {
                if bytes >= request.max_bytes {
                    truncated = true;
                    break 'batches;
                }
                let payload = match seq {
                    Some(_) => payloads.next().flatten(),
                    None => None,
                };
                let Some(json) = payload else {
                    // A damaged log block costs the events in it, not the search.
                    if unreadable == 0 {
                        warn!(seq = ?seq, "a search result's event is not in the log; run `mimamori verify`");
                    }
                    unreadable += 1;
                    continue;
                };
                bytes += json.len();
                match serde_json::from_slice::<Event>(&json) {
                    Ok(event) => events.push(event),
                    Err(e) => warn!(error = %e, "stored event does not decode"),
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics
                .search_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(SearchResults {
            total,
            total_exact,
            events,
            unreadable,
            truncated,
        })
    }

    /// The newest `wanted` matches of `query` in `[from, to)`, and how many match, counted up
    /// to `most` (`u64::MAX`: all): (count, whether it is every match, matches newest first).
    ///
    /// The range is searched from its end backwards in slices, each holding about as many
    /// documents as the matches still wanted need at the rate found so far. A page of a common
    /// word over a day reads the few thousand newest matches, not the millions before them.
    fn newest_by_slices(
        &self,
        searcher: &tantivy::Searcher,
        query: &dyn Query,
        (from, to): (i64, i64),
        wanted: usize,
        most: u64,
        text: &str,
    ) -> Result<(u64, bool, Vec<Newest>), StoreError> {
        let timeline = self.times.timeline(searcher)?;
        let mut hits = Vec::new();
        let (mut counted, mut examined) = (0u64, 0u64);
        let mut upper = to;
        // The first slice as if every document matched.
        let mut docs = most.min(COUNTED_MATCHES).max(wanted as u64);
        while upper > from {
            let (lower, holding) = timeline.back_from(upper, docs);
            let lower = lower.max(from);
            let slice = self.within(query.box_clone(), lower, upper);
            let needed = wanted.saturating_sub(hits.len());
            let found = if needed > 0 {
                let newest = NewestFirst {
                    k: needed,
                    times: self.times.clone(),
                };
                let (found, newest) =
                    self.collect(searcher, slice.as_ref(), &(Count, newest), text)?;
                // Slices go back in time: each one's matches are older than all before.
                hits.extend(newest);
                found as u64
            } else {
                self.collect(searcher, slice.as_ref(), &Count, text)? as u64
            };
            counted += found;
            examined += holding.max(1);
            upper = lower;
            if hits.len() >= wanted && counted >= most {
                return Ok((counted, upper <= from, hits));
            }
            // The next slice: the documents what is still missing needs at the rate seen so
            // far, at least as many as all slices before and at most sixteen times as many.
            let missing = ((wanted - hits.len().min(wanted)) as u64).max(most - counted.min(most));
            let rate = (counted + 1) as f64 / examined as f64;
            docs =
                ((missing as f64 / rate * 1.2) as u64).clamp(examined, examined.saturating_mul(16));
        }
        Ok((counted, true, hits))
    }
}

/// `t` as the index holds it: nanoseconds, to the microsecond.
fn nanos(t: chrono::DateTime<chrono::Utc>) -> i64 {
    to_tantivy(t).into_timestamp_nanos()
}
