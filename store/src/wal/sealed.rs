//! Sealed segments, compressed: once a segment is full and a newer one is being written, its
//! records are rewritten as zstd blocks of about 64 KiB each (cut at record boundaries, so a
//! block holds whole records in the ordinary format). Each block is framed like a record, so
//! damage costs the records of one block, and a reader finds the next block after it.
//!
//! ```text
//! segment:  "MMRWLZ" | u16 LE format version | u64 LE first seq                  (16 bytes)
//! block:    sync marker F7 5A 42 1E | u32 LE compressed length | u32 LE raw length
//!           | u32 LE CRC-32 of the compressed bytes | zstd frame
//! ```

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::cursor::{Found, SegmentCursor};
use super::format::{RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, find_sync_of, parse_header};
use crate::error::StoreError;

pub const SEALED_MAGIC: &[u8; 6] = b"MMRWLZ";
pub const BLOCK_SYNC: [u8; 4] = [0xF7, 0x5A, 0x42, 0x1E];
const BLOCK_HEADER_BYTES: usize = 16;
/// Raw bytes per block, about: a damaged block costs this much of the log.
const BLOCK_RAW_BYTES: usize = 64 << 10;
/// Larger lengths in a block header are damage.
const MAX_BLOCK_BYTES: usize = 4 << 20;
const LEVEL: i32 = 3;

pub fn sealed_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    super::format::header_with(SEALED_MAGIC, first_seq)
}

/// Reads the records of a compressed segment, block by block.
pub(crate) struct BlockCursor {
    file: File,
    /// File offset of the next block header.
    next_block: u64,
    /// File offset of the block whose records are in `raw`.
    block_offset: u64,
    raw: Vec<u8>,
    start: usize,
}

impl BlockCursor {
    pub fn open(path: &Path) -> std::io::Result<BlockCursor> {
        Ok(BlockCursor {
            file: File::open(path)?,
            next_block: SEGMENT_HEADER_BYTES,
            block_offset: SEGMENT_HEADER_BYTES,
            raw: Vec::new(),
            start: 0,
        })
    }

    pub fn offset(&self) -> u64 {
        self.block_offset
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.seek(SeekFrom::Start(offset))?;
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    /// Loads the next block; `Ok(None)` at the end of the file.
    fn load(&mut self) -> std::io::Result<Option<Result<(), &'static str>>> {
        let mut header = [0u8; BLOCK_HEADER_BYTES];
        let at = self.next_block;
        let n = self.read_at(at, &mut header)?;
        if n == 0 {
            return Ok(None);
        }
        self.block_offset = at;
        self.raw.clear();
        self.start = 0;
        if n < BLOCK_HEADER_BYTES || header[0..4] != BLOCK_SYNC {
            return Ok(Some(Err("no block starts here")));
        }
        let field = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (compressed, raw_len, crc) = (field(4) as usize, field(8) as usize, field(12));
        if compressed > MAX_BLOCK_BYTES || raw_len > MAX_BLOCK_BYTES {
            return Ok(Some(Err("impossible block length")));
        }
        let mut bytes = vec![0u8; compressed];
        if self.read_at(at + BLOCK_HEADER_BYTES as u64, &mut bytes)? < compressed {
            return Ok(Some(Err("block cut short")));
        }
        if crc32fast::hash(&bytes) != crc {
            return Ok(Some(Err("block checksum mismatch")));
        }
        match zstd::bulk::decompress(&bytes, raw_len) {
            Ok(raw) if raw.len() == raw_len => self.raw = raw,
            _ => return Ok(Some(Err("block does not decompress"))),
        }
        self.next_block = at + (BLOCK_HEADER_BYTES + compressed) as u64;
        Ok(Some(Ok(())))
    }

    pub fn next(&mut self) -> std::io::Result<Found> {
        loop {
            if self.start < self.raw.len() {
                let rest = &self.raw[self.start..];
                if rest.len() < RECORD_HEADER_BYTES {
                    return Ok(Found::Bad("block ends inside a record"));
                }
                let header = match parse_header(&rest[..RECORD_HEADER_BYTES]) {
                    Ok(h) => h,
                    Err(reason) => return Ok(Found::Bad(reason)),
                };
                let whole = RECORD_HEADER_BYTES + header.len;
                if rest.len() < whole || !header.check(&rest[RECORD_HEADER_BYTES..whole]) {
                    return Ok(Found::Bad("record in a block damaged"));
                }
                let payload = rest[RECORD_HEADER_BYTES..whole].to_vec();
                self.start += whole;
                return Ok(Found::Record {
                    seq: header.seq,
                    chain: header.chain,
                    payload,
                    offset: self.block_offset,
                });
            }
            match self.load()? {
                None => return Ok(Found::End),
                Some(Ok(())) => {}
                Some(Err(reason)) => return Ok(Found::Bad(reason)),
            }
        }
    }

    /// Skips the rest of the current block, and the bytes up to the next block marker.
    pub fn resync(&mut self) -> std::io::Result<bool> {
        self.raw.clear();
        self.start = 0;
        let mut from = self.block_offset + 1;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = self.read_at(from, &mut buf)?;
            if n < BLOCK_SYNC.len() {
                self.next_block = from + n as u64;
                return Ok(false);
            }
            if let Some(i) = find_sync_of(&buf[..n], &BLOCK_SYNC) {
                self.next_block = from + i as u64;
                self.block_offset = self.next_block;
                return Ok(true);
            }
            from += (n - (BLOCK_SYNC.len() - 1)) as u64;
        }
    }
}

/// The compressed file for a plain segment.
pub fn sealed_path(plain: &Path) -> PathBuf {
    plain.with_extension("walz")
}

/// Compresses the sealed plain segment at `path` (first record `first`) into its `.walz`,
/// checks that it reads back record for record, then removes the plain one. A segment with
/// damage in it is left as it is (the damage stays visible to `verify`). Returns the bytes
/// saved, or `None` when the segment was left.
pub(crate) fn seal(path: &Path, first: u64) -> Result<Option<u64>, StoreError> {
    let target = sealed_path(path);
    let tmp = target.with_extension("walz.tmp");
    let mut out = std::io::BufWriter::new(File::create(&tmp)?);
    out.write_all(&sealed_header(first))?;
    let mut cursor = SegmentCursor::open(path, true)?;
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK_RAW_BYTES + (1 << 20));
    let mut records: Vec<(u64, [u8; 32])> = Vec::new();
    let write_block =
        |block: &mut Vec<u8>, out: &mut std::io::BufWriter<File>| -> Result<(), StoreError> {
            if block.is_empty() {
                return Ok(());
            }
            let compressed = zstd::bulk::compress(block, LEVEL)?;
            out.write_all(&BLOCK_SYNC)?;
            out.write_all(&(compressed.len() as u32).to_le_bytes())?;
            out.write_all(&(block.len() as u32).to_le_bytes())?;
            out.write_all(&crc32fast::hash(&compressed).to_le_bytes())?;
            out.write_all(&compressed)?;
            block.clear();
            Ok(())
        };
    loop {
        match cursor.next()? {
            Found::Record {
                seq,
                chain,
                payload,
                ..
            } => {
                if records.last().is_some_and(|(last, _)| seq != last + 1) {
                    drop(out);
                    fs::remove_file(&tmp)?;
                    return Ok(None);
                }
                block.extend_from_slice(&super::format::record_header(seq, &chain, &payload)[..]);
                block.extend_from_slice(&payload);
                records.push((seq, chain));
                if block.len() >= BLOCK_RAW_BYTES {
                    write_block(&mut block, &mut out)?;
                }
            }
            Found::End => break,
            Found::Incomplete | Found::Bad(_) => {
                drop(out);
                fs::remove_file(&tmp)?;
                return Ok(None);
            }
        }
    }
    write_block(&mut block, &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    // Read it back before the original goes.
    let mut check = BlockCursor::open(&tmp)?;
    for (seq, chain) in &records {
        match check.next()? {
            Found::Record {
                seq: s, chain: c, ..
            } if s == *seq && c == *chain => {}
            _ => {
                fs::remove_file(&tmp)?;
                return Err(StoreError::Corrupt {
                    path: tmp,
                    offset: 0,
                    reason: "the compressed segment does not read back".into(),
                });
            }
        }
    }
    let before = fs::metadata(path)?.len();
    let after = fs::metadata(&tmp)?.len();
    fs::rename(&tmp, &target)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    fs::remove_file(path)?;
    File::open(dir)?.sync_all()?;
    Ok(Some(before.saturating_sub(after)))
}
