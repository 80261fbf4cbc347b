//! `mimamori reindex`: rebuilds the index from the write-ahead log (the server stopped). The old
//! index is moved aside first and removed once the new one holds everything.

use std::path::Path;
use std::time::Duration;

use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::pipeline::{Store, StoreConfig};

/// Rebuilds; `progress(indexed, total)` is called about once a second. Returns the number of
/// events the new index holds.
pub fn reindex(
    config: &StoreConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64, StoreError> {
    let index_dir = config.data_dir.join("index");
    let aside = config.data_dir.join(format!(
        "index.replaced-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    {
        // Refused while a server or an import holds the directory: its index stays as it is.
        let _lock = crate::pipeline::lock_data_dir(&config.data_dir)?;
        if index_dir.exists() {
            std::fs::rename(&index_dir, &aside)?;
        }
    }
    let metrics = StoreMetrics::new(&prometheus::Registry::new()).expect("fresh registry");
    let store = Store::open(config, metrics)?;
    let total = store.durable_seq();
    loop {
        let done = store.handle().flush(total, Duration::from_secs(1));
        progress(store.index().committed(), total);
        if done {
            break;
        }
    }
    let num_events = store.index().num_events();
    store.shutdown()?;
    if aside.exists() {
        std::fs::remove_dir_all(&aside)?;
    }
    Ok(num_events)
}

/// Moves an unreadable index aside (kept for a person to look at) so a new one is built.
pub(crate) fn move_aside(data_dir: &Path, why: &str) -> Result<std::path::PathBuf, StoreError> {
    let aside = data_dir.join(format!(
        "index.{why}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    std::fs::rename(data_dir.join("index"), &aside)?;
    Ok(aside)
}
