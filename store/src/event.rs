//! The normalized access event: every source (syslog, Windows, EHR audit logs) becomes one of
//! these. Field names follow the Elastic Common Schema where ECS has a name; the index schema in
//! `schema.rs` mirrors this struct field for field.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The normalized actions sources map to (besides source-specific ones such as `windows.4688`);
/// EHR action mappings and role patterns are checked against this list.
pub const ACTIONS: &[&str] = &[
    "login",
    "logout",
    "login_failed",
    "record.view",
    "record.update",
    "record.delete",
    "record.print",
    "record.export",
    "record.emergency_access",
    "other",
];

/// The dataset of mimamori's own audit trail: sign-ins, searches, reports and changes made
/// through the web UI and the API.
pub const AUDIT_DATASET: &str = "mimamori.audit";

/// One access-log event, normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id: the same raw input from the same source always gets the same id.
    #[serde(rename = "event.id")]
    pub id: EventId,
    /// When the event happened (UTC), as the source says; the arrival time when it says nothing.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// When mimamori received it (UTC).
    #[serde(rename = "event.ingested")]
    pub ingested: DateTime<Utc>,
    /// Which kind of source: `syslog`, `windows.security`, `ehr.audit`, ...
    #[serde(rename = "event.dataset")]
    pub dataset: String,
    /// Normalized action: `login`, `logout`, `login_failed`, `record.view`, `record.update`,
    /// `record.print`, `record.export`, ..., or `unknown`.
    #[serde(rename = "event.action")]
    pub action: String,
    /// The source's own name for the action (`VIEW_CHART`, `4624`, `参照`).
    #[serde(
        rename = "event.code",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub code: Option<String>,
    #[serde(rename = "event.outcome")]
    pub outcome: Outcome,
    #[serde(rename = "user.name", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The account's domain (`CLINIC`, `clinic.local`) where the source names one: Windows.
    #[serde(
        rename = "user.domain",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_domain: Option<String>,
    #[serde(rename = "user.roles", default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Where the person was (the client address), not the sender of the log line.
    #[serde(rename = "source.ip", default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The machine the event happened on (syslog HOSTNAME, Windows Computer, EHR terminal).
    #[serde(rename = "host.name", default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The clinic site the event belongs to, when known.
    #[serde(rename = "site", default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(
        rename = "patient.id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub patient: Option<String>,
    /// The kind of record touched, where the source says: `demographics`, `clinical_notes`,
    /// `prescriptions`, `appointments`, `billing`, or the source's own word.
    #[serde(
        rename = "record.category",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub category: Option<String>,
    /// How many records one action touched (an export of 500 charts says 500).
    #[serde(
        rename = "record.count",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub record_count: Option<u64>,
    /// Program that wrote the line (syslog APP-NAME, Windows provider).
    #[serde(
        rename = "process.name",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub process: Option<String>,
    /// Network address of the peer that sent the log to us (`udp://10.0.0.5:514`).
    #[serde(
        rename = "log.source.address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_source: Option<String>,
    /// Markers such as `syslog_parse_failure` or `truncated`.
    #[serde(rename = "tags", default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Source-specific fields kept as they came (syslog structured data as `SDID.param`,
    /// `syslog.facility`, `syslog.severity`, ...).
    #[serde(rename = "labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Human-readable text of the event.
    pub message: String,
    /// The raw input, verbatim (lossily decoded when it was not UTF-8).
    #[serde(rename = "event.original")]
    pub original: String,
}

impl Event {
    /// About how much memory the event takes with its text, for buffers bounded in bytes: each
    /// string's allocation plus the allocator's rounding, and each label's share of its map's
    /// nodes.
    pub fn memory_bytes(&self) -> usize {
        const PER_ALLOCATION: usize = 16;
        const PER_LABEL: usize = 2 * std::mem::size_of::<String>() + 16;
        let text = |s: &String| match s.capacity() {
            0 => 0,
            n => n + PER_ALLOCATION,
        };
        let maybe = |s: &Option<String>| s.as_ref().map_or(0, text);
        let list = |v: &Vec<String>| {
            v.iter().map(text).sum::<usize>() + v.capacity() * std::mem::size_of::<String>()
        };
        std::mem::size_of::<Event>()
            + text(&self.id.0)
            + text(&self.dataset)
            + text(&self.action)
            + text(&self.message)
            + text(&self.original)
            + [
                &self.code,
                &self.user,
                &self.user_domain,
                &self.source_ip,
                &self.host,
                &self.site,
                &self.patient,
                &self.category,
                &self.process,
                &self.log_source,
            ]
            .into_iter()
            .map(maybe)
            .sum::<usize>()
            + list(&self.roles)
            + list(&self.tags)
            + self
                .labels
                .iter()
                .map(|(k, v)| text(k) + text(v) + PER_LABEL)
                .sum::<usize>()
    }

    /// A new event with the mandatory parts; every optional field empty.
    pub fn new(
        source_key: &str,
        dataset: &str,
        original: String,
        ingested: DateTime<Utc>,
    ) -> Event {
        Event {
            id: EventId::derive(source_key, original.as_bytes()),
            timestamp: ingested,
            ingested,
            dataset: dataset.to_owned(),
            action: "unknown".to_owned(),
            code: None,
            outcome: Outcome::Unknown,
            user: None,
            user_domain: None,
            roles: Vec::new(),
            source_ip: None,
            host: None,
            site: None,
            patient: None,
            category: None,
            record_count: None,
            process: None,
            log_source: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
            message: String::new(),
            original,
        }
    }
}

/// Tag of an event whose fields were cut to fit.
pub const TRUNCATED_TAG: &str = "truncated_too_long";
/// Labels, roles and tags kept per event when it must be cut to fit.
const MAX_LIST: usize = 64;

impl Event {
    /// Serializes the event into `out` (cleared first), cutting its longest fields by half, and
    /// tagging it `truncated_too_long`, until the JSON fits in `max_bytes`. True when anything
    /// was cut. Whatever a parser let through, a record stays bounded.
    pub fn write_bounded(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let mut cut = false;
        loop {
            out.clear();
            serde_json::to_writer(&mut *out, self).expect("events serialize");
            if out.len() <= max_bytes {
                return cut;
            }
            if !cut {
                cut = true;
                self.labels = std::mem::take(&mut self.labels)
                    .into_iter()
                    .take(MAX_LIST)
                    .collect();
                self.roles.truncate(MAX_LIST);
                self.tags.truncate(MAX_LIST - 1);
                if !self.tags.iter().any(|t| t == TRUNCATED_TAG) {
                    self.tags.push(TRUNCATED_TAG.to_owned());
                }
                continue;
            }
            let longest = self.longest_field();
            let keep = longest.len() / 2;
            let mut at = keep;
            while !longest.is_char_boundary(at) {
                at -= 1;
            }
            longest.truncate(at);
        }
    }

    fn longest_field(&mut self) -> &mut String {
        let optional = [
            &mut self.code,
            &mut self.user,
            &mut self.user_domain,
            &mut self.source_ip,
            &mut self.host,
            &mut self.site,
            &mut self.patient,
            &mut self.category,
            &mut self.process,
            &mut self.log_source,
        ];
        let mut fields: Vec<&mut String> = optional.into_iter().flatten().collect();
        fields.push(&mut self.original);
        fields.push(&mut self.message);
        fields.push(&mut self.dataset);
        fields.push(&mut self.action);
        fields.extend(self.roles.iter_mut());
        fields.extend(self.tags.iter_mut().filter(|t| t.as_str() != TRUNCATED_TAG));
        fields.extend(self.labels.values_mut());
        fields
            .into_iter()
            .max_by_key(|f| f.len())
            .expect("an event has fields")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// 128 bits of SHA-256 over the source key and the raw bytes, as 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// An id as stored elsewhere (the alert database's evidence lists).
    pub fn from_hex(hex: String) -> EventId {
        EventId(hex)
    }

    /// `source_key` names where the input came from (a sender address, a file's dataset), so
    /// identical text from two machines stays two events while a re-import stays one.
    pub fn derive(source_key: &str, raw: &[u8]) -> EventId {
        let mut hasher = Sha256::new();
        hasher.update((source_key.len() as u64).to_le_bytes());
        hasher.update(source_key.as_bytes());
        hasher.update(raw);
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(32);
        for byte in &digest[..16] {
            use fmt::Write;
            let _ = write!(hex, "{byte:02x}");
        }
        EventId(hex)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keys event ids are derived from ([`EventId::derive`]), one per kind of source. They are
/// defined here, with the id, so that the log can derive a stored event's id again from its
/// sender and its raw line instead of keeping the id's 16 bytes (which do not compress).
pub mod source_key {
    use std::net::SocketAddr;

    pub const EHR_CSV: &str = "ehr-csv";
    pub const EHR_JSONL: &str = "ehr-jsonl";
    pub const FHIR: &str = "fhir";
    pub const ATNA: &str = "atna";
    pub const WINDOWS: &str = "windows";
    /// Syslog read from a file (or posted over HTTP): no sender address.
    pub const SYSLOG_FILE: &str = "syslog/file";

    /// The keys that do not depend on a sender, most common first.
    pub const FIXED: &[&str] = &[EHR_CSV, EHR_JSONL, WINDOWS, FHIR, ATNA, SYSLOG_FILE];

    /// The key of a syslog message: its sender's address without the port (ports change per
    /// connection), or the transport when there is no sender (`syslog/file`).
    pub fn syslog(peer_ip: Option<&str>, transport: &str) -> String {
        match peer_ip {
            Some(ip) => format!("syslog/{ip}"),
            None => format!("syslog/{transport}"),
        }
    }

    /// The key of a message a listener received from `address`, as `log.source.address` holds
    /// it (`udp://10.0.0.5:514`, `tcp://[::ffff:10.0.0.5]:40112`).
    pub fn of_address(address: &str) -> Option<String> {
        let (_, peer) = address.split_once("://")?;
        let peer: SocketAddr = peer.parse().ok()?;
        Some(syslog(Some(&peer.ip().to_canonical().to_string()), ""))
    }

    /// Whether `address` (`log.source.address`) names a network listener's sender: such
    /// events are never looked up by id to skip a duplicate (only imports are).
    pub fn is_listener(address: &str) -> bool {
        ["udp://", "tcp://", "tls://"]
            .iter()
            .any(|scheme| address.starts_with(scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_source_and_bytes_only() {
        let a = EventId::derive("udp://10.0.0.1", b"<13>hello");
        assert_eq!(a, EventId::derive("udp://10.0.0.1", b"<13>hello"));
        assert_ne!(a, EventId::derive("udp://10.0.0.2", b"<13>hello"));
        assert_ne!(a, EventId::derive("udp://10.0.0.1", b"<13>hello!"));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(EventId::derive("ab", b"c"), EventId::derive("a", b"bc"));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn any_event_is_cut_to_fit_a_record_and_tagged() {
        let mut event = Event::new(
            "s",
            "ehr.audit",
            "\u{1}".repeat(6 << 20),
            DateTime::UNIX_EPOCH,
        );
        event.message = "あ".repeat(1 << 20);
        for i in 0..10_000 {
            event.labels.insert(format!("csv.col{i}"), "x".repeat(100));
        }
        let mut out = Vec::new();
        assert!(event.write_bounded(&mut out, 1 << 20));
        assert!(out.len() <= 1 << 20, "{} bytes", out.len());
        let back: Event = serde_json::from_slice(&out).unwrap();
        assert!(back.tags.contains(&TRUNCATED_TAG.to_owned()));
        assert!(
            back.message.starts_with("ああ"),
            "cut on a character boundary"
        );
        assert_eq!(back.labels.len(), 64);
        let mut small = Event::new("s", "syslog", "short".into(), DateTime::UNIX_EPOCH);
        assert!(
            !small.write_bounded(&mut out, 1 << 20),
            "a small event is left alone"
        );
        assert!(small.tags.is_empty());
    }

    #[test]
    fn json_uses_ecs_names_and_round_trips() {
        let mut event = Event::new("s", "syslog", "raw".into(), DateTime::UNIX_EPOCH);
        event.user = Some("tanaka".into());
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["user.name"], "tanaka");
        assert_eq!(json["event.outcome"], "unknown");
        assert_eq!(json["@timestamp"], "1970-01-01T00:00:00Z");
        assert!(
            json.get("patient.id").is_none(),
            "empty fields are left out"
        );
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
