//! The bytes of the log: segment headers, record frames and the hash chain.
//!
//! ```text
//! segment:  "MMRWAL" | u16 LE format version | u64 LE first seq                  (16 bytes)
//! record:   sync marker F7 4D 52 1E | u32 LE payload length | u64 LE seq
//!           | [32] chain = SHA-256(previous chain | seq LE | payload)
//!           | u32 LE CRC-32 of (length, seq, chain, payload) | payload
//! ```
//!
//! The sync marker lets a reader find the next good record after a damaged one; the CRC tells
//! damage from data; the chain tells a record changed, removed or inserted after it was
//! written, even by someone who recomputed the CRC.

use sha2::{Digest, Sha256};

/// Format of the log this build writes; it reads this one, version 3 (whose sealed blocks
/// keep every event id), version 2 (whose sealed blocks keep every record's header), and
/// migrates version 1. Plain segments are the same in versions 2 to 4.
pub const FORMAT_VERSION: u16 = 4;
pub const SEGMENT_MAGIC: &[u8; 6] = b"MMRWAL";
pub const SEGMENT_HEADER_BYTES: u64 = 16;
pub const SYNC: [u8; 4] = [0xF7, 0x4D, 0x52, 0x1E];
pub const RECORD_HEADER_BYTES: usize = 4 + 4 + 8 + 32 + 4;
/// A record bigger than this is damage, not data: events are bounded far below it before
/// they reach the log.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// SHA-256 chaining every record to the one before it.
pub type Chain = [u8; 32];

/// The chain value before the first record of a log.
pub const GENESIS: Chain = [0u8; 32];

pub fn next_chain(previous: &Chain, seq: u64, payload: &[u8]) -> Chain {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize().into()
}

pub fn hex(chain: &Chain) -> String {
    use std::fmt::Write;
    chain.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn from_hex(text: &str) -> Option<Chain> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// A segment's header: `magic` (plain or sealed), this build's version, the first seq.
pub fn header_with(magic: &[u8; 6], first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES as usize];
    header[0..6].copy_from_slice(magic);
    header[6..8].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&first_seq.to_le_bytes());
    header
}

pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    header_with(SEGMENT_MAGIC, first_seq)
}

/// What the first bytes of a segment say.
#[derive(Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// This build's format, with the first record's sequence number.
    Current(u64),
    /// A sealed, compressed segment, with its format version (2 or 3).
    Sealed(u64, u16),
    /// A newer format this build cannot read.
    Newer(u16),
    /// No header: the first format (records from byte 0, no chain).
    V1,
}

pub fn segment_kind(head: &[u8]) -> SegmentKind {
    if head.len() < SEGMENT_HEADER_BYTES as usize {
        return SegmentKind::V1;
    }
    let sealed = &head[0..6] == super::sealed::SEALED_MAGIC;
    if &head[0..6] != SEGMENT_MAGIC && !sealed {
        return SegmentKind::V1;
    }
    let version = u16::from_le_bytes([head[6], head[7]]);
    if version > FORMAT_VERSION {
        return SegmentKind::Newer(version);
    }
    let first = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    if sealed {
        SegmentKind::Sealed(first, version)
    } else {
        SegmentKind::Current(first)
    }
}

/// The first bytes of a segment file (fewer when the file is shorter), for [`segment_kind`].
pub fn read_head(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    std::fs::File::open(path)?
        .take(SEGMENT_HEADER_BYTES)
        .read_to_end(&mut head)?;
    Ok(head)
}

fn crc(len: u32, seq: u64, chain: &Chain, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(chain);
    hasher.update(payload);
    hasher.finalize()
}

/// Writes one record's header (the payload follows it).
pub fn record_header(seq: u64, chain: &Chain, payload: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
    let len = payload.len() as u32;
    let mut header = [0u8; RECORD_HEADER_BYTES];
    header[0..4].copy_from_slice(&SYNC);
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..48].copy_from_slice(chain);
    header[48..52].copy_from_slice(&crc(len, seq, chain, payload).to_le_bytes());
    header
}

/// A record header read back, before its payload is checked.
pub struct Header {
    pub len: usize,
    pub seq: u64,
    pub chain: Chain,
    crc: u32,
}

/// Parses a header; `Err` says why these bytes are not the start of a record.
pub fn parse_header(bytes: &[u8]) -> Result<Header, &'static str> {
    if bytes[0..4] != SYNC {
        return Err("no record starts here");
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if len > MAX_RECORD_BYTES {
        return Err("impossible record length");
    }
    Ok(Header {
        len,
        seq: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        chain: bytes[16..48].try_into().expect("32 bytes"),
        crc: u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes")),
    })
}

impl Header {
    pub fn check(&self, payload: &[u8]) -> bool {
        crc(self.len as u32, self.seq, &self.chain, payload) == self.crc
    }
}

/// Position of the next record sync marker in `bytes`, if any.
pub fn find_sync(bytes: &[u8]) -> Option<usize> {
    find_sync_of(bytes, &SYNC)
}

/// Position of the next `marker` in `bytes`, if any.
pub fn find_sync_of(bytes: &[u8], marker: &[u8; 4]) -> Option<usize> {
    let mut from = 0;
    while from + marker.len() <= bytes.len() {
        let i = bytes[from..].iter().position(|&b| b == marker[0])? + from;
        if bytes.len() - i < marker.len() {
            return None;
        }
        if bytes[i..i + marker.len()] == *marker {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_its_crc_covers_the_chain() {
        let chain = next_chain(&GENESIS, 1, b"payload");
        let bytes = record_header(1, &chain, b"payload");
        let header = parse_header(&bytes).unwrap();
        assert_eq!((header.len, header.seq), (7, 1));
        assert!(header.check(b"payload"));
        assert!(!header.check(b"paylOad"));
        let mut other = bytes;
        other[20] ^= 1;
        assert!(!parse_header(&other).unwrap().check(b"payload"));
        assert_eq!(from_hex(&hex(&chain)), Some(chain));
    }

    #[test]
    fn sync_markers_are_found_past_false_starts() {
        let mut bytes = vec![0xF7, 0x4D, 1, 2, 0xF7];
        bytes.extend_from_slice(&SYNC);
        assert_eq!(find_sync(&bytes), Some(5));
        assert_eq!(find_sync(&[0xF7, 0x4D, 0x52]), None);
    }
}
