//! `mimamori reindex`: rebuilds the index from the write-ahead log (the server stopped). The old
//! index is moved aside first and removed once the new one holds everything.

use std::path::Path;
use std::time::Duration;

use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::pipeline::{Store, StoreConfig};

/// Rebuilds; `progress(indexed, total)` is called about once a second. Returns the number of
/// events the new index holds and where the old index was kept (it may hold events the log
/// lost to damage: remove it once `mimamori verify` and a look at it are done).
pub fn reindex(
    config: &StoreConfig,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, Option<std::path::PathBuf>), StoreError> {
    let index_dir = config.data_dir.join("index");
    let aside = aside_name(&config.data_dir, "replaced");
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
    Ok((num_events, aside.exists().then_some(aside)))
}

/// A name for an index moved aside that no earlier one has: `index.<why>-<time>[-n]`.
fn aside_name(data_dir: &Path, why: &str) -> std::path::PathBuf {
    let stem = format!("index.{why}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
    let mut path = data_dir.join(&stem);
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = data_dir.join(format!("{stem}-{n}"));
    }
    path
}

/// Moves an unreadable index aside (kept for a person to look at) so a new one is built.
pub(crate) fn move_aside(data_dir: &Path, why: &str) -> Result<std::path::PathBuf, StoreError> {
    let aside = aside_name(data_dir, why);
    std::fs::rename(data_dir.join("index"), &aside)?;
    Ok(aside)
}
