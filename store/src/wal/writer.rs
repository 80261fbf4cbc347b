//! Appends records and makes them durable. A failed write or fsync is never carried: the
//! writer forgets what it had not synced, cuts the segment back to the last synced byte,
//! reopens it and starts again from there (the "fsyncgate" lesson: after a failed fsync the
//! kernel may have dropped the dirty pages, so nothing unsynced can be trusted).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cursor::{Cursor, Found};
use super::format::{
    Chain, GENESIS, MAX_RECORD_BYTES, SEGMENT_HEADER_BYTES, SegmentKind, next_chain, read_head,
    record_header, segment_header, segment_kind,
};
use super::reader::WalDamage;
use super::{quarantine, segment_name, segments};
use crate::error::StoreError;

/// Unsynced bytes kept in memory before they are written out.
const BUFFER_BYTES: usize = 4 << 20;

/// The last point known to be on disk.
#[derive(Debug, Clone, Copy)]
struct Synced {
    /// Bytes of the current segment that are synced.
    bytes: u64,
    next_seq: u64,
    chain: Chain,
}

pub struct WalWriter {
    dir: PathBuf,
    path: PathBuf,
    file: Option<File>,
    /// Appended, not yet written to the file.
    buf: Vec<u8>,
    /// Written to the file since the last sync.
    written: u64,
    synced: Synced,
    next_seq: u64,
    chain: Chain,
    max_segment_bytes: u64,
    /// When the segment being written was begun: after [`MAX_SEGMENT_AGE`] it is rotated
    /// even when not full, so that it can be compressed.
    segment_started: SystemTime,
    max_segment_age: Duration,
    /// Synced bytes over all segments.
    total_bytes: u64,
}

/// A segment older than this is rotated (and then compressed) even when not full: a small
/// clinic would otherwise keep months of its log uncompressed, at about 1 KB an event.
pub const MAX_SEGMENT_AGE: Duration = Duration::from_secs(24 * 3600);

/// What opening the log found.
#[derive(Debug, Clone)]
pub struct WalOpened {
    pub next_seq: u64,
    /// Bytes cut from the end of the last segment (a torn, never-acknowledged write), kept in
    /// `quarantined` first.
    pub truncated_bytes: u64,
    pub quarantined: Option<PathBuf>,
    /// Damage found inside the last segment (skipped, not cut).
    pub damage: Vec<WalDamage>,
    /// Sequence numbers skipped because the index already held them (acknowledged records
    /// lost to damage at the very end of the log).
    pub skipped_to: Option<u64>,
}

impl WalWriter {
    /// Opens (or creates) the log in `dir`. `indexed` is the last record the index holds: it
    /// was acknowledged, so numbering never goes back below it.
    pub fn open(
        dir: &Path,
        max_segment_bytes: u64,
        indexed: u64,
    ) -> Result<(WalWriter, WalOpened), StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        // A compression a crash interrupted: the plain segment is still there.
        for entry in fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".walz.tmp") {
                fs::remove_file(entry.path())?;
            }
        }
        let all = segments(dir)?;
        let mut total_bytes = 0;
        for (_, path) in &all {
            total_bytes += fs::metadata(path)?.len();
        }
        let mut opened = WalOpened {
            next_seq: 1,
            truncated_bytes: 0,
            quarantined: None,
            damage: Vec::new(),
            skipped_to: None,
        };
        let Some((first, path)) = all.last().cloned() else {
            let next_seq = indexed + 1;
            let mut writer = WalWriter::new(dir, max_segment_bytes, next_seq, GENESIS, 0);
            writer.start_segment()?;
            opened.next_seq = writer.next_seq;
            return Ok((writer, opened));
        };
        // The chain and numbering continue from the last good record of the log.
        let scan = scan(&path, first)?;
        opened.damage = scan.damage;
        let (mut next_seq, mut chain) = (scan.next_seq, scan.chain);
        if scan.next_seq == first && all.len() > 1 {
            // The last segment holds no good record: take the chain from the one before.
            let (prev_first, prev) = &all[all.len() - 2];
            let before = self::scan(prev, *prev_first)?;
            chain = before.chain;
            next_seq = next_seq.max(before.next_seq);
        }
        // Numbering never goes back below what the index holds (it was acknowledged).
        if indexed + 1 > next_seq {
            opened.skipped_to = Some(indexed + 1);
            next_seq = indexed + 1;
        }
        if path.extension().is_some_and(|e| e == "walz") {
            // A compressed segment is never written again, nor cut: the log ended in one
            // (a restore cut short, a lost active segment), so it goes on in a new plain one.
            let mut writer = WalWriter::new(dir, max_segment_bytes, next_seq, chain, total_bytes);
            writer.start_segment()?;
            opened.next_seq = next_seq;
            return Ok((writer, opened));
        }
        let len = fs::metadata(&path)?.len();
        let mut valid = scan.valid_bytes;
        if !scan.has_header {
            valid = 0;
        }
        if len > valid {
            let saved = quarantine(dir, &path, valid)?;
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(valid)?;
            file.sync_all()?;
            opened.truncated_bytes = len - valid;
            opened.quarantined = Some(saved);
            total_bytes -= len - valid;
        }
        let mut writer = WalWriter::new(dir, max_segment_bytes, next_seq, chain, total_bytes);
        writer.path = path.clone();
        // The segment goes on: it is as old as its file (birth time where the filesystem keeps
        // one, else its last change, which can only be later).
        let meta = fs::metadata(&path)?;
        if let Ok(born) = meta.created().or_else(|_| meta.modified()) {
            writer.segment_started = born;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::DataDir {
                path: path.clone(),
                source,
            })?;
        if valid == 0 {
            file.write_all(&segment_header(first))?;
            file.sync_all()?;
            writer.total_bytes += SEGMENT_HEADER_BYTES;
            valid = SEGMENT_HEADER_BYTES;
        }
        file.seek(SeekFrom::Start(valid))?;
        writer.file = Some(file);
        writer.synced.bytes = valid;
        opened.next_seq = next_seq;
        Ok((writer, opened))
    }

    fn new(
        dir: &Path,
        max_segment_bytes: u64,
        next_seq: u64,
        chain: Chain,
        total_bytes: u64,
    ) -> WalWriter {
        WalWriter {
            dir: dir.to_owned(),
            path: dir.join(segment_name(next_seq)),
            file: None,
            buf: Vec::with_capacity(BUFFER_BYTES),
            written: 0,
            synced: Synced {
                bytes: 0,
                next_seq,
                chain,
            },
            next_seq,
            chain,
            max_segment_bytes,
            segment_started: SystemTime::now(),
            max_segment_age: MAX_SEGMENT_AGE,
            total_bytes,
        }
    }

    /// Starts a new segment at `next_seq` (nothing may be unsynced).
    fn start_segment(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(segment_name(self.next_seq));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        file.write_all(&segment_header(self.next_seq))?;
        file.sync_all()?;
        // The new name must survive a crash too, or recovery would miss the segment.
        File::open(&self.dir)?.sync_all()?;
        self.path = path;
        self.file = Some(file);
        self.segment_started = SystemTime::now();
        self.total_bytes += SEGMENT_HEADER_BYTES;
        self.synced = Synced {
            bytes: SEGMENT_HEADER_BYTES,
            next_seq: self.next_seq,
            chain: self.chain,
        };
        Ok(())
    }

    /// Rotates when the segment is full, or older than its maximum age. Call between groups,
    /// with nothing unsynced.
    pub fn rotate_if_full(&mut self) -> Result<(), StoreError> {
        let old = self
            .segment_started
            .elapsed()
            .is_ok_and(|age| age >= self.max_segment_age);
        let full = self.synced.bytes >= self.max_segment_bytes;
        if (full || old) && self.synced.next_seq > self.first_seq() {
            self.start_segment()?;
        }
        Ok(())
    }

    /// Sets the age after which a segment is rotated when not full (tests).
    #[cfg(test)]
    pub(crate) fn set_max_segment_age(&mut self, age: Duration) {
        self.max_segment_age = age;
    }

    fn first_seq(&self) -> u64 {
        self.path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Appends one record (buffered: call [`WalWriter::sync`] before acknowledging it).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge(payload.len()));
        }
        let seq = self.next_seq;
        let chain = next_chain(&self.chain, seq, payload);
        self.buf
            .extend_from_slice(&record_header(seq, &chain, payload));
        self.buf.extend_from_slice(payload);
        self.chain = chain;
        self.next_seq += 1;
        if self.buf.len() >= BUFFER_BYTES {
            self.write_out()?;
        }
        Ok(seq)
    }

    pub(crate) fn write_out(&mut self) -> Result<(), StoreError> {
        let file = self.file.as_mut().ok_or(StoreError::Closed)?;
        file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes and fsyncs: every record appended so far survives a crash.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.write_out()?;
        self.file.as_ref().ok_or(StoreError::Closed)?.sync_data()?;
        self.total_bytes += self.written;
        self.synced = Synced {
            bytes: self.synced.bytes + self.written,
            next_seq: self.next_seq,
            chain: self.chain,
        };
        self.written = 0;
        Ok(())
    }

    /// After a failed write or sync: forgets everything since the last sync, cuts the segment
    /// back to it and reopens the file. Fails (and is tried again later) while the disk still
    /// refuses.
    pub fn recover(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.written = 0;
        self.next_seq = self.synced.next_seq;
        self.chain = self.synced.chain;
        self.file = None;
        let mut file = OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(self.synced.bytes)?;
        file.sync_all()?;
        file.seek(SeekFrom::Start(self.synced.bytes))?;
        self.file = Some(file);
        Ok(())
    }

    /// Whether the writer must [`WalWriter::recover`] before it can write.
    pub fn needs_recovery(&self) -> bool {
        self.file.is_none() || self.written > 0 || !self.buf.is_empty()
    }

    /// Continues numbering at `seq` (records before it were lost; only for migration).
    pub fn skip_to(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last synced record.
    pub fn synced_seq(&self) -> u64 {
        self.synced.next_seq - 1
    }

    /// Synced bytes on disk over all segments.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// What a full read of one segment found.
struct Scan {
    has_header: bool,
    next_seq: u64,
    chain: Chain,
    /// Bytes up to the end of the last good record.
    valid_bytes: u64,
    damage: Vec<WalDamage>,
}

fn scan(path: &Path, first: u64) -> Result<Scan, StoreError> {
    let head = read_head(path)?;
    let mut out = Scan {
        has_header: false,
        next_seq: first,
        chain: GENESIS,
        valid_bytes: 0,
        damage: Vec::new(),
    };
    if head.len() < SEGMENT_HEADER_BYTES as usize {
        return Ok(out); // created, header not yet written: empty
    }
    match segment_kind(&head) {
        SegmentKind::Current(_) | SegmentKind::Sealed(..) => {}
        SegmentKind::Newer(version) => {
            return Err(StoreError::NewerFormat {
                path: path.to_owned(),
                found: u32::from(version),
            });
        }
        SegmentKind::V1 => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                offset: 0,
                reason: "a segment of the first log format after migration".into(),
            });
        }
    }
    out.has_header = true;
    out.valid_bytes = SEGMENT_HEADER_BYTES;
    let mut cursor = Cursor::open(path)?;
    let mut bad: Option<(u64, &'static str)> = None;
    loop {
        match cursor.next()? {
            Found::Record {
                seq,
                chain,
                payload,
                offset,
            } => {
                if let Some((at, reason)) = bad.take() {
                    out.damage.push(WalDamage {
                        path: path.to_owned(),
                        offset: at,
                        reason: reason.into(),
                        first_lost: out.next_seq,
                        resumed_at: seq.max(out.next_seq),
                    });
                }
                out.next_seq = seq + 1;
                out.chain = chain;
                out.valid_bytes =
                    offset + (super::format::RECORD_HEADER_BYTES + payload.len()) as u64;
            }
            Found::End | Found::Incomplete => break,
            Found::Bad(reason) => {
                bad.get_or_insert((cursor.offset(), reason));
                if !cursor.resync()? {
                    break;
                }
            }
        }
    }
    Ok(out)
}
