//! Reads the log forward from a sequence number, across segments, with one damage policy for
//! every reader (indexer, rules, import, verify, reindex): a damaged record is skipped and
//! reported once, with where it was and which sequence numbers it took with it, and reading
//! goes on at the next good record.

use std::path::{Path, PathBuf};

use super::cursor::{Cursor, Found};
use super::format::Chain;
use super::segments;
use crate::error::StoreError;

/// Reads the log forward; it never reads past `until` (the last synced record), so it can
/// follow a log that is being written.
/// Why records are missing between two segments: the first was cut, or a segment between them
/// (a whole file) is gone.
pub(crate) const ENDS_EARLY: &str = "the segment ends early, or a segment file after it is missing";

pub struct WalReader {
    dir: PathBuf,
    cursor: Option<(PathBuf, Cursor)>,
    next_seq: u64,
    /// A good record found after damage, returned after the damage is reported.
    stashed: Option<(u64, Chain, Vec<u8>)>,
    /// Where the current damaged stretch began, and why.
    damage: Option<(u64, &'static str)>,
    chain: Option<Chain>,
    /// True until a record of the open segment was returned (records before `next_seq` are
    /// passed over then, not reported).
    seeking: bool,
}

/// What [`WalReader::next`] found.
#[derive(Debug)]
pub enum WalRead {
    Record(u64, Vec<u8>),
    /// Every record up to `until` that can be read has been read.
    CaughtUp,
    /// A damaged stretch was skipped; reading continues after it.
    Damaged(WalDamage),
}

/// A stretch of the log that could not be read: where, why, and what it cost.
#[derive(Debug, Clone)]
pub struct WalDamage {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// First sequence number lost (equal to `resumed_at` when no record was lost).
    pub first_lost: u64,
    /// First sequence number the reader continues from.
    pub resumed_at: u64,
}

impl WalDamage {
    pub fn num_lost(&self) -> u64 {
        self.resumed_at.saturating_sub(self.first_lost)
    }
}

impl std::fmt::Display for WalDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {}: {}; ",
            self.path.display(),
            self.offset,
            self.reason
        )?;
        match self.num_lost() {
            0 => write!(f, "no record lost"),
            1 => write!(f, "record {} lost", self.first_lost),
            _ => write!(
                f,
                "records {} to {} lost",
                self.first_lost,
                self.resumed_at - 1
            ),
        }
    }
}

impl WalReader {
    pub fn new(dir: &Path, from_seq: u64) -> WalReader {
        WalReader {
            dir: dir.to_owned(),
            cursor: None,
            next_seq: from_seq.max(1),
            stashed: None,
            damage: None,
            chain: None,
            seeking: true,
        }
    }

    /// The sequence number the next record should have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The chain value stored with the last record returned.
    pub fn chain(&self) -> Option<Chain> {
        self.chain
    }

    /// The next record with seq ≤ `until`.
    pub fn next(&mut self, until: u64) -> Result<WalRead, StoreError> {
        loop {
            if let Some((seq, chain, payload)) = self.stashed.take() {
                self.next_seq = seq + 1;
                self.chain = Some(chain);
                return Ok(WalRead::Record(seq, payload));
            }
            if self.next_seq > until {
                if let Some((_, cursor)) = self.cursor.as_mut() {
                    cursor.forget_read_ahead()?;
                }
                return Ok(WalRead::CaughtUp);
            }
            if self.cursor.is_none() && !self.open_segment()? {
                return Ok(WalRead::CaughtUp);
            }
            let (path, cursor) = self.cursor.as_mut().expect("opened above");
            match cursor.next()? {
                Found::Record {
                    seq,
                    chain,
                    payload,
                    offset,
                } => {
                    if seq > until {
                        // Found past damage, but not synced yet: come back for it.
                        cursor.seek(offset)?;
                        return Ok(WalRead::CaughtUp);
                    }
                    let damage = self.damage.take();
                    if seq < self.next_seq {
                        if self.seeking {
                            continue; // seeking forward inside the segment
                        }
                        return Ok(WalRead::Damaged(WalDamage {
                            path: path.clone(),
                            offset,
                            reason: format!(
                                "record {seq} out of order after {} (inserted)",
                                self.next_seq - 1
                            ),
                            first_lost: self.next_seq,
                            resumed_at: self.next_seq,
                        }));
                    }
                    if seq == self.next_seq && damage.is_none() {
                        self.next_seq += 1;
                        self.chain = Some(chain);
                        self.seeking = false;
                        return Ok(WalRead::Record(seq, payload));
                    }
                    let (at, reason) = damage.unwrap_or((offset, "records missing"));
                    self.seeking = false;
                    let report = WalDamage {
                        path: path.clone(),
                        offset: at,
                        reason: reason.to_owned(),
                        first_lost: self.next_seq,
                        resumed_at: seq,
                    };
                    self.stashed = Some((seq, chain, payload));
                    return Ok(WalRead::Damaged(report));
                }
                Found::Bad(reason) => {
                    let at = cursor.offset();
                    self.damage.get_or_insert((at, reason));
                    if !cursor.resync()? {
                        if let Some(damage) = self.end_of_segment()? {
                            return Ok(WalRead::Damaged(damage));
                        }
                        if self.cursor.is_some() {
                            return Ok(WalRead::CaughtUp);
                        }
                    }
                }
                Found::End | Found::Incomplete => {
                    if let Some(damage) = self.end_of_segment()? {
                        return Ok(WalRead::Damaged(damage));
                    }
                    if self.cursor.is_some() {
                        if let Some((_, cursor)) = self.cursor.as_mut() {
                            cursor.forget_read_ahead()?;
                        }
                        return Ok(WalRead::CaughtUp);
                    }
                }
            }
        }
    }

    /// At the end of the current segment: moves to the next one when there is one (reporting
    /// the records the segment should have held but did not); stays when this is the last
    /// segment (the writer may still append to it).
    fn end_of_segment(&mut self) -> Result<Option<WalDamage>, StoreError> {
        let (path, cursor) = self.cursor.as_ref().expect("a segment is open");
        let later = segments(&self.dir)?.into_iter().find(|(_, p)| p > path);
        let Some((first, _)) = later else {
            return Ok(None);
        };
        let offset = cursor.offset();
        let path = path.clone();
        self.cursor = None;
        let damage = self.damage.take();
        // Records removed by retention while this reader was on them are not damage.
        let retained_from = crate::retention::anchor(&self.dir)
            .ok()
            .flatten()
            .map_or(0, |a| a.first_seq);
        if damage.is_none() && first <= retained_from {
            self.next_seq = first.max(self.next_seq);
            return Ok(None);
        }
        if first > self.next_seq || damage.is_some() {
            let (at, reason) = damage.unwrap_or((offset, ENDS_EARLY));
            let report = WalDamage {
                path,
                offset: at,
                reason: reason.to_owned(),
                first_lost: self.next_seq,
                resumed_at: first.max(self.next_seq),
            };
            self.next_seq = first.max(self.next_seq);
            return Ok(Some(report));
        }
        Ok(None)
    }

    /// Opens the segment that holds `next_seq`; false when the log has nothing there yet.
    fn open_segment(&mut self) -> Result<bool, StoreError> {
        // The server seals a plain segment into a `.walz` (and retention removes old ones)
        // while others read: a file gone between the listing and the opening is looked up
        // again in a fresh listing.
        for attempt in 0.. {
            let all = segments(&self.dir)?;
            let Some(first_kept) = all.first().map(|s| s.0) else {
                return Ok(false);
            };
            // Records before the first kept segment were removed by retention.
            self.next_seq = self.next_seq.max(first_kept);
            let (_, path) = all
                .iter()
                .rev()
                .find(|(first, _)| *first <= self.next_seq)
                .expect("the first segment starts at or before next_seq");
            match Cursor::open(path) {
                Ok(cursor) => {
                    self.cursor = Some((path.clone(), cursor));
                    self.seeking = true;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 10 => {}
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns")
    }
}
