//! Sealed segments, compressed: once a segment is full and a newer one is being written, its
//! records are rewritten as zstd blocks of about 64 KiB each (cut at record boundaries).
//! Each block is framed like a record, so damage costs the records of one block, and a reader
//! finds the next block after it.
//!
//! ```text
//! segment:  "MMRWLZ" | u16 LE format version | u64 LE first seq                  (16 bytes)
//! block:    sync marker F7 5A 42 1E | u32 LE compressed length | u32 LE raw length
//!           | u32 LE CRC-32 of the fields after it and the compressed bytes (version 2: of the
//!           compressed bytes) | (version 3 and later) u64 LE first seq | u32 LE records
//!           | [32] chain of the first record | [32] chain of the last record
//!           | zstd frame
//! raw, version 3 and 4: the payloads by field, see `columns.rs` (seqs follow from the
//!           first); version 4 may derive event ids again instead of keeping them
//! raw, version 2: whole records in the plain format (52-byte header each)
//! ```
//!
//! A version-3 (or 4) block keeps the chain of its first and last records only: a reader recomputes
//! the ones between, so a record changed inside a block shows as a chain that no longer leads
//! to the block's last record. Its payloads are stored by field (`columns.rs`). Leaving out the
//! per-record header (whose SHA-256 and CRC do not compress) and storing the fields apart took
//! the bench's sealed log from 157 to 76 bytes per event.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::cursor::{Found, SegmentCursor};
use super::format::{
    Chain, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, find_sync_of, next_chain, parse_header,
};
use crate::error::StoreError;

pub const SEALED_MAGIC: &[u8; 6] = b"MMRWLZ";
pub const BLOCK_SYNC: [u8; 4] = [0xF7, 0x5A, 0x42, 0x1E];
const V2_BLOCK_HEADER_BYTES: usize = 16;
const BLOCK_HEADER_BYTES: usize = 16 + 8 + 4 + 32 + 32;
/// Raw bytes per block, about: a damaged block costs this much of the log, and a search
/// result read from a sealed segment costs decompressing one.
const BLOCK_RAW_BYTES: usize = 64 << 10;
/// Larger lengths in a block header are damage.
const MAX_BLOCK_BYTES: usize = 4 << 20;
/// Sealing runs beside ingest: a 64 MiB segment of the bench's events (70,000) seals in 0.43 s
/// at level 3 and 0.79 s at level 7, which saves 5 % more; the CPU matters more.
const LEVEL: i32 = 3;

pub fn sealed_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    super::format::header_with(SEALED_MAGIC, first_seq)
}

/// What a version-3 block header says about its records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockRecords {
    pub first_seq: u64,
    pub count: u32,
    pub chain_first: Chain,
    pub chain_last: Chain,
}

/// One block read from the file and checked against its CRC.
pub(crate) struct Block {
    /// File offset of the block after this one.
    pub next: u64,
    pub raw: Vec<u8>,
    /// `None` in a version-2 segment, whose records carry their own headers.
    pub records: Option<BlockRecords>,
}

fn read_full(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"))
}

/// What reading a block at an offset found: `Ok(None)` at the end of the file, `Some(Err)`
/// says why these bytes are not a good block.
pub(crate) type BlockRead<T> = std::io::Result<Option<Result<T, &'static str>>>;

/// A record of a version-2 block: seq, chain, and where its payload is in the raw bytes.
pub(crate) type V2Record = (u64, Chain, std::ops::Range<usize>);

/// Reads a block header at `at` without decompressing: `(first seq, next block)` of a
/// version-3 block.
pub(crate) fn block_span(file: &File, at: u64) -> BlockRead<(u64, u64)> {
    let mut header = [0u8; BLOCK_HEADER_BYTES];
    let n = read_full(file, at, &mut header)?;
    if n == 0 {
        return Ok(None);
    }
    if n < BLOCK_HEADER_BYTES || header[0..4] != BLOCK_SYNC {
        return Ok(Some(Err("no block starts here")));
    }
    let compressed = u32_at(&header, 4) as usize;
    if compressed > MAX_BLOCK_BYTES {
        return Ok(Some(Err("impossible block length")));
    }
    let first = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    Ok(Some(Ok((
        first,
        at + (BLOCK_HEADER_BYTES + compressed) as u64,
    ))))
}

/// Reads the blocks of one sealed segment, with one decompression context for all of them.
pub(crate) struct BlockReader {
    pub file: File,
    pub version: u16,
    context: zstd::bulk::Decompressor<'static>,
}

impl BlockReader {
    pub fn new(file: File, version: u16) -> std::io::Result<BlockReader> {
        Ok(BlockReader {
            file,
            version,
            context: zstd::bulk::Decompressor::new()?,
        })
    }

    /// Reads and decompresses the block at `at`.
    pub fn read(&mut self, at: u64) -> BlockRead<Block> {
        let (file, version) = (&self.file, self.version);
        let header_bytes = if version >= 3 {
            BLOCK_HEADER_BYTES
        } else {
            V2_BLOCK_HEADER_BYTES
        };
        let mut header = [0u8; BLOCK_HEADER_BYTES];
        let n = read_full(file, at, &mut header[..header_bytes])?;
        if n == 0 {
            return Ok(None);
        }
        if n < header_bytes || header[0..4] != BLOCK_SYNC {
            return Ok(Some(Err("no block starts here")));
        }
        let (compressed, raw_len, crc) = (
            u32_at(&header, 4) as usize,
            u32_at(&header, 8) as usize,
            u32_at(&header, 12),
        );
        if compressed > MAX_BLOCK_BYTES || raw_len > MAX_BLOCK_BYTES {
            return Ok(Some(Err("impossible block length")));
        }
        let mut bytes = vec![0u8; compressed];
        if read_full(file, at + header_bytes as u64, &mut bytes)? < compressed {
            return Ok(Some(Err("block cut short")));
        }
        // In version 3 the CRC covers the header's fields too: a flipped bit in the first
        // seq would otherwise give every record of the block another number.
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[V2_BLOCK_HEADER_BYTES..header_bytes]);
        hasher.update(&bytes);
        if hasher.finalize() != crc {
            return Ok(Some(Err("block checksum mismatch")));
        }
        let raw = match self.context.decompress(&bytes, raw_len) {
            Ok(raw) if raw.len() == raw_len => raw,
            _ => return Ok(Some(Err("block does not decompress"))),
        };
        let records = (version >= 3).then(|| BlockRecords {
            first_seq: u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")),
            count: u32_at(&header, 24),
            chain_first: header[28..60].try_into().expect("32 bytes"),
            chain_last: header[60..92].try_into().expect("32 bytes"),
        });
        Ok(Some(Ok(Block {
            next: at + (header_bytes + compressed) as u64,
            raw,
            records,
        })))
    }
}

/// The payloads of a version-3 block's raw bytes, in order; `Err` when they do not decode to
/// the records the header promises.
pub(crate) fn block_payloads(raw: &[u8], count: u32) -> Result<Vec<Vec<u8>>, &'static str> {
    match super::columns::decode(raw) {
        Some(payloads) if payloads.len() == count as usize => Ok(payloads),
        Some(_) => Err("block holds another number of records than its header says"),
        None => Err("block does not decode"),
    }
}

/// The records of a version-2 block's raw bytes: `(seq, chain, payload range)`.
pub(crate) fn v2_block_records(raw: &[u8]) -> Result<Vec<V2Record>, &'static str> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let rest = &raw[at..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err("block ends inside a record");
        }
        let header = parse_header(&rest[..RECORD_HEADER_BYTES])?;
        let whole = RECORD_HEADER_BYTES + header.len;
        if rest.len() < whole || !header.check(&rest[RECORD_HEADER_BYTES..whole]) {
            return Err("record in a block damaged");
        }
        out.push((
            header.seq,
            header.chain,
            at + RECORD_HEADER_BYTES..at + whole,
        ));
        at += whole;
    }
    Ok(out)
}

/// Reads the records of a compressed segment, block by block.
pub(crate) struct BlockCursor {
    blocks: BlockReader,
    /// File offset of the next block header.
    next_block: u64,
    /// File offset of the block whose records are in `records`.
    block_offset: u64,
    /// The current block's records not yet returned, last first.
    pending: Vec<(u64, Chain, Vec<u8>)>,
}

impl BlockCursor {
    pub fn open(path: &Path, version: u16) -> std::io::Result<BlockCursor> {
        Ok(BlockCursor {
            blocks: BlockReader::new(File::open(path)?, version)?,
            next_block: SEGMENT_HEADER_BYTES,
            block_offset: SEGMENT_HEADER_BYTES,
            pending: Vec::new(),
        })
    }

    pub fn offset(&self) -> u64 {
        self.block_offset
    }

    /// Loads the next block's records; `Ok(None)` at the end of the file.
    fn load(&mut self) -> std::io::Result<Option<Result<(), &'static str>>> {
        let at = self.next_block;
        let block = match self.blocks.read(at)? {
            None => return Ok(None),
            Some(Err(reason)) => {
                self.block_offset = at;
                return Ok(Some(Err(reason)));
            }
            Some(Ok(block)) => block,
        };
        self.block_offset = at;
        let mut records = match block.records {
            None => match v2_block_records(&block.raw) {
                Ok(found) => found
                    .into_iter()
                    .map(|(seq, chain, range)| (seq, chain, block.raw[range].to_vec()))
                    .collect::<Vec<_>>(),
                Err(reason) => return Ok(Some(Err(reason))),
            },
            Some(head) => {
                let payloads = match block_payloads(&block.raw, head.count) {
                    Ok(payloads) => payloads,
                    Err(reason) => return Ok(Some(Err(reason))),
                };
                let last = payloads.len().saturating_sub(1);
                let mut chain = head.chain_first;
                let mut out = Vec::with_capacity(payloads.len());
                for (i, payload) in payloads.into_iter().enumerate() {
                    let seq = head.first_seq + i as u64;
                    // The first and last chains are stored; the ones between follow.
                    chain = match i {
                        0 if last > 0 => head.chain_first,
                        i if i == last => head.chain_last,
                        _ => next_chain(&chain, seq, &payload),
                    };
                    out.push((seq, chain, payload));
                }
                out
            }
        };
        self.next_block = block.next;
        records.reverse();
        self.pending = records;
        Ok(Some(Ok(())))
    }

    pub fn next(&mut self) -> std::io::Result<Found> {
        loop {
            if let Some((seq, chain, payload)) = self.pending.pop() {
                return Ok(Found::Record {
                    seq,
                    chain,
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
        self.pending.clear();
        match next_block_marker(&self.blocks.file, self.block_offset + 1)? {
            Ok(at) => {
                self.next_block = at;
                self.block_offset = at;
                Ok(true)
            }
            Err(end) => {
                self.next_block = end;
                Ok(false)
            }
        }
    }
}

/// The offset of the next block marker at or after `from`: `Ok`, or `Err` with where the
/// file's bytes ran out first.
pub(crate) fn next_block_marker(file: &File, mut from: u64) -> std::io::Result<Result<u64, u64>> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_full(file, from, &mut buf)?;
        if n < BLOCK_SYNC.len() {
            return Ok(Err(from + n as u64));
        }
        if let Some(i) = find_sync_of(&buf[..n], &BLOCK_SYNC) {
            return Ok(Ok(from + i as u64));
        }
        from += (n - (BLOCK_SYNC.len() - 1)) as u64;
    }
}

/// The records of the block being written.
#[derive(Default)]
struct PendingBlock {
    payloads: Vec<Vec<u8>>,
    bytes: usize,
    first_seq: u64,
    chain_first: Chain,
    chain_last: Chain,
}

impl PendingBlock {
    fn push(&mut self, seq: u64, chain: Chain, payload: Vec<u8>) {
        if self.payloads.is_empty() {
            self.first_seq = seq;
            self.chain_first = chain;
        }
        self.chain_last = chain;
        self.bytes += payload.len();
        self.payloads.push(payload);
    }

    fn write(&mut self, out: &mut impl Write) -> Result<(), StoreError> {
        if self.payloads.is_empty() {
            return Ok(());
        }
        let payloads: Vec<&[u8]> = self.payloads.iter().map(Vec::as_slice).collect();
        let raw = super::columns::encode(&payloads);
        let compressed = zstd::bulk::compress(&raw, LEVEL)?;
        let mut fields = Vec::with_capacity(BLOCK_HEADER_BYTES - V2_BLOCK_HEADER_BYTES);
        fields.extend_from_slice(&self.first_seq.to_le_bytes());
        fields.extend_from_slice(&(self.payloads.len() as u32).to_le_bytes());
        fields.extend_from_slice(&self.chain_first);
        fields.extend_from_slice(&self.chain_last);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&fields);
        crc.update(&compressed);
        out.write_all(&BLOCK_SYNC)?;
        out.write_all(&(compressed.len() as u32).to_le_bytes())?;
        out.write_all(&(raw.len() as u32).to_le_bytes())?;
        out.write_all(&crc.finalize().to_le_bytes())?;
        out.write_all(&fields)?;
        out.write_all(&compressed)?;
        self.payloads.clear();
        self.bytes = 0;
        Ok(())
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
    let mut block = PendingBlock::default();
    let mut last_seq: Option<u64> = None;
    loop {
        match cursor.next()? {
            Found::Record {
                seq,
                chain,
                payload,
                ..
            } => {
                if last_seq.is_some_and(|last| seq != last + 1) {
                    drop(out);
                    fs::remove_file(&tmp)?;
                    return Ok(None);
                }
                block.push(seq, chain, payload);
                last_seq = Some(seq);
                if block.bytes >= BLOCK_RAW_BYTES {
                    block.write(&mut out)?;
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
    block.write(&mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    // Read it back, record for record and byte for byte, before the original goes.
    let mut check = BlockCursor::open(&tmp, super::format::FORMAT_VERSION)?;
    let mut original = SegmentCursor::open(path, true)?;
    let same = loop {
        match (original.next()?, check.next()?) {
            (
                Found::Record {
                    seq,
                    chain,
                    payload,
                    ..
                },
                Found::Record {
                    seq: s,
                    chain: c,
                    payload: p,
                    ..
                },
            ) if s == seq && c == chain && p == payload => {}
            (Found::End, Found::End) => break true,
            _ => break false,
        }
    };
    if !same {
        fs::remove_file(&tmp)?;
        return Err(StoreError::Corrupt {
            path: tmp,
            offset: 0,
            reason: "the compressed segment does not read back".into(),
        });
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
