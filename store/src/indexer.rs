//! The indexer stage: follows the synced log into Tantivy and commits every
//! `commit_interval_ms` with the last record it holds and the log's hash chain at that record
//! (signed when a key is configured), so a restart replays exactly what the index is missing
//! and `mimamori verify` can tell whether the log was rewritten since.
//!
//! A failed commit (a full disk) is not fatal: the stage reports itself degraded, drops its
//! writer, and starts again from the last commit a little later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::{Index, IndexWriter};
use tracing::{error, info, warn};

use crate::checkpoint::{Checkpoint, checkpoint};
use crate::durable::Durable;
use crate::error::StoreError;
use crate::event::Event;
use crate::health::Health;
use crate::index::EventIndex;
use crate::metrics::StoreMetrics;
use crate::schema::EventSchema;
use crate::wal::{WalRead, WalReader};

pub const STAGE: &str = "indexer";
const RETRY: Duration = Duration::from_secs(2);

pub(crate) struct Indexer {
    pub index: Index,
    pub writer: Option<IndexWriter>,
    pub threads: usize,
    pub memory_budget: usize,
    pub events: EventIndex,
    pub wal_dir: std::path::PathBuf,
    pub durable: Arc<Durable>,
    pub commit_interval: Duration,
    pub metrics: StoreMetrics,
    pub health: Health,
    pub key: Option<Arc<Vec<u8>>>,
    /// How long whole log segments are kept.
    pub retention: chrono::Duration,
    /// Failures in a row (the indexer backs off and says so once).
    pub failures: u32,
    /// Told the last committed record, so it compresses what the index holds whole.
    pub sealer: std::sync::mpsc::SyncSender<u64>,
}

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(24 * 3600);

impl Indexer {
    /// Runs until the log is closed and everything is committed.
    pub fn run(mut self) -> Result<(), StoreError> {
        let _guard = self.health.guard(STAGE);
        self.health.running(STAGE);
        let mut tried_after_close = false;
        loop {
            match self.follow() {
                Ok(()) => {
                    self.health.stopped(STAGE);
                    return Ok(());
                }
                Err(e) => {
                    if self.failures == 0 {
                        error!(error = %e, "indexing failed; accepted events stay in the write-ahead log, trying again from the last commit");
                    }
                    self.failures += 1;
                    self.metrics.index_errors.inc();
                    self.health
                        .degraded(STAGE, &format!("indexing failed: {e}"));
                    // A writer that failed may have killed its threads: start a new one.
                    drop(self.writer.take());
                    let backoff = RETRY * self.failures.min(3);
                    let (_, closed) = self.durable.wait_beyond(u64::MAX, u64::MAX, backoff);
                    if closed && tried_after_close {
                        // Stopping, and the disk still refuses: the next start replays the rest.
                        warn!(
                            "stopping with the index behind the log; the next start replays the difference"
                        );
                        self.health.stopped(STAGE);
                        return Ok(());
                    }
                    tried_after_close |= closed;
                    match self
                        .index
                        .writer_with_num_threads(self.threads, self.memory_budget)
                    {
                        Ok(w) => self.writer = Some(w),
                        Err(e) if closed => {
                            warn!(error = %e, "stopping with the index behind the log; the next start replays the difference");
                            self.health.stopped(STAGE);
                            return Ok(());
                        }
                        Err(e) => warn!(error = %e, "index writer not available yet"),
                    }
                    if closed && self.writer.is_none() {
                        self.health.stopped(STAGE);
                        return Ok(());
                    }
                }
            }
        }
    }

    fn follow(&mut self) -> Result<(), StoreError> {
        let schema = EventSchema::new();
        let Some(writer) = self.writer.as_mut() else {
            return Err(StoreError::Closed);
        };
        let start = checkpoint(&self.index)?;
        let mut last_indexed = start.seq;
        let mut chain = start.chain;
        let mut reader = WalReader::new(&self.wal_dir, last_indexed + 1);
        let mut last_committed = last_indexed;
        let mut first_uncommitted: Option<Instant> = None;
        let mut retention_run: Option<Instant> = None;
        // The reader is stuck on damage at the end of the log: wait for more than this.
        let mut stalled_at = 0u64;
        info!(
            checkpoint = last_indexed,
            "indexer following the write-ahead log"
        );
        self.health.running(STAGE);
        loop {
            // Until the next commit is due, or retention (at start, then daily) when idle.
            let retention_in = retention_run.map_or(Duration::ZERO, |t| {
                RETENTION_INTERVAL.saturating_sub(t.elapsed())
            });
            let wait = match first_uncommitted {
                Some(t) => self.commit_interval.saturating_sub(t.elapsed()),
                None => retention_in,
            };
            let (until, closed) =
                self.durable
                    .wait_beyond(last_indexed.max(stalled_at), last_committed, wait);
            let mut num_added = 0u64;
            let mut reader_done = false;
            loop {
                match reader.next(until)? {
                    WalRead::Record(seq, payload) => {
                        let record_chain = reader.chain().expect("a record has a chain");
                        match serde_json::from_slice::<Event>(&payload) {
                            Ok(event) => {
                                writer.add_document(schema.document(&event, seq, &record_chain))?;
                                num_added += 1;
                            }
                            Err(e) => {
                                error!(seq, error = %e, "write-ahead log record does not decode; skipped")
                            }
                        }
                        last_indexed = seq;
                        chain = reader.chain();
                        first_uncommitted.get_or_insert_with(Instant::now);
                        if num_added.is_multiple_of(4096)
                            && commit_due(first_uncommitted, self.commit_interval)
                        {
                            break;
                        }
                    }
                    WalRead::CaughtUp => {
                        reader_done = true;
                        break;
                    }
                    WalRead::Damaged(damage) => {
                        error!(damage = %damage, "write-ahead log damaged; continuing after it");
                        self.metrics.wal_damage.inc();
                        self.metrics.wal_damaged_records.inc_by(damage.num_lost());
                    }
                }
            }
            self.metrics.index_documents.inc_by(num_added);
            let caught_up = reader.next_seq() > until;
            // Stuck on damage at the end of the log (not merely paused for a commit).
            stalled_at = if reader_done && !caught_up { until } else { 0 };
            let flush_asked = self.durable.flush_to() > last_committed && caught_up;
            let retention_due = caught_up
                && !closed
                && retention_run.is_none_or(|t| t.elapsed() >= RETENTION_INTERVAL);
            if retention_due {
                retention_run = Some(Instant::now());
                let cutoff = chrono::Utc::now() - self.retention;
                let key = self.key.as_deref().map(|k| &k[..]);
                match crate::retention::remove_before(&self.wal_dir, cutoff, last_committed, key) {
                    Ok(Some(anchor)) => {
                        info!(
                            first_kept = anchor.first_seq,
                            "retention removed log segments older than storage.retention_days"
                        );
                        if let Ok(bytes) = crate::wal::disk_bytes(&self.wal_dir) {
                            self.metrics.wal_bytes.set(bytes as i64);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "retention could not remove old log segments"),
                }
                // The index follows the log's first kept record (also after a crash between).
                if let Ok(Some(anchor)) = crate::retention::anchor(&self.wal_dir) {
                    let range = tantivy::query::RangeQuery::new(
                        std::ops::Bound::Unbounded,
                        std::ops::Bound::Excluded(tantivy::Term::from_field_u64(
                            schema.seq,
                            anchor.first_seq,
                        )),
                    );
                    writer.delete_query(Box::new(range))?;
                    first_uncommitted.get_or_insert_with(Instant::now);
                    last_committed = last_committed.min(last_indexed.saturating_sub(1));
                }
            }
            if last_indexed > last_committed
                && (commit_due(first_uncommitted, self.commit_interval) || closed || flush_asked)
            {
                let started = Instant::now();
                let mut prepared = writer.prepare_commit()?;
                let point =
                    Checkpoint::new(last_indexed, chain, self.key.as_deref().map(|k| &k[..]));
                prepared.set_payload(&point.to_payload());
                prepared.commit()?;
                self.metrics
                    .index_commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.events.reload()?;
                last_committed = last_indexed;
                self.events.set_committed(last_committed);
                first_uncommitted = None;
                self.health.running(STAGE);
                if self.failures > 0 {
                    info!("indexing works again");
                    self.failures = 0;
                }
                // Segments the index holds whole are compressed (sealed), beside indexing.
                let _ = self.sealer.try_send(last_committed);
            }
            self.metrics
                .index_lag_events
                .set(until.saturating_sub(last_committed) as i64);
            // Closed: done once everything readable is committed (damage at the very end of a
            // closed log leaves the reader short of `until`; nothing more will come).
            if closed && last_committed == last_indexed && (caught_up || reader_done) {
                break;
            }
        }
        if let Some(writer) = self.writer.take() {
            writer.wait_merging_threads()?;
        }
        info!(checkpoint = last_committed, "indexer stopped");
        Ok(())
    }
}

/// The sealer thread: compresses the log segments the index holds whole, off the indexer's
/// path. Ends when the indexer does.
pub(crate) fn seal(
    wal_dir: &std::path::Path,
    committed: std::sync::mpsc::Receiver<u64>,
    metrics: &StoreMetrics,
) {
    while let Ok(seq) = committed.recv() {
        match crate::wal::seal_committed(wal_dir, seq) {
            Ok(0) => {}
            Ok(saved) => metrics.wal_bytes.sub(saved as i64),
            Err(e) => warn!(error = %e, "a log segment could not be compressed; it stays as it is"),
        }
    }
}

fn commit_due(first_uncommitted: Option<Instant>, interval: Duration) -> bool {
    first_uncommitted.is_some_and(|t| t.elapsed() >= interval)
}
