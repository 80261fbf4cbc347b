//! The WAL writer stage: takes batches from the bounded channel, appends them, fsyncs once per
//! group (group commit) and only then acknowledges them.
//!
//! Faults, as designed: an event too big for a record is cut to fit (tagged
//! `truncated_too_long`), never a reason to stop. A failed write or fsync, or free space below
//! the reserve, refuses the group: acknowledged batches (HTTP ingest, imports) get an error at
//! once (HTTP answers 503 with Retry-After), unacknowledged ones (syslog) are held and written
//! when the disk takes data again; while they are held the writer stops reading the channel,
//! so TCP senders are slowed, not dropped. The writer cuts the log back to its last synced
//! record before it tries again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{self, error::TryRecvError};
use tracing::{error, info, warn};

use crate::durable::Durable;
use crate::error::StoreError;
use crate::health::Health;
use crate::metrics::StoreMetrics;
use crate::pipeline::Batch;
use crate::space;
use crate::wal::WalWriter;

/// Events synced together at most (a group is also what may overshoot the free-space check).
const MAX_GROUP_EVENTS: usize = 4096;
/// Bytes of events (their originals and messages) synced together at most: 4,096 events of
/// 64 KiB held half a gigabyte at once, serialized.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// What a batch weighs against [`MAX_GROUP_BYTES`].
fn batch_bytes(batch: &Batch) -> usize {
    batch
        .events
        .iter()
        .map(|e| e.original.len() + e.message.len())
        .sum()
}

/// Room a group may need beyond the reserve: a group of [`MAX_GROUP_EVENTS`] typical events is
/// a few MB; the check wants this much more than the reserve free.
const GROUP_HEADROOM_BYTES: u64 = 16 << 20;
/// Unacknowledged batches held while the log refuses data; beyond, the channel backs up.
const MAX_HELD_BATCHES: usize = 256;
/// How often a refusing writer tries again.
const RETRY: Duration = Duration::from_secs(1);
/// Free space is looked up at most this often, or after this many bytes.
const SPACE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const SPACE_CHECK_BYTES: u64 = 32 << 20;
/// Largest event JSON written; longer fields are cut to fit.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
pub const STAGE: &str = "wal-writer";

pub(crate) struct SpaceGuard {
    pub dir: PathBuf,
    pub min_free_bytes: u64,
    pub min_free_percent: u8,
    pub checked: Option<Instant>,
    pub written_since: u64,
}

impl SpaceGuard {
    fn check(&mut self, metrics: &StoreMetrics, force: bool) -> Result<(), StoreError> {
        let due = force
            || self.written_since >= SPACE_CHECK_BYTES
            || self
                .checked
                .is_none_or(|t| t.elapsed() >= SPACE_CHECK_INTERVAL);
        if !due {
            return Ok(());
        }
        self.checked = Some(Instant::now());
        self.written_since = 0;
        let (free, total) = space::free_space(&self.dir)?;
        metrics.storage_free_bytes.set(free as i64);
        let reserve = space::reserve(total, self.min_free_bytes, self.min_free_percent);
        // The next group must fit above the reserve too (on a tiny disk, a share of it).
        let headroom = GROUP_HEADROOM_BYTES.min(total / 50);
        if free < reserve + headroom {
            return Err(StoreError::LowSpace { free, reserve });
        }
        Ok(())
    }
}

pub(crate) struct Appender {
    pub wal: WalWriter,
    pub events_rx: mpsc::Receiver<Batch>,
    pub durable: Arc<Durable>,
    pub metrics: StoreMetrics,
    pub space: SpaceGuard,
    pub health: Health,
}

impl Appender {
    pub fn run(mut self) {
        let _guard = self.health.guard(STAGE);
        self.health.running(STAGE);
        let mut held: VecDeque<Batch> = VecDeque::new();
        let mut refusing: Option<String> = None;
        let mut json = Vec::with_capacity(4096);
        // Every sender is gone: what is held gets one more try, then the stage ends.
        let mut closed = false;
        loop {
            let mut group: Vec<Batch> = Vec::new();
            if let Some(reason) = &refusing {
                closed |= self.wait_refusing(&mut held, reason);
                if held.is_empty() {
                    if closed {
                        break;
                    }
                    // Nothing to write: see whether the disk takes data again.
                    match self.probe() {
                        Ok(()) => self.resume(&mut refusing),
                        Err(e) => refusing = Some(e.to_string()),
                    }
                    continue;
                }
            }
            if !held.is_empty() {
                // Held batches first, in order, a group's worth at a time (a group is what the
                // free-space check leaves room for).
                let (mut num_events, mut bytes) = (0, 0);
                while let Some(batch) = held.front() {
                    let more = batch_bytes(batch);
                    if num_events > 0
                        && (num_events + batch.events.len() > MAX_GROUP_EVENTS
                            || bytes + more > MAX_GROUP_BYTES)
                    {
                        break;
                    }
                    num_events += batch.events.len();
                    bytes += more;
                    group.extend(held.pop_front());
                }
            } else {
                let Some(first) = self.events_rx.blocking_recv() else {
                    break;
                };
                let mut num_events = first.events.len();
                let mut bytes = batch_bytes(&first);
                group.push(first);
                while num_events < MAX_GROUP_EVENTS && bytes < MAX_GROUP_BYTES {
                    match self.events_rx.try_recv() {
                        Ok(batch) => {
                            num_events += batch.events.len();
                            bytes += batch_bytes(&batch);
                            group.push(batch);
                        }
                        Err(_) => break,
                    }
                }
            }
            match self.write_group(&mut group, &mut json) {
                Ok(first_seq) => {
                    if refusing.is_some() {
                        self.resume(&mut refusing);
                    }
                    self.acknowledge(group, first_seq);
                }
                Err(e) => {
                    let reason = e.to_string();
                    if refusing.is_none() {
                        error!(error = %reason, "the write-ahead log refuses new data; acknowledged senders get an error, syslog is held and slowed until writes succeed");
                    }
                    if !matches!(e, StoreError::LowSpace { .. }) {
                        self.metrics.wal_write_errors.inc();
                    }
                    if let Err(e) = self.wal.recover() {
                        warn!(error = %e, "cannot cut the write-ahead log back to its last synced record yet; trying again");
                    }
                    self.health.degraded(STAGE, &reason);
                    self.durable.set_refusing(Some(reason.clone()));
                    self.metrics.storage_refusing.set(1);
                    // Unacknowledged batches go back to the front, in order.
                    let mut kept = VecDeque::new();
                    for batch in group {
                        self.hold_or_refuse(batch, &mut kept, &reason);
                    }
                    while let Some(batch) = kept.pop_back() {
                        held.push_front(batch);
                    }
                    refusing = Some(reason);
                    if closed {
                        break;
                    }
                }
            }
        }
        if !held.is_empty() {
            let lost: usize = held.iter().map(|b| b.events.len()).sum();
            error!(
                num_events = lost,
                "stopping while the write-ahead log refuses data: unacknowledged syslog events were not written"
            );
            self.metrics.events_failed.inc_by(lost as u64);
        }
        if let Err(e) = self.wal.sync() {
            warn!(error = %e, "final write-ahead log sync failed");
        }
        self.durable.close();
        self.health.stopped(STAGE);
    }

    fn resume(&mut self, refusing: &mut Option<String>) {
        info!("the write-ahead log accepts data again");
        *refusing = None;
        self.health.running(STAGE);
        self.durable.set_refusing(None);
        self.metrics.storage_refusing.set(0);
    }

    /// Whether the log could take data now, without writing any.
    fn probe(&mut self) -> Result<(), StoreError> {
        if self.wal.needs_recovery() {
            self.wal.recover()?;
        }
        self.space.check(&self.metrics, true)
    }

    /// While refusing: waits [`RETRY`], answering acknowledged batches at once and holding
    /// unacknowledged ones up to [`MAX_HELD_BATCHES`]. True when every sender is gone.
    fn wait_refusing(&mut self, held: &mut VecDeque<Batch>, reason: &str) -> bool {
        let deadline = Instant::now() + RETRY;
        while Instant::now() < deadline {
            if held.len() >= MAX_HELD_BATCHES {
                // Full: leave the rest in the channel (senders wait), but notice a shutdown.
                if self.events_rx.is_closed() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match self.events_rx.try_recv() {
                Ok(batch) => self.hold_or_refuse(batch, held, reason),
                Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(20)),
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        false
    }

    fn hold_or_refuse(&self, batch: Batch, held: &mut VecDeque<Batch>, reason: &str) {
        match batch.ack {
            Some(ack) => {
                self.metrics.events_failed.inc_by(batch.events.len() as u64);
                let _ = ack.send(Err(Arc::new(StoreError::Unavailable(reason.to_owned()))));
            }
            None => held.push_back(batch),
        }
    }

    fn write_group(&mut self, group: &mut [Batch], json: &mut Vec<u8>) -> Result<u64, StoreError> {
        if self.wal.needs_recovery() {
            self.wal.recover()?;
        }
        self.space.check(&self.metrics, false)?;
        self.wal.rotate_if_full()?;
        let first_seq = self.wal.next_seq();
        let bytes_before = self.wal.total_bytes();
        for batch in group.iter_mut() {
            for event in &mut batch.events {
                json.clear();
                if event.write_bounded(json, MAX_EVENT_BYTES) {
                    self.metrics.events_cut.inc();
                }
                self.wal.append(json)?;
            }
        }
        let started = Instant::now();
        self.wal.sync()?;
        self.metrics
            .wal_fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        let written = self.wal.total_bytes() - bytes_before;
        self.space.written_since += written;
        self.metrics.wal_written_bytes.inc_by(written);
        self.metrics.wal_bytes.add(written as i64);
        Ok(first_seq)
    }

    fn acknowledge(&self, group: Vec<Batch>, first_seq: u64) {
        self.durable.publish(self.wal.synced_seq());
        let mut seq = first_seq;
        for batch in group {
            let n = batch.events.len() as u64;
            for event in &batch.events {
                self.metrics
                    .events_accepted
                    .with_label_values(&[crate::metrics::dataset_label(&event.dataset)])
                    .inc();
            }
            if let Some(ack) = batch.ack {
                let _ = ack.send(Ok(seq..=seq + n.saturating_sub(1)));
            }
            seq += n;
        }
    }
}
