//! The store: opens the data directory (format check, migration, recovery, the index checked
//! against the log before either is changed) and runs its two stages, the WAL writer
//! (`appender.rs`) and the indexer (`indexer.rs`). Ingest never waits for the index, only for
//! the disk.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::appender::{Appender, SpaceGuard};
use crate::checkpoint::{INDEX_FORMAT, checkpoint};
use crate::durable::Durable;
use crate::error::StoreError;
use crate::event::Event;
use crate::follower::Follower;
use crate::health::Health;
use crate::index::{EventIndex, damaged_files, is_current_schema, open_index};
use crate::indexer::Indexer;
use crate::metrics::StoreMetrics;
use crate::wal::format::hex;
use crate::wal::{WalRead, WalReader, WalWriter, migrate_v1};

/// Storage settings (`[storage]` in the config file).
///
/// Defaults: `data_dir = "./mimamori-data"`, `commit_interval_ms = 1000`,
/// `wal_segment_max_bytes = 67108864`, `index_memory_budget_bytes = 268435456`,
/// `index_threads = 2`, `queue_batches = 1024`, `min_free_bytes = 1073741824`,
/// `min_free_percent = 5`, `retention_days = 1825`, `auto_reindex = false`, no
/// `chain_key_file`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub commit_interval_ms: u64,
    pub wal_segment_max_bytes: u64,
    pub index_memory_budget_bytes: usize,
    pub index_threads: usize,
    pub queue_batches: usize,
    /// New data is refused while free space is below this or `min_free_percent`, whichever
    /// is smaller.
    pub min_free_bytes: u64,
    pub min_free_percent: u8,
    /// Whole log segments older than this leave the log and the index, daily.
    pub retention_days: u32,
    /// Rebuild an unreadable index at start instead of refusing to start.
    pub auto_reindex: bool,
    /// A secret (at least 16 bytes) kept outside the data directory; each index commit signs
    /// the log's chain head with it.
    pub chain_key_file: Option<PathBuf>,
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
            min_free_bytes: 1 << 30,
            min_free_percent: 5,
            retention_days: 1825,
            auto_reindex: false,
            chain_key_file: None,
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
        if self.min_free_percent > 50 {
            return Err(("min_free_percent", "a percentage from 0 to 50".into()));
        }
        if self.retention_days == 0 {
            return Err((
                "retention_days",
                "at least 1 (days of log kept; 1825 is five years)".into(),
            ));
        }
        if let Some(key) = &self.chain_key_file {
            let data = self
                .data_dir
                .canonicalize()
                .unwrap_or(self.data_dir.clone());
            // The file itself when it exists (a link into the data directory counts as in it).
            let key_dir = key
                .canonicalize()
                .ok()
                .or_else(|| key.parent().and_then(|p| p.canonicalize().ok()))
                .unwrap_or_else(|| key.clone());
            if key_dir.starts_with(&data) {
                return Err((
                    "chain_key_file",
                    "a file outside the data directory (whoever can change the data must not hold the key)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Reads the chain key, if one is configured.
    pub fn read_chain_key(&self) -> Result<Option<Vec<u8>>, (&'static str, String)> {
        let Some(path) = &self.chain_key_file else {
            return Ok(None);
        };
        let key = std::fs::read(path).map_err(|e| {
            (
                "chain_key_file",
                format!("a readable file ({}: {e})", path.display()),
            )
        })?;
        if key.len() < 16 {
            return Err((
                "chain_key_file",
                format!(
                    "a file of at least 16 bytes of secret ({} has {})",
                    path.display(),
                    key.len()
                ),
            ));
        }
        Ok(Some(key))
    }
}

/// What the store says back once a batch is durable: the sequence numbers it got.
pub type Ack = Result<RangeInclusive<u64>, Arc<StoreError>>;

/// Events handed to the store together, with an optional acknowledgement.
pub struct Batch {
    pub events: Vec<Event>,
    pub ack: Option<oneshot::Sender<Ack>>,
    /// Dropped with the batch, once the log has taken it (or refused it): what a producer
    /// holds against its own memory budget for the events in the queue.
    hold: Option<Box<dyn std::any::Any + Send>>,
}

impl Batch {
    pub fn new(events: Vec<Event>) -> Batch {
        Batch {
            events,
            ack: None,
            hold: None,
        }
    }

    /// This batch, holding `guard` until the log is done with it.
    pub fn holding(mut self, guard: impl std::any::Any + Send) -> Batch {
        self.hold = Some(Box::new(guard));
        self
    }

    /// A batch whose sender waits on the receiver for durability.
    pub fn with_ack(events: Vec<Event>) -> (Batch, oneshot::Receiver<Ack>) {
        let (tx, rx) = oneshot::channel();
        (
            Batch {
                events,
                ack: Some(tx),
                hold: None,
            },
            rx,
        )
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
    health: Health,
}

impl StoreHandle {
    pub fn sender(&self) -> &mpsc::Sender<Batch> {
        &self.sender
    }

    pub fn index(&self) -> &EventIndex {
        &self.index
    }

    /// Why the log refuses new data right now (a full disk, write errors), if it does:
    /// producers that can answer their sender (HTTP) say so at once instead of queueing.
    pub fn refusing(&self) -> Option<String> {
        self.durable.refusing()
    }

    /// The last record synced to the log.
    pub fn durable_seq(&self) -> u64 {
        self.durable.durable()
    }

    /// Follows the log from record `from` (1 = the beginning).
    pub fn follow(&self, from: u64) -> Follower {
        let from = from.max(1);
        Follower {
            reader: WalReader::new(&self.wal_dir, from),
            durable: self.durable.clone(),
            stalled_at: 0,
        }
    }

    /// Blocks until every record up to `seq` is committed to the index (asking the indexer
    /// to commit at once), or `timeout` passes; true when it is.
    /// Gives up early, false, while the indexer is not running (a full disk: it catches up
    /// from the log once it can).
    pub fn flush(&self, seq: u64, timeout: Duration) -> bool {
        self.durable.request_flush(seq);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(200));
            if self.index.wait_committed(seq, slice) {
                return true;
            }
            let indexing = self.health.snapshot().iter().any(|(stage, status)| {
                stage == crate::indexer::STAGE && *status == crate::health::StageStatus::Running
            });
            if !indexing || slice.is_zero() {
                return false;
            }
        }
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
    health: Health,
    wal_thread: Option<JoinHandle<()>>,
    index_thread: Option<JoinHandle<Result<(), StoreError>>>,
    sealer_thread: Option<JoinHandle<()>>,
}

/// The data directory's format: `<data_dir>/FORMAT` says `mimamori-data 4` (3: sealed log
/// blocks without per-record headers, an index that stores no event; 4: event ids derived
/// again in sealed blocks, and looked up by a column; a release of an older format cannot
/// read them, and refuses the directory).
const DATA_FORMAT: u32 = 4;

/// Refuses a data directory that a restore cut short left half written (`RESTORING`).
pub fn refuse_half_restored(data_dir: &Path) -> Result<(), StoreError> {
    if data_dir.join(crate::backup::RESTORING).exists() {
        return Err(StoreError::DataDir {
            path: data_dir.to_owned(),
            source: std::io::Error::other(
                "a restore into it did not finish (RESTORING), so it holds only part of a backup: empty it and run `mimamori restore` again",
            ),
        });
    }
    Ok(())
}

pub(crate) fn check_data_format(data_dir: &Path) -> Result<(), StoreError> {
    refuse_half_restored(data_dir)?;
    let path = data_dir.join("FORMAT");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .trim()
                .strip_prefix("mimamori-data ")
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| StoreError::DataDir {
                    path: path.clone(),
                    source: std::io::Error::other(format!(
                        "expected `mimamori-data N` (the data format), found {:?}",
                        text.trim().chars().take(40).collect::<String>()
                    )),
                })?;
            if found > DATA_FORMAT {
                return Err(StoreError::NewerFormat { path, found });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn write_data_format(data_dir: &Path) -> Result<(), StoreError> {
    let path = data_dir.join("FORMAT");
    let text = format!("mimamori-data {DATA_FORMAT}\n");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text)?;
    }
    Ok(())
}

/// Opens the index, moving an unreadable one aside when `auto_reindex` allows it and an index
/// of the first format always (it is rebuilt from the log).
fn open_checked_index(config: &StoreConfig) -> Result<tantivy::Index, StoreError> {
    let data_dir = &config.data_dir;
    let dir = data_dir.join("index");
    let opened = open_index(&dir, true).and_then(|index| {
        let damaged = damaged_files(&index)?;
        if !damaged.is_empty() {
            return Err(StoreError::IndexUnreadable {
                reason: format!("files fail their checksums: {}", damaged.join(", ")),
            });
        }
        let point = checkpoint(&index)?;
        if point.format > INDEX_FORMAT {
            return Err(StoreError::NewerFormat {
                path: dir.clone(),
                found: point.format,
            });
        }
        Ok(index)
    });
    let index = match opened {
        Ok(index) if is_current_schema(&index) => return Ok(index),
        Ok(index) => {
            drop(index);
            let aside = crate::reindex::move_aside(data_dir, "old-format")?;
            info!("the index is of an older format; rebuilding it from the write-ahead log");
            std::fs::remove_dir_all(&aside)?;
            open_index(&dir, true)?
        }
        Err(StoreError::IndexUnreadable { reason }) if config.auto_reindex => {
            let aside = crate::reindex::move_aside(data_dir, "unreadable")?;
            error!(reason = %reason, old = %aside.display(), "the index is unreadable; rebuilding it from the write-ahead log (storage.auto_reindex)");
            open_index(&dir, true)?
        }
        Err(e) => return Err(e),
    };
    Ok(index)
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
        check_data_format(data_dir)?;
        let key = config
            .read_chain_key()
            .map_err(|(key, expected)| StoreError::DataDir {
                path: data_dir.clone(),
                source: std::io::Error::other(format!("storage.{key}: expected {expected}")),
            })?
            .map(Arc::new);
        migrate_v1(data_dir, config.wal_segment_max_bytes)?;
        let index = open_checked_index(config)?;
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
        let point = checkpoint(&index)?;
        // The index against the log, before the log is changed: the record the index last
        // committed must still be the one it saw.
        check_head(&wal_dir, &point);
        let (wal, opened) = WalWriter::open(&wal_dir, config.wal_segment_max_bytes, point.seq)?;
        if opened.truncated_bytes > 0 {
            warn!(
                bytes = opened.truncated_bytes,
                kept = %opened.quarantined.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                "cut an incomplete record from the end of the write-ahead log (a write in progress at a crash, never acknowledged); its bytes are kept"
            );
        }
        for damage in &opened.damage {
            error!(damage = %damage, "the write-ahead log is damaged; the damaged records are skipped, nothing else is cut");
            metrics.wal_damaged_records.inc_by(damage.num_lost());
        }
        if let Some(to) = opened.skipped_to {
            error!(
                index_holds = point.seq,
                "the end of the write-ahead log is damaged below what the index holds; numbering continues at {to} (the index still holds those events; `mimamori verify` lists them)"
            );
        }
        write_data_format(data_dir)?;
        let durable_seq = wal.synced_seq();
        info!(
            durable = durable_seq,
            indexed = point.seq,
            "store opened; replaying the difference into the index"
        );
        metrics
            .wal_bytes
            .set(crate::wal::disk_bytes(&wal_dir)? as i64);
        let health = Health::new();
        let durable = Arc::new(Durable::new(durable_seq));
        let event_index = EventIndex::new(index.clone(), &wal_dir, Some(metrics.clone()))?;
        event_index.set_committed(point.seq);
        let (sealer, committed) = std::sync::mpsc::sync_channel(1);
        // A seal pass at start too: a crash between writing a `.walz` and removing its plain
        // segment leaves both, and the plain one is sealed again (the `.walz` rewritten from
        // it and read back) without waiting for new events.
        let _ = sealer.try_send(point.seq);
        let sealer_thread = {
            let (wal_dir, metrics) = (wal_dir.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("wal-sealer".into())
                .spawn(move || crate::indexer::seal(&wal_dir, committed, &metrics))?
        };
        let indexer = Indexer {
            index,
            writer: Some(writer),
            threads: config.index_threads,
            memory_budget: config.index_memory_budget_bytes,
            events: event_index.clone(),
            wal_dir: wal_dir.clone(),
            durable: durable.clone(),
            commit_interval: Duration::from_millis(config.commit_interval_ms),
            metrics: metrics.clone(),
            health: health.clone(),
            key,
            retention: chrono::Duration::days(i64::from(config.retention_days)),
            failures: 0,
            sealer,
        };
        let index_thread = std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || indexer.run())?;
        let (events_tx, events_rx) = mpsc::channel(config.queue_batches);
        let appender = Appender {
            wal,
            events_rx,
            durable: durable.clone(),
            metrics,
            space: SpaceGuard {
                dir: wal_dir.clone(),
                min_free_bytes: config.min_free_bytes,
                min_free_percent: config.min_free_percent,
                checked: None,
                written_since: 0,
            },
            health: health.clone(),
        };
        let wal_thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || appender.run())?;
        Ok(Store {
            _lock: lock,
            durable,
            wal_dir,
            events_tx: Some(events_tx),
            index: event_index,
            health,
            wal_thread: Some(wal_thread),
            index_thread: Some(index_thread),
            sealer_thread: Some(sealer_thread),
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

    /// The stages' health; other stages (listeners, rules) register here too.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The last synced record.
    pub fn durable_seq(&self) -> u64 {
        self.durable.durable()
    }

    pub fn handle(&self) -> StoreHandle {
        StoreHandle {
            sender: self.sender(),
            index: self.index.clone(),
            durable: self.durable.clone(),
            wal_dir: self.wal_dir.clone(),
            health: self.health.clone(),
        }
    }

    /// Drains and stops: waits for every producer's sender to be dropped, syncs the log and
    /// commits the index.
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.events_tx = None;
        if let Some(t) = self.wal_thread.take() {
            let _ = t.join();
        }
        self.durable.close();
        let result = match self.index_thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StoreError::Io(std::io::Error::other(
                "indexer thread panicked",
            ))),
            None => Ok(()),
        };
        // The indexer has dropped its end: the sealer finishes the segment it is on.
        if let Some(t) = self.sealer_thread.take() {
            let _ = t.join();
        }
        result
    }
}

/// Logs when the log's chain at the index's last commit is not what the commit recorded.
fn check_head(wal_dir: &Path, point: &crate::checkpoint::Checkpoint) {
    let Some(head) = point.chain else { return };
    let mut reader = WalReader::new(wal_dir, point.seq);
    loop {
        match reader.next(point.seq) {
            Ok(WalRead::Record(seq, _)) if seq == point.seq => {
                if reader.chain() != Some(head) {
                    error!(
                        seq,
                        recorded = %hex(&head),
                        "the write-ahead log at the index's last commit is not what the index saw: it was changed; run `mimamori verify`"
                    );
                }
                return;
            }
            Ok(WalRead::Damaged(_)) => continue,
            _ => return,
        }
    }
}

/// One writer per data directory: an exclusive lock on `<data_dir>/.lock`, held while the
/// store is open (the kernel drops it when the process ends, however it ends).
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
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
