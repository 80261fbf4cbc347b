//! `mimamori reindex`: rebuilds the index from the write-ahead log (the server stopped). The old
//! index is moved aside first and removed once the new one holds everything.

use std::path::Path;
use std::time::Duration;

use crate::error::StoreError;
use crate::metrics::StoreMetrics;
use crate::pipeline::{Store, StoreConfig};

/// How long the rebuild may go without indexing a record before it gives up.
const STALLED: Duration = Duration::from_secs(120);

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
    // A log that cannot be read up to its end stops the rebuild with why, never loops.
    let mut last = (store.index().committed(), std::time::Instant::now());
    loop {
        let done = store.handle().flush(total, Duration::from_secs(1));
        let committed = store.index().committed();
        progress(committed, total);
        if done {
            break;
        }
        if committed != last.0 {
            last = (committed, std::time::Instant::now());
        } else if last.1.elapsed() > STALLED {
            let _ = store.shutdown();
            return Err(StoreError::DataDir {
                path: config.data_dir.join("wal"),
                source: std::io::Error::other(format!(
                    "the rebuild stopped at record {committed} of {total}: the log cannot be read beyond it; run `mimamori verify` to see why"
                )),
            });
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
