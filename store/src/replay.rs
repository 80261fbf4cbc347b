//! The log read back in full, for whoever needs every stored event in log order (the rules'
//! time-ordered pass after an import, backtests, tests): the same reader and damage policy as
//! the indexer and the live follower.

use std::path::Path;

use crate::error::StoreError;
use crate::event::Event;
use crate::wal::{WalRead, WalReader};

/// Events in the log of `data_dir` from record `from` on, in log order, up to where the log
/// ends now. A damaged stretch is skipped (as every reader of the log skips it; the indexer
/// reports it) and counted in [`Replay::damaged`]; a record that is not an event is skipped.
pub fn replay(data_dir: &Path, from: u64) -> Replay {
    Replay {
        reader: WalReader::new(&data_dir.join("wal"), from.max(1)),
        damaged: 0,
        failed: false,
    }
}

pub struct Replay {
    reader: WalReader,
    /// Damaged stretches skipped so far.
    pub damaged: u64,
    failed: bool,
}

impl Iterator for Replay {
    /// A record number and its event, or why the log cannot be read on (then the end).
    type Item = Result<(u64, Event), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.reader.next(u64::MAX) {
                Ok(WalRead::Record(seq, payload)) => {
                    if let Ok(event) = serde_json::from_slice::<Event>(&payload) {
                        return Some(Ok((seq, event)));
                    }
                }
                Ok(WalRead::Damaged(_)) => self.damaged += 1,
                Ok(WalRead::CaughtUp) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
