//! Reads the records of one segment file in order and, after damage, finds the next good one.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use super::format::{
    Chain, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SYNC, SegmentKind, find_sync, parse_header,
    read_head, segment_kind,
};
use super::sealed::BlockCursor;

/// A cursor over a plain segment or a sealed (compressed) one, told apart by the header.
pub(crate) enum Cursor {
    Plain(SegmentCursor),
    Sealed(BlockCursor),
}

impl Cursor {
    pub fn open(path: &Path) -> std::io::Result<Cursor> {
        Ok(match segment_kind(&read_head(path)?) {
            SegmentKind::Sealed(_, version) => Cursor::Sealed(BlockCursor::open(path, version)?),
            _ => Cursor::Plain(SegmentCursor::open(path, true)?),
        })
    }

    pub fn next(&mut self) -> std::io::Result<Found> {
        match self {
            Cursor::Plain(c) => c.next(),
            Cursor::Sealed(c) => c.next(),
        }
    }

    pub fn resync(&mut self) -> std::io::Result<bool> {
        match self {
            Cursor::Plain(c) => c.resync(),
            Cursor::Sealed(c) => c.resync(),
        }
    }

    pub fn offset(&self) -> u64 {
        match self {
            Cursor::Plain(c) => c.offset(),
            Cursor::Sealed(c) => c.offset(),
        }
    }

    /// Sealed segments never change, so only a plain one has read-ahead to forget.
    pub fn forget_read_ahead(&mut self) -> std::io::Result<()> {
        match self {
            Cursor::Plain(c) => c.forget_read_ahead(),
            Cursor::Sealed(_) => Ok(()),
        }
    }

    pub fn seek(&mut self, offset: u64) -> std::io::Result<()> {
        match self {
            Cursor::Plain(c) => c.seek(offset),
            Cursor::Sealed(_) => Ok(()),
        }
    }
}

/// Bytes read from the file at once.
const READ_BYTES: usize = 1 << 20;

/// What the cursor found at its position.
pub(crate) enum Found {
    Record {
        seq: u64,
        chain: Chain,
        payload: Vec<u8>,
        /// Where the record starts in the file.
        offset: u64,
    },
    /// The file ends exactly here.
    End,
    /// The file ends inside a record (a write in progress, or a torn one).
    Incomplete,
    /// These bytes are not a good record.
    Bad(&'static str),
}

pub(crate) struct SegmentCursor {
    file: File,
    buf: Vec<u8>,
    /// Next unread byte in `buf`.
    start: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
}

impl SegmentCursor {
    /// Opens a segment positioned at its first record.
    pub fn open(path: &Path, skip_header: bool) -> std::io::Result<SegmentCursor> {
        let file = File::open(path)?;
        let mut cursor = SegmentCursor {
            file,
            buf: Vec::new(),
            start: 0,
            buf_offset: 0,
        };
        if skip_header {
            cursor.seek(SEGMENT_HEADER_BYTES)?;
        }
        Ok(cursor)
    }

    /// File offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.buf_offset + self.start as u64
    }

    /// Forgets what was read ahead, so the next read sees the file as it is now (the writer
    /// may have cut and rewritten bytes past its last synced record).
    pub fn forget_read_ahead(&mut self) -> std::io::Result<()> {
        let at = self.offset();
        self.seek(at)
    }

    pub fn seek(&mut self, offset: u64) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.buf.clear();
        self.start = 0;
        self.buf_offset = offset;
        Ok(())
    }

    /// Makes at least `n` unread bytes available, or as many as the file has; returns how many.
    fn fill(&mut self, n: usize) -> std::io::Result<usize> {
        if self.buf.len() - self.start >= n {
            return Ok(self.buf.len() - self.start);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.buf_offset += self.start as u64;
            self.start = 0;
        }
        while self.buf.len() < n {
            let old = self.buf.len();
            self.buf.resize(old + (n - old).max(READ_BYTES), 0);
            let got = loop {
                match self.file.read(&mut self.buf[old..]) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + got);
            if got == 0 {
                break;
            }
        }
        Ok(self.buf.len())
    }

    /// The record at the cursor; the cursor moves past it only when it is good.
    pub fn next(&mut self) -> std::io::Result<Found> {
        let offset = self.offset();
        let available = self.fill(RECORD_HEADER_BYTES)?;
        if available == 0 {
            return Ok(Found::End);
        }
        if available < RECORD_HEADER_BYTES {
            return Ok(
                if self.buf[self.start..]
                    .iter()
                    .zip(SYNC)
                    .all(|(a, b)| *a == b)
                {
                    Found::Incomplete
                } else {
                    Found::Bad("no record starts here")
                },
            );
        }
        let header = match parse_header(&self.buf[self.start..self.start + RECORD_HEADER_BYTES]) {
            Ok(h) => h,
            Err(reason) => return Ok(Found::Bad(reason)),
        };
        let whole = RECORD_HEADER_BYTES + header.len;
        if self.fill(whole)? < whole {
            return Ok(Found::Incomplete);
        }
        let payload = &self.buf[self.start + RECORD_HEADER_BYTES..self.start + whole];
        if !header.check(payload) {
            return Ok(Found::Bad("checksum mismatch"));
        }
        let payload = payload.to_vec();
        self.start += whole;
        Ok(Found::Record {
            seq: header.seq,
            chain: header.chain,
            payload,
            offset,
        })
    }

    /// Moves past a bad byte to the next sync marker; false when the file ends first (the
    /// cursor then waits just before the end, in case the file grows).
    pub fn resync(&mut self) -> std::io::Result<bool> {
        self.fill(1)?;
        if self.start < self.buf.len() {
            self.start += 1;
        }
        loop {
            if let Some(i) = find_sync(&self.buf[self.start..]) {
                self.start += i;
                return Ok(true);
            }
            // Keep a possible marker's beginning, read on.
            let keep = (SYNC.len() - 1).min(self.buf.len() - self.start);
            self.start = self.buf.len() - keep;
            let before = self.buf.len() - self.start;
            if self.fill(before + 1)? <= before {
                return Ok(false);
            }
        }
    }
}
