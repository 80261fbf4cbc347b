//! The write-ahead log: every accepted event is appended here, and synced, before anyone is told
//! it was accepted. The index is a view built from the log.
//!
//! A log is a directory of segment files named after the sequence number of their first record
//! (`00000000000000000001.wal`); `format.rs` has the bytes. Sequence numbers start at 1 and
//! only go up. At open, an incomplete record at the very end of the last segment (a crash in
//! mid-write: never synced, never acknowledged) is copied to `quarantine/` and cut off; damage
//! anywhere else is skipped and reported by every reader, never cut.

mod columns;
mod cursor;
pub(crate) mod format;
mod lookup;
mod migrate;
mod reader;
pub(crate) mod sealed;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};

pub use self::lookup::LogLookup;
pub(crate) use self::migrate::{is_v1, migrate_v1};
pub(crate) use self::reader::ENDS_EARLY;
pub use self::reader::{WalRead, WalReader};
pub(crate) use self::writer::WalWriter;
use crate::error::StoreError;

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Segments of the log, oldest first, with the sequence number of their first record: plain
/// (`.wal`, the one being written and any not yet compressed) or sealed (`.walz`). When a crash
/// left both for one segment, the plain one counts.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out: Vec<(u64, bool, PathBuf)> = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (stem, sealed) = match (name.strip_suffix(".wal"), name.strip_suffix(".walz")) {
            (Some(stem), _) => (stem, false),
            (_, Some(stem)) => (stem, true),
            _ => continue,
        };
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, sealed, path));
        }
    }
    out.sort();
    out.dedup_by_key(|(first, _, _)| *first);
    Ok(out
        .into_iter()
        .map(|(first, _, path)| (first, path))
        .collect())
}

/// Compresses every plain segment that is no longer written and whose records the index
/// holds (up to `committed`). Returns the bytes saved.
pub(crate) fn seal_committed(dir: &Path, committed: u64) -> Result<u64, StoreError> {
    let all = segments(dir)?;
    let mut saved = 0;
    for pair in all.windows(2) {
        let ((first, path), (next_first, _)) = (&pair[0], &pair[1]);
        let plain = path.extension().is_some_and(|e| e == "wal");
        if plain && next_first.saturating_sub(1) <= committed {
            match sealed::seal(path, *first)? {
                Some(bytes) => saved += bytes,
                None => {
                    tracing::warn!(segment = %path.display(), "a damaged log segment is kept as it is, not compressed")
                }
            }
        }
    }
    Ok(saved)
}

/// Bytes of log on disk.
pub(crate) fn disk_bytes(dir: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for (_, path) in segments(dir)? {
        total += fs::metadata(path)?.len();
    }
    Ok(total)
}

/// Copies the bytes of `segment` from `from` on into `<dir>/quarantine/` before they are cut,
/// so nothing is destroyed that a person may want to look at.
fn quarantine(dir: &Path, segment: &Path, from: u64) -> Result<PathBuf, StoreError> {
    use std::io::{Seek, SeekFrom};
    let target_dir = dir.join("quarantine");
    fs::create_dir_all(&target_dir)?;
    let name = format!(
        "{}.{from}.{}.tail",
        segment
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment"),
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let target = target_dir.join(name);
    let mut source = fs::File::open(segment)?;
    source.seek(SeekFrom::Start(from))?;
    let mut out = fs::File::create(&target)?;
    std::io::copy(&mut source, &mut out)?;
    out.sync_all()?;
    fs::File::open(&target_dir)?.sync_all()?;
    Ok(target)
}

#[cfg(test)]
mod tests;
