//! The store's two stages. The WAL writer takes batches from a bounded channel, appends them,
//! fsyncs once per group of batches (group commit) and only then acknowledges them; the indexer
//! follows the synced log into Tantivy. Ingest therefore never waits for the index, only for
//! the disk.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::error::StoreError;
use crate::event::Event;
use crate::index::{EventIndex, Indexer, checkpoint, open_index};
use crate::metrics::StoreMetrics;
use crate::wal::{WalRead, WalReader, WalWriter};

/// Storage settings (`[storage]` in the config file).
///
/// Defaults: `data_dir = "./mimamori-data"`, `commit_interval_ms = 1000`,
/// `wal_segment_max_bytes = 67108864`, `index_memory_budget_bytes = 268435456`,
/// `index_threads = 2`, `queue_batches = 1024`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub commit_interval_ms: u64,
    pub wal_segment_max_bytes: u64,
    pub index_memory_budget_bytes: usize,
    pub index_threads: usize,
    pub queue_batches: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./mimamori-data"),
            commit_interval_ms: 1000,
            wal_segment_max_bytes: 64 << 20,
            index_memory_budget_bytes: 256 << 20,
            index_threads: 2,
            queue_batches: 1024,
        }
    }
}

impl StoreConfig {
    /// Checks values serde cannot: returns (key, what is expected) for the first bad one.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(10..=60_000).contains(&self.commit_interval_ms) {
            return Err((
                "commit_interval_ms",
                "a number of milliseconds from 10 to 60000".into(),
            ));
        }
        if self.wal_segment_max_bytes < 4096 {
            return Err(("wal_segment_max_bytes", "at least 4096".into()));
        }
        if !(1..=8).contains(&self.index_threads) {
            return Err(("index_threads", "from 1 to 8".into()));
        }
        if self.index_memory_budget_bytes < self.index_threads * (16 << 20) {
            return Err((
                "index_memory_budget_bytes",
                "at least 16 MiB per index thread".into(),
            ));
        }
        if self.queue_batches == 0 {
            return Err(("queue_batches", "at least 1".into()));
        }
        Ok(())
    }
}

/// What the store says back once a batch is durable: the sequence numbers it got.
pub type Ack = Result<RangeInclusive<u64>, Arc<StoreError>>;

/// Events handed to the store together, with an optional acknowledgement.
pub struct Batch {
    pub events: Vec<Event>,
    pub ack: Option<oneshot::Sender<Ack>>,
}

impl Batch {
    pub fn new(events: Vec<Event>) -> Batch {
        Batch { events, ack: None }
    }

    /// A batch whose sender waits on the receiver for durability.
    pub fn with_ack(events: Vec<Event>) -> (Batch, oneshot::Receiver<Ack>) {
        let (tx, rx) = oneshot::channel();
        (
            Batch {
                events,
                ack: Some(tx),
            },
            rx,
        )
    }
}

/// The last synced sequence number, shared by the WAL writer and the indexer; and the record a
/// caller wants committed to the index without waiting for the commit interval.
pub(crate) struct Durable {
    /// (durable, closed, flush_to)
    state: Mutex<(u64, bool, u64)>,
    changed: Condvar,
}

impl Durable {
    fn new(durable: u64) -> Durable {
        Durable {
            state: Mutex::new((durable, false, 0)),
            changed: Condvar::new(),
        }
    }

    fn publish(&self, seq: u64) {
        let mut state = self.state.lock().expect("durable lock");
        state.0 = seq;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().expect("durable lock").1 = true;
        self.changed.notify_all();
    }

    fn request_flush(&self, seq: u64) {
        let mut state = self.state.lock().expect("durable lock");
        state.2 = state.2.max(seq);
        self.changed.notify_all();
    }

    /// The record a caller wants committed now (0: none).
    pub(crate) fn flush_to(&self) -> u64 {
        self.state.lock().expect("durable lock").2
    }

    /// Waits until something beyond `seq` is durable, the log is closed, a flush beyond
    /// `committed` is asked for, or `timeout` passes.
    pub(crate) fn wait_beyond(&self, seq: u64, committed: u64, timeout: Duration) -> (u64, bool) {
        let state = self.state.lock().expect("durable lock");
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |(durable, closed, flush_to)| {
                *durable <= seq && !*closed && (*flush_to <= committed || *flush_to > *durable)
            })
            .expect("durable lock");
        (state.0, state.1)
    }
}

/// What producers hold: the queue into the log, the index, and a way to make what they sent
/// searchable now. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    sender: mpsc::Sender<Batch>,
    index: EventIndex,
    durable: Arc<Durable>,
    wal_dir: PathBuf,
}

/// Reads accepted events in log order as they become durable: how the rules see each event
/// without polling the index.
pub struct Follower {
    reader: WalReader,
    durable: Arc<Durable>,
    next: u64,
}

impl Follower {
    /// The next accepted events (up to `max`) after the last ones returned, waiting up to
    /// `timeout` for some; an empty batch when none came. `None` once the store is closed and
    /// everything was read.
    pub fn next_batch(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<(u64, Event)>>, StoreError> {
        let (until, closed) = self.durable.wait_beyond(self.next - 1, u64::MAX, timeout);
        let mut out = Vec::new();
        while out.len() < max {
            match self.reader.next(until)? {
                WalRead::Record(seq, payload) => {
                    self.next = seq + 1;
                    if let Ok(event) = serde_json::from_slice::<Event>(&payload) {
                        out.push((seq, event));
                    }
                }
                WalRead::CaughtUp => break,
                WalRead::Damaged(d) => {
                    self.next = d.resumed_at.max(self.next);
                    break;
                }
            }
        }
        if out.is_empty() && closed && self.next > until {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// The last durable record, for progress.
    pub fn durable(&self) -> u64 {
        self.durable
            .wait_beyond(u64::MAX, u64::MAX, Duration::ZERO)
            .0
    }
}

impl StoreHandle {
    pub fn sender(&self) -> &mpsc::Sender<Batch> {
        &self.sender
    }

    pub fn index(&self) -> &EventIndex {
        &self.index
    }

    /// Follows the log from record `from` (1 = the beginning).
    pub fn follow(&self, from: u64) -> Follower {
        let from = from.max(1);
        Follower {
            reader: WalReader::new(&self.wal_dir, from),
            durable: self.durable.clone(),
            next: from,
        }
    }

    /// Blocks until every record up to `seq` is committed to the index (asking the indexer
    /// to commit at once), or `timeout` passes; true when it is.
    pub fn flush(&self, seq: u64, timeout: Duration) -> bool {
        self.durable.request_flush(seq);
        self.index.wait_committed(seq, timeout)
    }
}

/// The store: owns the write-ahead log and the index. Hand it events through [`Store::sender`];
/// search through [`Store::index`].
pub struct Store {
    /// Held for the store's lifetime.
    _lock: std::fs::File,
    durable: Arc<Durable>,
    wal_dir: PathBuf,
    events_tx: Option<mpsc::Sender<Batch>>,
    index: EventIndex,
    wal_thread: Option<JoinHandle<()>>,
    index_thread: Option<JoinHandle<Result<(), StoreError>>>,
}

impl Store {
    pub fn open(config: &StoreConfig, metrics: StoreMetrics) -> Result<Store, StoreError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        probe_writable(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let index = open_index(&data_dir.join("index"), true)?;
        // The writer takes tantivy's lock: a second server on the same directory stops here.
        let writer = index
            .writer_with_num_threads(config.index_threads, config.index_memory_budget_bytes)
            .map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => StoreError::DataDir {
                    path: data_dir.clone(),
                    source: std::io::Error::other("in use by another running mimamori"),
                },
                other => other.into(),
            })?;
        let wal_dir = data_dir.join("wal");
        let (wal, opened) = WalWriter::open(&wal_dir, config.wal_segment_max_bytes)?;
        if opened.truncated_bytes > 0 {
            warn!(
                bytes = opened.truncated_bytes,
                "cut a torn, unacknowledged write from the end of the write-ahead log"
            );
        }
        let indexed = checkpoint(&index)?;
        let durable_seq = opened.next_seq - 1;
        if indexed > durable_seq {
            return Err(StoreError::Corrupt {
                path: wal_dir,
                offset: 0,
                reason: format!(
                    "the index holds record {indexed} but the log ends at {durable_seq}"
                ),
            });
        }
        info!(
            durable = durable_seq,
            indexed, "store opened; replaying the difference into the index"
        );
        metrics.wal_bytes.set(wal.total_bytes() as i64);
        let durable = Arc::new(Durable::new(durable_seq));
        let event_index = EventIndex::new(index, Some(metrics.clone()))?;
        event_index.set_committed(indexed);
        let indexer = Indexer {
            writer,
            index: event_index.clone(),
            wal_dir,
            durable: durable.clone(),
            commit_interval: Duration::from_millis(config.commit_interval_ms),
            metrics: metrics.clone(),
        };
        let index_thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || {
                let result = indexer.run();
                if let Err(e) = &result {
                    error!(error = %e, "indexer stopped on an error; accepted events stay in the write-ahead log");
                }
                result
            })?;
        let (events_tx, events_rx) = mpsc::channel(config.queue_batches);
        let wal_durable = durable.clone();
        let wal_thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || write_ahead(wal, events_rx, &durable, &metrics))?;
        Ok(Store {
            _lock: lock,
            durable: wal_durable,
            wal_dir: data_dir.join("wal"),
            events_tx: Some(events_tx),
            index: event_index,
            wal_thread: Some(wal_thread),
            index_thread: Some(index_thread),
        })
    }

    /// Where producers send batches. Bounded: a full queue makes the producer wait.
    pub fn sender(&self) -> mpsc::Sender<Batch> {
        self.events_tx
            .clone()
            .expect("sender taken only at shutdown")
    }

    pub fn index(&self) -> &EventIndex {
        &self.index
    }

    pub fn handle(&self) -> StoreHandle {
        StoreHandle {
            sender: self.sender(),
            index: self.index.clone(),
            durable: self.durable.clone(),
            wal_dir: self.wal_dir.clone(),
        }
    }

    /// Drains and stops: waits for every producer's sender to be dropped, syncs the log and
    /// commits the index.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.events_tx = None;
        if let Some(t) = self.wal_thread.take() {
            let _ = t.join();
        }
        match self.index_thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StoreError::Io(std::io::Error::other(
                "indexer thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

/// One writer per data directory: an exclusive lock on `<data_dir>/.lock`, held while the
/// store is open (the kernel drops it when the process ends, however it ends).
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    let error = |source| StoreError::DataDir {
        path: dir.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .map_err(error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(error(std::io::Error::other(
            "in use by another running mimamori",
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(error(e)),
    }
}

fn probe_writable(dir: &Path) -> Result<(), StoreError> {
    // Named per process: two processes probing at once must not remove each other's file.
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })
}

/// Largest group of batches synced together.
const MAX_GROUP_BATCHES: usize = 512;

fn write_ahead(
    mut wal: WalWriter,
    mut events_rx: mpsc::Receiver<Batch>,
    durable: &Durable,
    metrics: &StoreMetrics,
) {
    let mut group: Vec<Batch> = Vec::with_capacity(MAX_GROUP_BATCHES);
    let mut json = Vec::with_capacity(4096);
    while let Some(first) = events_rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP_BATCHES {
            match events_rx.try_recv() {
                Ok(batch) => group.push(batch),
                Err(_) => break,
            }
        }
        let first_seq = wal.next_seq();
        let bytes_before = wal.total_bytes();
        let mut result: Result<(), StoreError> = Ok(());
        'append: for batch in &group {
            for event in &batch.events {
                json.clear();
                serde_json::to_writer(&mut json, event).expect("events serialize");
                if let Err(e) = wal.append(&json) {
                    result = Err(e);
                    break 'append;
                }
            }
        }
        if result.is_ok() {
            let started = Instant::now();
            result = wal.sync();
            metrics
                .wal_fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        metrics
            .wal_written_bytes
            .inc_by(wal.total_bytes() - bytes_before);
        metrics.wal_bytes.set(wal.total_bytes() as i64);
        match result {
            Ok(()) => {
                durable.publish(wal.next_seq() - 1);
                let mut seq = first_seq;
                for batch in group.drain(..) {
                    let n = batch.events.len() as u64;
                    for event in &batch.events {
                        metrics
                            .events_accepted
                            .with_label_values(&[&event.dataset])
                            .inc();
                    }
                    if let Some(ack) = batch.ack {
                        let _ = ack.send(Ok(seq..=seq + n.saturating_sub(1)));
                    }
                    seq += n;
                }
            }
            Err(e) => {
                // Records after the last sync may or may not be on disk; none were acknowledged.
                error!(error = %e, "write-ahead log write failed; the batch is refused");
                let e = Arc::new(e);
                for batch in group.drain(..) {
                    metrics.events_failed.inc_by(batch.events.len() as u64);
                    if let Some(ack) = batch.ack {
                        let _ = ack.send(Err(e.clone()));
                    }
                }
            }
        }
    }
    let _ = wal.sync();
    durable.close();
}
