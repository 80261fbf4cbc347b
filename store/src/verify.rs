//! `mimamori verify`: walks the whole log and the whole index and reports every record changed,
//! removed or inserted after it was accepted, and every event the index holds that the log
//! does not hold, or holds differently.

use std::fmt;
use std::path::Path;

use crate::checkpoint::{Checkpoint, INDEX_FORMAT, checkpoint};
use crate::error::StoreError;
use crate::index::open_index;
use crate::retention;
use crate::schema::chain_digest;
use crate::wal::format::{Chain, GENESIS, hex, next_chain};
use crate::wal::{WalRead, WalReader, segments};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Bytes of the log that are not a good record (changed, cut, or inserted garbage).
    Damaged,
    /// A record whose content does not follow from the chain: changed after it was written.
    Changed,
    /// Sequence numbers missing from the log.
    Removed,
    /// A record out of order: inserted.
    Inserted,
    /// The log's chain at the index's last commit is not what the commit recorded.
    Rewritten,
    /// The commit's signature does not hold for the configured key.
    BadSignature,
    /// An event in the index that the log does not hold.
    IndexExtra,
    /// An event the index holds differently from the log.
    IndexDiffers,
    /// Records the index should hold (up to its last commit) but does not.
    IndexMissing,
    /// The index could not be read, or is of an older format.
    IndexUnreadable,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: FindingKind,
    /// The first sequence number concerned, when there is one.
    pub seq: Option<u64>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub num_segments: usize,
    pub num_records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub num_index_events: u64,
    pub checkpoint: Checkpoint,
    pub signed: bool,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    fn find(&mut self, kind: FindingKind, seq: Option<u64>, message: String) {
        self.findings.push(Finding { kind, seq, message });
    }
}

/// Verifies the store in `data_dir`; `key` is the chain key, when one is configured.
/// `progress` is called with the number of records read so far.
pub fn verify(
    data_dir: &Path,
    key: Option<&[u8]>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    crate::pipeline::check_data_format(data_dir)?;
    let wal_dir = data_dir.join("wal");
    if crate::wal::is_v1(&wal_dir)? {
        return Err(StoreError::Corrupt {
            path: wal_dir,
            offset: 0,
            reason: "the log is of the first format (no hash chain yet): start `mimamori serve` once to migrate it, then verify".into(),
        });
    }
    report.num_segments = segments(&wal_dir)?.len();
    let mut indexed = index_digests(data_dir, &mut report);
    indexed.sort_unstable();
    let mut pending = indexed.iter().peekable();

    let anchor = retention::anchor(&wal_dir)?;
    let mut reader = WalReader::new(&wal_dir, 1);
    let mut previous: Option<Chain> = None;
    let mut missing_from: Option<(u64, u64)> = None;
    let flush_missing = |report: &mut VerifyReport, range: &mut Option<(u64, u64)>| {
        if let Some((a, b)) = range.take() {
            report.find(
                FindingKind::IndexMissing,
                Some(a),
                if a == b {
                    format!("record {a} is in the log but not in the index (run `mimamori reindex`)")
                } else {
                    format!("records {a} to {b} are in the log but not in the index (run `mimamori reindex`)")
                },
            );
        }
    };
    loop {
        match reader.next(u64::MAX)? {
            WalRead::CaughtUp => break,
            WalRead::Damaged(damage) => {
                let kind = if damage.reason.contains("out of order") {
                    FindingKind::Inserted
                } else if damage.reason == "records missing"
                    || damage.reason == crate::wal::ENDS_EARLY
                {
                    FindingKind::Removed
                } else {
                    FindingKind::Damaged
                };
                report.find(kind, Some(damage.first_lost), damage.to_string());
                if damage.num_lost() > 0 {
                    previous = None; // the chain cannot be followed across lost records
                }
            }
            WalRead::Record(seq, payload) => {
                let stored = reader.chain().expect("a record has a chain");
                report.num_records += 1;
                if report.num_records.is_multiple_of(100_000) {
                    progress(report.num_records);
                }
                let before = match (previous, report.first_seq) {
                    (Some(p), _) => Some(p),
                    (None, None) => match &anchor {
                        Some(a) if a.first_seq == seq => Some(a.chain_before),
                        Some(_) | None if seq == 1 => Some(GENESIS),
                        _ => {
                            report.find(
                                FindingKind::Removed,
                                Some(1),
                                format!("the log starts at record {seq}, and no retention run removed the records before it"),
                            );
                            None
                        }
                    },
                    (None, Some(_)) => None,
                };
                report.first_seq.get_or_insert(seq);
                report.last_seq = Some(seq);
                if let Some(before) = before
                    && next_chain(&before, seq, &payload) != stored
                {
                    report.find(
                        FindingKind::Changed,
                        Some(seq),
                        format!("record {seq} was changed after it was written: its hash does not follow from the record before it"),
                    );
                }
                previous = Some(stored);
                if seq == report.checkpoint.seq
                    && let Some(head) = report.checkpoint.chain
                    && head != stored
                {
                    report.find(
                        FindingKind::Rewritten,
                        Some(seq),
                        format!("the log up to record {seq} is not the log the index committed (chain {} recorded, {} found): it was rewritten", hex(&head), hex(&stored)),
                    );
                }
                // The index side, in step.
                while let Some((s, _)) = pending.peek() {
                    if *s >= seq {
                        break;
                    }
                    let (s, _) = pending.next().expect("peeked");
                    report.find(
                        FindingKind::IndexExtra,
                        Some(*s),
                        format!(
                            "the index holds an event as record {s}, which the log does not hold"
                        ),
                    );
                }
                let mut found = false;
                while let Some((s, d)) = pending.peek() {
                    if *s != seq {
                        break;
                    }
                    if found {
                        report.find(
                            FindingKind::IndexExtra,
                            Some(seq),
                            format!("the index holds record {seq} twice"),
                        );
                    } else if *d != chain_digest(&stored) {
                        report.find(
                            FindingKind::IndexDiffers,
                            Some(seq),
                            format!("the index holds record {seq} differently from the log"),
                        );
                    }
                    found = true;
                    pending.next();
                }
                if found {
                    flush_missing(&mut report, &mut missing_from);
                } else if seq <= report.checkpoint.seq && report.checkpoint.format >= INDEX_FORMAT {
                    match &mut missing_from {
                        Some((_, b)) if *b + 1 == seq => *b = seq,
                        _ => {
                            flush_missing(&mut report, &mut missing_from);
                            missing_from = Some((seq, seq));
                        }
                    }
                }
            }
        }
    }
    flush_missing(&mut report, &mut missing_from);
    for (s, _) in pending {
        report.find(
            FindingKind::IndexExtra,
            Some(*s),
            format!("the index holds an event as record {s}, which the log does not hold"),
        );
    }
    let last = report.last_seq.unwrap_or(0);
    if report.checkpoint.seq > last {
        report.find(
            FindingKind::Removed,
            Some(last + 1),
            format!("the index was committed at record {}, but the log ends at {last}: records were removed from its end", report.checkpoint.seq),
        );
    }
    if let Some(key) = key {
        match report.checkpoint.signature_holds(key) {
            Some(true) => report.signed = true,
            Some(false) => report.find(
                FindingKind::BadSignature,
                Some(report.checkpoint.seq),
                "the signature of the index's last commit does not hold for the configured key: the record of the log's head was changed".into(),
            ),
            None if report.checkpoint.seq > 0 => report.find(
                FindingKind::BadSignature,
                Some(report.checkpoint.seq),
                "a chain key is configured but the index's last commit is not signed: the index was rebuilt or replaced without the key".into(),
            ),
            None => {}
        }
        if let Some(anchor) = &anchor
            && !crate::retention::anchor_signature_holds(anchor, key)
        {
            report.find(
                FindingKind::BadSignature,
                Some(anchor.first_seq),
                format!("wal/retained.json (the log begins at record {}) is not signed with the configured key: records before it may have been removed by hand", anchor.first_seq),
            );
        }
    }
    Ok(report)
}

/// (seq, digest of the stored event) of every event in the index.
fn index_digests(data_dir: &Path, report: &mut VerifyReport) -> Vec<(u64, u64)> {
    // A running server merges the index's segments and deletes the merged files: a file gone
    // between reading the list and opening it is a race, so the index is read again.
    for _ in 0..5 {
        let mut attempt = VerifyReport::default();
        let out = index_digests_once(data_dir, &mut attempt);
        let raced = attempt.findings.iter().any(|f| {
            f.kind == FindingKind::IndexUnreadable && f.message.contains("FileDoesNotExist")
        });
        if !raced {
            report.checkpoint = attempt.checkpoint;
            report.num_index_events = attempt.num_index_events;
            report.findings.extend(attempt.findings);
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    index_digests_once(data_dir, report)
}

fn index_digests_once(data_dir: &Path, report: &mut VerifyReport) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    // Tantivy may panic on damaged bytes that pass its checks: that is a finding, not a crash.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<(), StoreError> {
        let index = open_index(&data_dir.join("index"), false)?;
        report.checkpoint = checkpoint(&index)?;
        if (report.checkpoint.format != 0 && report.checkpoint.format < INDEX_FORMAT)
            || !crate::index::is_current_schema(&index)
        {
            report.find(
                FindingKind::IndexUnreadable,
                None,
                "the index is of an older format and cannot be compared with the log; start `mimamori serve` (it rebuilds the index) or run `mimamori reindex`".into(),
            );
            return Ok(());
        }
        let damaged = crate::index::damaged_files(&index)?;
        if !damaged.is_empty() {
            return Err(StoreError::IndexUnreadable {
                reason: format!("files fail their checksums: {}", damaged.join(", ")),
            });
        }
        let reader = index.reader()?;
        let searcher = reader.searcher();
        for segment in searcher.segment_readers() {
            let seqs = segment.fast_fields().u64("_seq")?;
            let digests = segment.fast_fields().u64("_digest")?;
            for doc in segment.doc_ids_alive() {
                let Some(seq) = seqs.first(doc) else { continue };
                out.push((seq, digests.first(doc).unwrap_or(u64::MAX)));
            }
        }
        report.num_index_events = out.len() as u64;
        Ok(())
    }))
    .unwrap_or_else(|_| {
        Err(StoreError::IndexUnreadable {
            reason: "reading a stored event failed".into(),
        })
    });
    if let Err(e) = result {
        report.find(
            FindingKind::IndexUnreadable,
            None,
            format!("the index cannot be read: {e}; run `mimamori reindex`"),
        );
    }
    out
}
