//! Which stages are running: listeners, the WAL writer, the indexer, the rules. `/healthz`
//! reports each; a stage that dies marks itself failed, and the binary exits on that (so the
//! service manager restarts it) instead of running on half-dead.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageStatus {
    Running,
    /// Running but not doing its job fully (the log refusing data on a full disk).
    Degraded(String),
    /// Stopped on purpose (shutdown).
    Stopped,
    /// Died.
    Failed(String),
}

impl StageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            StageStatus::Running => "running",
            StageStatus::Degraded(_) => "degraded",
            StageStatus::Stopped => "stopped",
            StageStatus::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            StageStatus::Degraded(r) | StageStatus::Failed(r) => Some(r),
            _ => None,
        }
    }
}

/// Shared by every stage. Cheap to clone.
#[derive(Clone)]
pub struct Health {
    stages: Arc<Mutex<BTreeMap<String, StageStatus>>>,
    failed: Arc<watch::Sender<Option<(String, String)>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            stages: Arc::new(Mutex::new(BTreeMap::new())),
            failed: Arc::new(watch::channel(None).0),
        }
    }

    fn set(&self, stage: &str, status: StageStatus) {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stage.to_owned(), status);
    }

    pub fn running(&self, stage: &str) {
        self.set(stage, StageStatus::Running);
    }

    pub fn degraded(&self, stage: &str, reason: &str) {
        self.set(stage, StageStatus::Degraded(reason.to_owned()));
    }

    pub fn stopped(&self, stage: &str) {
        self.set(stage, StageStatus::Stopped);
    }

    /// The stage died: logged, shown by `/healthz`, and whoever waits in
    /// [`Health::wait_failed`] is told.
    pub fn failed(&self, stage: &str, reason: &str) {
        error!(stage, reason, "a stage of mimamori stopped unexpectedly");
        self.set(stage, StageStatus::Failed(reason.to_owned()));
        self.failed.send_if_modified(|first| {
            let unset = first.is_none();
            if unset {
                *first = Some((stage.to_owned(), reason.to_owned()));
            }
            unset
        });
    }

    pub fn snapshot(&self) -> Vec<(String, StageStatus)> {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// True when every stage runs (degraded or failed ones make it false).
    pub fn all_running(&self) -> bool {
        self.snapshot()
            .iter()
            .all(|(_, s)| matches!(s, StageStatus::Running))
    }

    /// The first stage that died, once one has.
    pub async fn wait_failed(&self) -> (String, String) {
        let mut rx = self.failed.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }

    /// Marks `stage` failed if the thread holding the guard panics.
    pub fn guard(&self, stage: &str) -> StageGuard {
        StageGuard {
            health: self.clone(),
            stage: stage.to_owned(),
        }
    }
}

pub struct StageGuard {
    health: Health,
    stage: String,
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.health.failed(&self.stage, "panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_stage_is_reported_failed() {
        let health = Health::new();
        health.running("indexer");
        let h = health.clone();
        let _ = std::thread::spawn(move || {
            let _guard = h.guard("wal-writer");
            h.running("wal-writer");
            panic!("boom");
        })
        .join();
        assert!(!health.all_running());
        let snapshot = health.snapshot();
        assert!(snapshot.contains(&("wal-writer".into(), StageStatus::Failed("panicked".into()))));
        let failed = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(health.wait_failed());
        assert_eq!(failed, ("wal-writer".to_owned(), "panicked".to_owned()));
    }
}
