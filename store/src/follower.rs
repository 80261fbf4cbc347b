//! Reads accepted events in log order as they become durable: how the rules see each event
//! without polling the index. Damage is skipped as every reader of the log skips it.

use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::durable::Durable;
use crate::error::StoreError;
use crate::event::Event;
use crate::wal::{WalRead, WalReader};

pub struct Follower {
    pub(crate) reader: WalReader,
    pub(crate) durable: Arc<Durable>,
    /// Waiting beyond this: the reader is stuck on damage at the end of the log.
    pub(crate) stalled_at: u64,
}

/// Bytes of log records one batch holds at most: 4,096 events of 64 KiB were half a gigabyte.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

impl Follower {
    /// The next accepted events (up to `max`, and up to [`MAX_BATCH_BYTES`] of log records)
    /// after the last ones returned, waiting up to `timeout` for some; an empty batch when none
    /// came. `None` once the store is closed and
    /// everything was read.
    pub fn next_batch(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<(u64, Event)>>, StoreError> {
        let seen = (self.reader.next_seq() - 1).max(self.stalled_at);
        let (until, closed) = self.durable.wait_beyond(seen, u64::MAX, timeout);
        let mut out = Vec::new();
        let (mut reader_done, mut bytes) = (false, 0);
        while out.len() < max && bytes < MAX_BATCH_BYTES {
            match self.reader.next(until)? {
                WalRead::Record(seq, payload) => {
                    bytes += payload.len();
                    if let Ok(event) = serde_json::from_slice::<Event>(&payload) {
                        out.push((seq, event));
                    }
                }
                WalRead::CaughtUp => {
                    reader_done = true;
                    break;
                }
                WalRead::Damaged(damage) => {
                    error!(damage = %damage, "write-ahead log damaged; the rules continue after it");
                }
            }
        }
        let caught_up = self.reader.next_seq() > until;
        // Stuck on damage at the end of the log (not merely a full batch).
        self.stalled_at = if reader_done && !caught_up { until } else { 0 };
        if out.is_empty() && closed && (caught_up || reader_done) {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Why the log refuses new data right now (a full disk), if it does.
    pub fn refusing(&self) -> Option<String> {
        self.durable.refusing()
    }

    /// The last durable record, for progress.
    pub fn durable(&self) -> u64 {
        self.durable.durable()
    }
}
