//! What the WAL writer tells everyone else: the last synced record, whether the log is closed,
//! which record a caller wants committed to the index now, and why new data is refused.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State {
    durable: u64,
    closed: bool,
    flush_to: u64,
    /// Why the writer refuses new data (disk full, write errors); none while it accepts.
    refusing: Option<String>,
}

pub(crate) struct Durable {
    state: Mutex<State>,
    changed: Condvar,
}

impl Durable {
    pub fn new(durable: u64) -> Durable {
        Durable {
            state: Mutex::new(State {
                durable,
                closed: false,
                flush_to: 0,
                refusing: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn publish(&self, seq: u64) {
        let mut state = self.lock();
        state.durable = state.durable.max(seq);
        self.changed.notify_all();
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn set_refusing(&self, reason: Option<String>) {
        self.lock().refusing = reason;
    }

    pub fn refusing(&self) -> Option<String> {
        self.lock().refusing.clone()
    }

    pub fn request_flush(&self, seq: u64) {
        let mut state = self.lock();
        state.flush_to = state.flush_to.max(seq);
        self.changed.notify_all();
    }

    /// The record a caller wants committed now (0: none).
    pub fn flush_to(&self) -> u64 {
        self.lock().flush_to
    }

    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// Waits until something beyond `seq` is durable, the log is closed, a flush beyond
    /// `committed` is asked for, or `timeout` passes. Returns (durable, closed).
    pub fn wait_beyond(&self, seq: u64, committed: u64, timeout: Duration) -> (u64, bool) {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| {
                s.durable <= seq && !s.closed && (s.flush_to <= committed || s.flush_to > s.durable)
            })
            .unwrap_or_else(|e| e.into_inner());
        (state.durable, state.closed)
    }
}
