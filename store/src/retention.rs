//! Retention: whole segments older than `storage.retention_days` leave the log, and their
//! events leave the index, once a day while ingest goes on. `wal/retained.json` keeps the
//! first kept record and the chain value before it, so the chain stays verifiable from there.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::StoreError;
use crate::event::Event;
use crate::wal::format::{Chain, from_hex, hex};
use crate::wal::{WalRead, WalReader, segments};

const ANCHOR_FILE: &str = "retained.json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub first_seq: u64,
    pub chain_before: Chain,
    /// HMAC of the two under the chain key, when one was configured.
    pub signature: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct AnchorFile {
    first_seq: u64,
    chain_before: String,
    removed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

/// Whether the anchor is signed with `key` (a retention run by someone without the key, or a
/// file written by hand, is not).
pub fn anchor_signature_holds(anchor: &Anchor, key: &[u8]) -> bool {
    let expected = Checkpoint::new(anchor.first_seq, Some(anchor.chain_before), Some(key));
    anchor.signature.is_some() && anchor.signature == expected.signature
}

/// Where the kept log begins, when retention has removed anything.
pub fn anchor(wal_dir: &Path) -> Result<Option<Anchor>, StoreError> {
    let text = match fs::read_to_string(wal_dir.join(ANCHOR_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file: AnchorFile = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        path: wal_dir.join(ANCHOR_FILE),
        offset: 0,
        reason: e.to_string(),
    })?;
    Ok(Some(Anchor {
        signature: file.signature,
        first_seq: file.first_seq,
        chain_before: from_hex(&file.chain_before).ok_or_else(|| StoreError::Corrupt {
            path: wal_dir.join(ANCHOR_FILE),
            offset: 0,
            reason: "chain_before is not 64 hex digits".into(),
        })?,
    }))
}

/// The first record of the segment starting at `first`.
fn first_event(wal_dir: &Path, first: u64) -> Result<Option<Event>, StoreError> {
    let mut reader = WalReader::new(wal_dir, first);
    loop {
        match reader.next(u64::MAX)? {
            WalRead::Record(_, payload) => return Ok(serde_json::from_slice(&payload).ok()),
            WalRead::CaughtUp => return Ok(None),
            WalRead::Damaged(_) => {}
        }
    }
}

/// Removes the segments every record of which arrived before `cutoff` and is indexed
/// (`indexed`), never the last one. Returns the new anchor when anything was removed.
pub(crate) fn remove_before(
    wal_dir: &Path,
    cutoff: DateTime<Utc>,
    indexed: u64,
    key: Option<&[u8]>,
) -> Result<Option<Anchor>, StoreError> {
    let all = segments(wal_dir)?;
    let mut remove: Vec<PathBuf> = Vec::new();
    let mut first_kept = None;
    for pair in all.windows(2) {
        let (next_first, _) = pair[1];
        // The next segment's first record arrived after every record of this one.
        let Some(event) = first_event(wal_dir, next_first)? else {
            break;
        };
        if event.ingested >= cutoff || next_first.saturating_sub(1) > indexed {
            break;
        }
        remove.push(pair[0].1.clone());
        first_kept = Some(next_first);
    }
    let Some(first_kept) = first_kept else {
        return Ok(None);
    };
    // The chain value of the last removed record.
    let mut reader = WalReader::new(wal_dir, first_kept - 1);
    let chain_before = loop {
        match reader.next(first_kept - 1)? {
            WalRead::Record(..) => break reader.chain(),
            WalRead::CaughtUp => break None,
            WalRead::Damaged(_) => {}
        }
    };
    let Some(chain_before) = chain_before else {
        return Ok(None); // the last record before the cut is damaged: keep it all
    };
    let signature = Checkpoint::new(first_kept, Some(chain_before), key).signature;
    let anchor = Anchor {
        first_seq: first_kept,
        chain_before,
        signature: signature.clone(),
    };
    let tmp = wal_dir.join(format!("{ANCHOR_FILE}.tmp"));
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(&AnchorFile {
            first_seq: first_kept,
            chain_before: hex(&chain_before),
            removed_at: Utc::now(),
            signature,
        })
        .expect("serializes"),
    )?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, wal_dir.join(ANCHOR_FILE))?;
    for path in &remove {
        fs::remove_file(path)?;
    }
    fs::File::open(wal_dir)?.sync_all()?;
    Ok(Some(anchor))
}
