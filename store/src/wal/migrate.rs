//! Reads a log of the first format (no segment header, no chain) and writes it again in this
//! build's format, keeping every sequence number. The old segments are kept in `wal-v1/`.
//!
//! First-format record: `u32 LE length | u32 LE CRC-32 of (seq, payload) | u64 LE seq | payload`.

use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use tracing::{info, warn};

use super::format::{SegmentKind, read_head, segment_kind};
use super::{WalWriter, segments};
use crate::error::StoreError;

/// Whether `wal_dir` holds first-format segments.
pub(crate) fn is_v1(wal_dir: &Path) -> Result<bool, StoreError> {
    for (_, path) in segments(wal_dir)? {
        let head = read_head(&path)?;
        if head.is_empty() {
            continue;
        }
        return Ok(segment_kind(&head) == SegmentKind::V1);
    }
    Ok(false)
}

/// Migrates `<data_dir>/wal` when it is of the first format; finishes a migration a crash
/// interrupted. Returns the number of records migrated.
pub(crate) fn migrate_v1(data_dir: &Path, max_segment_bytes: u64) -> Result<u64, StoreError> {
    let wal = data_dir.join("wal");
    let old = data_dir.join("wal-v1");
    let new = data_dir.join("wal.migrating");
    if !wal.exists() && old.exists() && new.exists() {
        fs::rename(&new, &wal)?; // a crash between the two renames
        File::open(data_dir)?.sync_all()?;
        return Ok(0);
    }
    if !is_v1(&wal)? {
        return Ok(0);
    }
    info!(wal = %wal.display(), "the write-ahead log is of the first format; rewriting it with checksums, sync markers and a hash chain");
    if new.exists() {
        fs::remove_dir_all(&new)?;
    }
    let mut writer: Option<WalWriter> = None;
    let mut num_records = 0u64;
    for (_, path) in segments(&wal)? {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
        loop {
            let mut header = [0u8; 16];
            let n = read_full(&mut reader, &mut header)?;
            if n == 0 {
                break;
            }
            let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
            if n < 16 || len > super::format::MAX_RECORD_BYTES {
                warn!(segment = %path.display(), "first-format segment ends in a damaged record; the rest of it is not migrated");
                break;
            }
            let mut payload = vec![0u8; len];
            if read_full(&mut reader, &mut payload)? < len {
                warn!(segment = %path.display(), "first-format segment ends in a cut record");
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&seq.to_le_bytes());
            hasher.update(&payload);
            if hasher.finalize() != crc {
                warn!(segment = %path.display(), seq, "first-format record fails its checksum; the rest of the segment is not migrated");
                break;
            }
            let w = match writer.as_mut() {
                Some(w) => w,
                None => {
                    let (w, _) = WalWriter::open(&new, max_segment_bytes, seq - 1)?;
                    writer.insert(w)
                }
            };
            if seq < w.next_seq() {
                continue;
            }
            w.skip_to(seq);
            w.append(&payload)?;
            num_records += 1;
            if num_records.is_multiple_of(8192) {
                w.sync()?;
                w.rotate_if_full()?;
            }
        }
    }
    if let Some(mut w) = writer {
        w.sync()?;
    } else {
        fs::create_dir_all(&new)?;
    }
    fs::rename(&wal, &old)?;
    fs::rename(&new, &wal)?;
    File::open(data_dir)?.sync_all()?;
    info!(num_records, kept = %old.display(), "write-ahead log migrated; the first-format segments are kept and may be removed once `mimamori verify` passes");
    Ok(num_records)
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
