//! What each index commit records about the log: the last record it holds, the log's hash
//! chain at that record, and (with `storage.chain_key_file`) an HMAC-SHA-256 of both under a
//! key kept outside the data directory, so a log rewritten with fresh hashes is still caught.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tantivy::Index;

use crate::error::StoreError;
use crate::wal::format::{Chain, from_hex, hex};

/// The index format this build writes (1: payload `wal_seq=N`, no `_seq` field; 2: events
/// stored in `_source`; 3: no event stored, results read from the log; 4: `event.id` looked
/// up by the `_id` column, its terms kept only for imported events).
pub const INDEX_FORMAT: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub format: u32,
    /// The last log record the committed index holds (0: none).
    pub seq: u64,
    pub chain: Option<Chain>,
    /// Hex HMAC over `seq` and `chain`, when a key was configured.
    pub signature: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    format: u32,
    wal_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

fn mac(key: &[u8], seq: u64, chain: &Chain) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("mimamori chain head {seq} {}", hex(chain)).as_bytes());
    let bytes: [u8; 32] = mac.finalize().into_bytes().into();
    hex(&bytes)
}

impl Checkpoint {
    pub fn new(seq: u64, chain: Option<Chain>, key: Option<&[u8]>) -> Checkpoint {
        let signature = match (key, &chain) {
            (Some(key), Some(chain)) => Some(mac(key, seq, chain)),
            _ => None,
        };
        Checkpoint {
            format: INDEX_FORMAT,
            seq,
            chain,
            signature,
        }
    }

    pub fn to_payload(&self) -> String {
        serde_json::to_string(&Payload {
            format: self.format,
            wal_seq: self.seq,
            chain: self.chain.as_ref().map(hex),
            signature: self.signature.clone(),
        })
        .expect("a checkpoint serializes")
    }

    /// Whether the signature is right for `key` (None: nothing signed).
    pub fn signature_holds(&self, key: &[u8]) -> Option<bool> {
        let (chain, signature) = (self.chain.as_ref()?, self.signature.as_ref()?);
        Some(&mac(key, self.seq, chain) == signature)
    }
}

/// Reads the checkpoint of the last commit (format 0 for an index never committed).
pub fn checkpoint(index: &Index) -> Result<Checkpoint, StoreError> {
    let metas = index.load_metas()?;
    let Some(payload) = metas.payload.as_deref() else {
        return Ok(Checkpoint::default());
    };
    if let Some(n) = payload.strip_prefix("wal_seq=") {
        return Ok(Checkpoint {
            format: 1,
            seq: n.parse().unwrap_or(0),
            chain: None,
            signature: None,
        });
    }
    let parsed: Payload =
        serde_json::from_str(payload).map_err(|e| StoreError::IndexUnreadable {
            reason: format!("the last commit's record of the log does not parse: {e}"),
        })?;
    Ok(Checkpoint {
        format: parsed.format,
        seq: parsed.wal_seq,
        chain: parsed.chain.as_deref().and_then(from_hex),
        signature: parsed.signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_holds_only_for_its_key_and_values() {
        let point = Checkpoint::new(42, Some([7; 32]), Some(b"secret key"));
        assert_eq!(point.signature_holds(b"secret key"), Some(true));
        assert_eq!(point.signature_holds(b"other key"), Some(false));
        let mut moved = point.clone();
        moved.seq = 43;
        assert_eq!(moved.signature_holds(b"secret key"), Some(false));
        assert_eq!(
            Checkpoint::new(1, Some([0; 32]), None).signature_holds(b"k"),
            None
        );
    }
}
