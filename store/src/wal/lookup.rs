//! Reads log records by sequence number. Search results come from here: the log holds each
//! event once, and the index holds only what is searched, with `_seq` saying where the event
//! is in the log.
//!
//! The first lookup in a segment maps it: the offset of every record of a plain segment, the
//! first sequence number of every block of a sealed one (from the block headers; a version-2
//! block is decompressed once for it). Decompressed blocks are kept in a small cache, since the
//! results of one search often lie in the same few blocks; a record is put together from its
//! block's fields only when asked for.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cursor::{Found, SegmentCursor};
use super::format::{
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SegmentKind, parse_header, read_head, segment_kind,
};
use super::sealed::{BlockReader, block_span, next_block_marker, v2_block_records};
use super::segments;
use crate::error::StoreError;

/// Decompressed blocks kept (64 KiB each, about).
const CACHED_BLOCKS: usize = 64;

pub struct LogLookup {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    maps: HashMap<PathBuf, SegmentMap>,
    /// Plain segments mapped afresh during the current call: once is enough (a damaged
    /// record must not make every lookup read the whole segment again).
    remapped: std::collections::HashSet<PathBuf>,
    /// Most recently used first: (segment, block offset) and its records.
    cache: VecDeque<((PathBuf, u64), Arc<CachedBlock>)>,
}

enum CachedBlock {
    /// Decompressed, not decoded: a record is put together when asked for.
    ByField {
        first_seq: u64,
        count: u64,
        raw: Vec<u8>,
    },
    /// A block of format 2: (seq, payload), in order.
    Whole(Vec<(u64, Vec<u8>)>),
}

impl CachedBlock {
    fn payload(&self, seq: u64) -> Option<Vec<u8>> {
        match self {
            CachedBlock::ByField {
                first_seq,
                count,
                raw,
            } => {
                let i = seq.checked_sub(*first_seq).filter(|i| i < count)?;
                super::columns::decode_one(raw, usize::try_from(i).ok()?)
            }
            CachedBlock::Whole(records) => {
                let i = records.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
                Some(records[i].1.clone())
            }
        }
    }
}

enum SegmentMap {
    /// Every record read so far: (seq, offset), and the offset where reading stopped.
    Plain {
        file: File,
        records: Vec<(u64, u64)>,
        end: u64,
    },
    /// (first seq, offset) of every good block.
    Sealed {
        reader: BlockReader,
        blocks: Vec<(u64, u64)>,
    },
}

impl LogLookup {
    pub fn new(dir: &Path) -> LogLookup {
        LogLookup {
            dir: dir.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    /// The payloads of records `seqs`, in the same order; `None` for a record the log does not
    /// hold (removed by retention meanwhile, or damaged).
    pub fn payloads(&self, seqs: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.remapped.clear();
        let mut out = vec![None; seqs.len()];
        let mut missing: Vec<usize> = (0..seqs.len()).collect();
        // A segment sealed (or removed by retention) between listing and reading is looked up
        // again in a fresh listing; only what is still missing then is missing.
        for attempt in 0..3 {
            let listed = segments(&self.dir)?;
            state.forget_unlisted(&listed);
            let mut still = Vec::new();
            for i in missing {
                let seq = seqs[i];
                let Some((_, path)) = listed.iter().rev().find(|(first, _)| *first <= seq) else {
                    continue;
                };
                match state.payload(path, seq) {
                    Ok(Some(payload)) => out[i] = Some(payload),
                    Ok(None) => still.push(i),
                    Err(e) => {
                        if attempt == 2 {
                            tracing::warn!(seq, segment = %path.display(), error = %e, "a log record could not be read for a search result");
                        }
                        if state.remapped.insert(path.clone()) {
                            state.maps.remove(path);
                        }
                        still.push(i);
                    }
                }
            }
            missing = still;
            if missing.is_empty() {
                break;
            }
        }
        Ok(out)
    }
}

impl State {
    /// Forgets segments that were sealed or removed since they were mapped.
    fn forget_unlisted(&mut self, listed: &[(u64, PathBuf)]) {
        // Compared as bytes: `Path`'s `==` parses both into components, which made this the
        // largest cost of reading a page of results from a log of a hundred segments.
        let listed: std::collections::HashSet<&std::ffi::OsStr> =
            listed.iter().map(|(_, p)| p.as_os_str()).collect();
        self.maps
            .retain(|path, _| listed.contains(path.as_os_str()));
        self.cache
            .retain(|((path, _), _)| listed.contains(path.as_os_str()));
    }

    fn payload(&mut self, path: &Path, seq: u64) -> std::io::Result<Option<Vec<u8>>> {
        if !self.maps.contains_key(path) {
            let map = SegmentMap::open(path)?;
            self.maps.insert(path.to_owned(), map);
        }
        let map = self.maps.get_mut(path).expect("inserted above");
        let block_at = match map {
            SegmentMap::Plain { file, records, end } => {
                if records.last().is_none_or(|(last, _)| *last < seq) {
                    extend_plain(path, records, end)?;
                }
                let Ok(i) = records.binary_search_by_key(&seq, |(s, _)| *s) else {
                    return Ok(None);
                };
                let found = read_plain(file, records[i].1, seq)?;
                if found.is_none() && self.remapped.insert(path.to_owned()) {
                    // The writer cut bytes past its last synced record and wrote again: map
                    // the segment afresh next time.
                    self.maps.remove(path);
                }
                return Ok(found);
            }
            SegmentMap::Sealed { blocks, .. } => {
                let i = blocks.partition_point(|(first, _)| *first <= seq);
                if i == 0 {
                    return Ok(None);
                }
                blocks[i - 1].1
            }
        };
        let block = self.block(path, block_at)?;
        Ok(block.and_then(|b| b.payload(seq)))
    }

    fn block(&mut self, path: &Path, at: u64) -> std::io::Result<Option<Arc<CachedBlock>>> {
        if let Some(i) = self
            .cache
            .iter()
            .position(|((p, offset), _)| *offset == at && p.as_os_str() == path.as_os_str())
        {
            let entry = self.cache.remove(i).expect("found");
            let block = entry.1.clone();
            self.cache.push_front(entry);
            return Ok(Some(block));
        }
        let Some(SegmentMap::Sealed { reader, .. }) = self.maps.get_mut(path) else {
            return Ok(None);
        };
        let Some(cached) = load_block(reader, at)? else {
            return Ok(None);
        };
        let cached = Arc::new(cached);
        self.cache
            .push_front(((path.to_owned(), at), cached.clone()));
        self.cache.truncate(CACHED_BLOCKS);
        Ok(Some(cached))
    }
}

impl SegmentMap {
    fn open(path: &Path) -> std::io::Result<SegmentMap> {
        let file = File::open(path)?;
        Ok(match segment_kind(&read_head(path)?) {
            SegmentKind::Sealed(_, version) => {
                let mut reader = BlockReader::new(file, version)?;
                let blocks = map_blocks(&mut reader)?;
                SegmentMap::Sealed { reader, blocks }
            }
            _ => SegmentMap::Plain {
                file,
                records: Vec::new(),
                end: SEGMENT_HEADER_BYTES,
            },
        })
    }
}

/// Maps the records of a plain segment from `end` on, as far as they are written.
fn extend_plain(path: &Path, records: &mut Vec<(u64, u64)>, end: &mut u64) -> std::io::Result<()> {
    let mut cursor = SegmentCursor::open(path, false)?;
    cursor.seek(*end)?;
    loop {
        match cursor.next()? {
            Found::Record { seq, offset, .. } => {
                if records.last().is_none_or(|(last, _)| *last < seq) {
                    records.push((seq, offset));
                }
                *end = cursor.offset();
            }
            Found::Bad(_) => {
                if !cursor.resync()? {
                    return Ok(());
                }
                *end = cursor.offset();
            }
            Found::End | Found::Incomplete => return Ok(()),
        }
    }
}

/// The payload of the plain record at `offset`, when it is still record `seq` and whole.
fn read_plain(file: &File, offset: u64, seq: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    file.read_exact_at(&mut header, offset)?;
    let Ok(parsed) = parse_header(&header) else {
        return Ok(None);
    };
    if parsed.seq != seq {
        return Ok(None);
    }
    let mut payload = vec![0u8; parsed.len];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER_BYTES as u64)?;
    Ok(parsed.check(&payload).then_some(payload))
}

/// (first seq, offset) of every good block of a sealed segment; a damaged one is passed over
/// to the next block marker.
fn map_blocks(reader: &mut BlockReader) -> std::io::Result<Vec<(u64, u64)>> {
    let mut blocks = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    loop {
        let found = if reader.version >= 3 {
            block_span(&reader.file, at)?
        } else {
            reader.read(at)?.map(|r| {
                r.and_then(|block| {
                    let first = v2_block_records(&block.raw)?
                        .first()
                        .map(|(seq, _, _)| *seq)
                        .ok_or("empty block")?;
                    Ok((first, block.next))
                })
            })
        };
        match found {
            None => return Ok(blocks),
            Some(Ok((first, next))) => {
                blocks.push((first, at));
                at = next;
            }
            Some(Err(_)) => match next_block_marker(&reader.file, at + 1)? {
                Ok(next) => at = next,
                Err(_) => return Ok(blocks),
            },
        }
    }
}

fn load_block(reader: &mut BlockReader, at: u64) -> std::io::Result<Option<CachedBlock>> {
    let Some(Ok(block)) = reader.read(at)? else {
        return Ok(None);
    };
    Ok(Some(match block.records {
        Some(head) => CachedBlock::ByField {
            first_seq: head.first_seq,
            count: u64::from(head.count),
            raw: block.raw,
        },
        None => match v2_block_records(&block.raw) {
            Ok(found) => CachedBlock::Whole(
                found
                    .into_iter()
                    .map(|(seq, _, range)| (seq, block.raw[range].to_vec()))
                    .collect(),
            ),
            Err(_) => return Ok(None),
        },
    }))
}
