//! The write-ahead log: every accepted event is appended here, and synced, before anyone is told
//! it was accepted. The index is a view built from the log.
//!
//! A log is a directory of segment files named after the sequence number of their first record
//! (`00000000000000000001.wal`). A record is
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of (seq, payload) | u64 LE seq | payload
//! ```
//!
//! Sequence numbers start at 1 and have no gaps. At open, a torn tail (a record cut short or
//! failing its checksum at the very end of the last segment, as a crash mid-write leaves it) is
//! cut off: it was never synced, so nobody was told it was accepted.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

const HEADER_BYTES: usize = 16;
/// A record bigger than this is corruption, not data (events are bounded far below it).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub struct WalWriter {
    dir: PathBuf,
    file: BufWriter<File>,
    segment_bytes: u64,
    max_segment_bytes: u64,
    next_seq: u64,
    /// Bytes on disk over all segments.
    total_bytes: u64,
}

/// What opening the log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOpened {
    pub next_seq: u64,
    /// Bytes cut from the end of the last segment (a torn, never-acknowledged write).
    pub truncated_bytes: u64,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Segments of the log, oldest first, with the sequence number of their first record.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// One record read back, or why reading stopped.
enum ReadOutcome {
    Record(u64, Vec<u8>),
    End,
    Bad(String),
}

fn read_record(reader: &mut impl Read) -> std::io::Result<ReadOutcome> {
    let mut header = [0u8; HEADER_BYTES];
    match read_full(reader, &mut header)? {
        0 => return Ok(ReadOutcome::End),
        n if n < HEADER_BYTES => return Ok(ReadOutcome::Bad("record header cut short".into())),
        _ => {}
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD_BYTES {
        return Ok(ReadOutcome::Bad(format!(
            "record length {len} is impossible"
        )));
    }
    let mut payload = vec![0u8; len];
    if read_full(reader, &mut payload)? < len {
        return Ok(ReadOutcome::Bad("record payload cut short".into()));
    }
    if checksum(seq, &payload) != crc {
        return Ok(ReadOutcome::Bad(format!(
            "checksum mismatch in record {seq}"
        )));
    }
    Ok(ReadOutcome::Record(seq, payload))
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

impl WalWriter {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path, max_segment_bytes: u64) -> Result<(WalWriter, WalOpened), StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let segments = segments(dir)?;
        let mut total_bytes = 0;
        for (_, path) in &segments {
            total_bytes += fs::metadata(path)?.len();
        }
        let (path, next_seq, valid_bytes, truncated_bytes) = match segments.last() {
            None => (dir.join(segment_name(1)), 1, 0, 0),
            Some((first, path)) => {
                let len = fs::metadata(path)?.len();
                let mut reader = BufReader::new(File::open(path)?);
                let (mut next, mut valid) = (*first, 0u64);
                loop {
                    match read_record(&mut reader)? {
                        ReadOutcome::Record(seq, payload) if seq == next => {
                            next += 1;
                            valid += (HEADER_BYTES + payload.len()) as u64;
                        }
                        _ => break,
                    }
                }
                (path.clone(), next, valid, len - valid)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::DataDir {
                path: path.clone(),
                source,
            })?;
        if truncated_bytes > 0 {
            file.set_len(valid_bytes)?;
            file.sync_all()?;
            total_bytes -= truncated_bytes;
        }
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.seek(SeekFrom::Start(valid_bytes))?;
        let writer = WalWriter {
            dir: dir.to_owned(),
            file,
            segment_bytes: valid_bytes,
            max_segment_bytes,
            next_seq,
            total_bytes,
        };
        Ok((
            writer,
            WalOpened {
                next_seq,
                truncated_bytes,
            },
        ))
    }

    /// Appends one record (buffered: call [`WalWriter::sync`] before acknowledging it).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        assert!(
            payload.len() <= MAX_RECORD_BYTES,
            "events are bounded before the log"
        );
        if self.segment_bytes >= self.max_segment_bytes {
            self.rotate()?;
        }
        let seq = self.next_seq;
        let mut header = [0u8; HEADER_BYTES];
        header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&checksum(seq, payload).to_le_bytes());
        header[8..16].copy_from_slice(&seq.to_le_bytes());
        self.file.write_all(&header)?;
        self.file.write_all(payload)?;
        let written = (HEADER_BYTES + payload.len()) as u64;
        self.segment_bytes += written;
        self.total_bytes += written;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Flushes and fsyncs: every record appended so far survives a crash.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // The new name must survive a crash too, or recovery would miss the segment.
        File::open(&self.dir)?.sync_all()?;
        self.file = BufWriter::with_capacity(1 << 20, file);
        self.segment_bytes = 0;
        Ok(())
    }

    /// Sequence number the next record will get (the last one written is this minus one).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// Reads the log forward from a sequence number; it never reads past `until` (the last synced
/// record), so it can follow a log that is being written.
pub struct WalReader {
    dir: PathBuf,
    reader: Option<(PathBuf, BufReader<File>, u64)>,
    next_seq: u64,
}

/// What [`WalReader::next`] found.
#[derive(Debug)]
pub enum WalRead {
    Record(u64, Vec<u8>),
    /// Every record up to `until` has been read.
    CaughtUp,
    /// A damaged stretch was skipped; reading continues after it.
    Damaged(WalDamage),
}

/// A record that could not be read: where, and why. The reader moves on to the next segment.
#[derive(Debug)]
pub struct WalDamage {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// First sequence number the reader continues from.
    pub resumed_at: u64,
}

impl WalReader {
    pub fn new(dir: &Path, from_seq: u64) -> WalReader {
        WalReader {
            dir: dir.to_owned(),
            reader: None,
            next_seq: from_seq.max(1),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The next record with seq ≤ `until`. Damage in a segment is reported once and the reader
    /// skips to the following segment.
    pub fn next(&mut self, until: u64) -> Result<WalRead, StoreError> {
        loop {
            if self.next_seq > until {
                return Ok(WalRead::CaughtUp);
            }
            if self.reader.is_none() {
                self.open_segment_for(self.next_seq)?;
            }
            let (path, reader, offset) = self.reader.as_mut().expect("opened above");
            match read_record(reader)? {
                ReadOutcome::Record(seq, payload) => {
                    *offset += (HEADER_BYTES + payload.len()) as u64;
                    if seq < self.next_seq {
                        continue; // seeking forward inside the segment
                    }
                    if seq != self.next_seq {
                        let damage = WalDamage {
                            path: path.clone(),
                            offset: *offset,
                            reason: format!("expected record {} but found {seq}", self.next_seq),
                            resumed_at: seq + 1,
                        };
                        self.next_seq = seq + 1;
                        return Ok(WalRead::Damaged(damage));
                    }
                    self.next_seq += 1;
                    return Ok(WalRead::Record(seq, payload));
                }
                ReadOutcome::End => {
                    // This segment is done; the next one starts at next_seq.
                    let current = path.clone();
                    self.reader = None;
                    let next = self.dir.join(segment_name(self.next_seq));
                    let later = segments(&self.dir)?.into_iter().any(|(_, p)| p > current);
                    if next == current || !later {
                        // Everything written so far has been read (the log may be empty, or
                        // the writer may still be appending to this segment).
                        return Ok(WalRead::CaughtUp);
                    }
                    if !next.exists() {
                        return Ok(WalRead::Damaged(
                            self.skip_to_next_segment("segment ends early".into())?,
                        ));
                    }
                }
                ReadOutcome::Bad(reason) => {
                    return Ok(WalRead::Damaged(self.skip_to_next_segment(reason)?));
                }
            }
        }
    }

    fn skip_to_next_segment(&mut self, reason: String) -> Result<WalDamage, StoreError> {
        let (path, offset) = match self.reader.take() {
            Some((path, _, offset)) => (path, offset),
            None => (self.dir.clone(), 0),
        };
        let later = segments(&self.dir)?
            .into_iter()
            .find(|(first, _)| *first > self.next_seq);
        let resumed_at = match later {
            Some((first, _)) => first,
            // Nothing after it: wait at the same place (the writer may still be appending).
            None => self.next_seq,
        };
        self.next_seq = resumed_at;
        Ok(WalDamage {
            path,
            offset,
            reason,
            resumed_at,
        })
    }

    fn open_segment_for(&mut self, seq: u64) -> Result<(), StoreError> {
        let segments = segments(&self.dir)?;
        let Some((_, path)) = segments.iter().rev().find(|(first, _)| *first <= seq) else {
            return Err(StoreError::Corrupt {
                path: self.dir.clone(),
                offset: 0,
                reason: format!("no segment holds record {seq}"),
            });
        };
        let file = File::open(path)?;
        self.reader = Some((path.clone(), BufReader::with_capacity(1 << 20, file), 0));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(dir: &Path, from: u64, until: u64) -> Vec<(u64, Vec<u8>)> {
        let mut reader = WalReader::new(dir, from);
        let mut out = Vec::new();
        while let WalRead::Record(seq, payload) = reader.next(until).expect("readable") {
            out.push((seq, payload));
        }
        out
    }

    #[test]
    fn appends_rotate_and_read_back_from_any_point() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, opened) = WalWriter::open(dir.path(), 100).unwrap();
        assert_eq!(opened.next_seq, 1);
        for i in 0..50u32 {
            wal.append(format!("event {i}").as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        assert!(
            segments(dir.path()).unwrap().len() > 5,
            "small segments rotate"
        );
        let all = read_all(dir.path(), 1, 50);
        assert_eq!(all.len(), 50);
        assert_eq!(all[49], (50, b"event 49".to_vec()));
        let tail = read_all(dir.path(), 37, 40);
        assert_eq!(
            tail.iter().map(|r| r.0).collect::<Vec<_>>(),
            [37, 38, 39, 40]
        );
    }

    #[test]
    fn reading_an_empty_or_finished_log_to_no_bound_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalWriter::open(dir.path(), 1 << 20).unwrap();
        let mut reader = WalReader::new(dir.path(), 1);
        assert!(matches!(reader.next(u64::MAX).unwrap(), WalRead::CaughtUp));
        wal.append(b"one").unwrap();
        wal.sync().unwrap();
        assert!(matches!(
            reader.next(u64::MAX).unwrap(),
            WalRead::Record(1, _)
        ));
        assert!(matches!(reader.next(u64::MAX).unwrap(), WalRead::CaughtUp));
    }

    #[test]
    fn a_torn_tail_is_cut_and_numbering_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalWriter::open(dir.path(), 1 << 20).unwrap();
        wal.append(b"one").unwrap();
        wal.append(b"two").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[7, 0, 0, 0, 1, 2]).unwrap(); // half a header
        drop(file);
        let (mut wal, opened) = WalWriter::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            opened,
            WalOpened {
                next_seq: 3,
                truncated_bytes: 6
            }
        );
        wal.append(b"three").unwrap();
        wal.sync().unwrap();
        let all = read_all(dir.path(), 1, 3);
        assert_eq!(all[2], (3, b"three".to_vec()));
    }

    #[test]
    fn a_corrupt_middle_segment_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalWriter::open(dir.path(), 40).unwrap();
        for i in 0..12u32 {
            wal.append(format!("record-{i:04}").as_bytes()).unwrap();
        }
        wal.sync().unwrap();
        let segs = segments(dir.path()).unwrap();
        let (first_of_second, second) = &segs[1];
        let mut bytes = fs::read(second).unwrap();
        bytes[20] ^= 0xff; // inside the first payload of the second segment
        fs::write(second, bytes).unwrap();
        let mut reader = WalReader::new(dir.path(), 1);
        let mut seen = Vec::new();
        let mut damage = Vec::new();
        loop {
            match reader.next(12).unwrap() {
                WalRead::Record(seq, _) => seen.push(seq),
                WalRead::CaughtUp => break,
                WalRead::Damaged(d) => damage.push(d),
            }
        }
        assert_eq!(damage.len(), 1);
        assert!(damage[0].reason.contains("checksum"), "{:?}", damage[0]);
        assert!(!seen.contains(first_of_second));
        assert_eq!(*seen.last().unwrap(), 12, "later segments still read");
    }

    proptest! {
        // Model test: whatever is appended and synced reads back identically after a reopen,
        // whatever garbage a crash left after it.
        #[test]
        fn synced_records_survive_reopen(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..40),
            garbage in proptest::collection::vec(any::<u8>(), 0..40),
            segment in 32u64..512,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = WalWriter::open(dir.path(), segment).unwrap();
            for p in &payloads {
                wal.append(p).unwrap();
            }
            wal.sync().unwrap();
            drop(wal);
            let (_, last) = segments(dir.path()).unwrap().pop().unwrap();
            let mut file = OpenOptions::new().append(true).open(&last).unwrap();
            file.write_all(&garbage).unwrap();
            drop(file);
            let (wal, opened) = WalWriter::open(dir.path(), segment).unwrap();
            prop_assert_eq!(opened.next_seq, payloads.len() as u64 + 1);
            prop_assert_eq!(wal.next_seq(), payloads.len() as u64 + 1);
            let back: Vec<Vec<u8>> = read_all(dir.path(), 1, payloads.len() as u64)
                .into_iter().map(|r| r.1).collect();
            prop_assert_eq!(back, payloads);
        }
    }
}
