//! The Tantivy schema that mirrors [`Event`]: one indexed field per event field, under the same
//! name, plus `_seq`, the event's record in the write-ahead log, and `_digest`, a check that
//! the record is the one indexed. The index stores no event: results are read from the log,
//! which holds each event once.
//!
//! `labels` and `event.original` are not indexed: indexing every structured-data value a
//! second time (the access fields are already promoted to `user.name`, `patient.id`, ...) cost
//! a third of ingest throughput in `mimamori bench`.

use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, IndexRecordOption, NumericOptions, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer};
use tantivy::{DateTime, Index, TantivyDocument};

use crate::event::{Event, source_key};
use crate::tokenizer::{CjkBigramTokenizer, IdTokenizer, id_key, id_term};

/// Exact-match fields, compared case-insensitively (`user.name:Tanaka` finds `tanaka`).
const KEYWORD: &str = "keyword";
/// Full text, Japanese included.
const TEXT_JA: &str = "text_ja";
/// `event.id`: its 128 bits, compactly.
const ID: &str = "event_id";

/// Fields searched by a plain word typed with no `field:`: what a person means by "find tanaka".
pub const DEFAULT_FIELDS: &[&str] = &[
    "message",
    "user.name",
    "host.name",
    "source.ip",
    "patient.id",
    "process.name",
    "tags",
];

/// Fields whose values can be counted ([`crate::EventIndex::facets`]): who, what, where, which
/// patient, from which source.
pub const FACET_FIELDS: &[&str] = &[
    "user.name",
    "event.action",
    "host.name",
    "site",
    "event.dataset",
    "patient.id",
    "log.source.address",
    "event.outcome",
];

/// Handles to every field, resolved once.
#[derive(Clone)]
pub struct EventSchema {
    pub schema: Schema,
    pub id: Field,
    pub timestamp: Field,
    pub ingested: Field,
    pub dataset: Field,
    pub action: Field,
    pub code: Field,
    pub outcome: Field,
    pub user: Field,
    pub user_domain: Field,
    pub roles: Field,
    pub source_ip: Field,
    pub host: Field,
    pub site: Field,
    pub patient: Field,
    pub category: Field,
    pub record_count: Field,
    pub process: Field,
    pub log_source: Field,
    pub tags: Field,
    pub message: Field,
    /// The event's write-ahead log record: where search results, verify and retention find it.
    pub seq: Field,
    /// The first 4 bytes of the record's hash chain value, for `verify` to tell that the index
    /// holds the record the log holds.
    pub digest: Field,
    /// 32 bits of the event id ([`id_key`]): where `event.id:` searches look (see `id_query.rs`).
    pub id_key: Field,
}

impl EventSchema {
    pub fn new() -> EventSchema {
        let mut builder = Schema::builder();
        // No field keeps norms (a byte per event and field, for relevance scoring): results are
        // sorted by time, never by score.
        let text = |tokenizer: &str, record: IndexRecordOption| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(record)
                    .set_fieldnorms(false),
            )
        };
        let keyword = text(KEYWORD, IndexRecordOption::Basic);
        let date = DateOptions::default()
            .set_indexed()
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds);
        // The fields people narrow a search by also keep their values in a column (as written,
        // not lower-cased), so counts per value are aggregations, not a scan of the events.
        let facet = keyword.clone().set_fast("raw");
        let id = builder.add_text_field("event.id", text(ID, IndexRecordOption::Basic));
        let mut kw = |name: &str| {
            let options = if FACET_FIELDS.contains(&name) {
                facet.clone()
            } else {
                keyword.clone()
            };
            builder.add_text_field(name, options)
        };
        let dataset = kw("event.dataset");
        let action = kw("event.action");
        let code = kw("event.code");
        let outcome = kw("event.outcome");
        let user = kw("user.name");
        let user_domain = kw("user.domain");
        let roles = kw("user.roles");
        let source_ip = kw("source.ip");
        let host = kw("host.name");
        let site = kw("site");
        let patient = kw("patient.id");
        let category = kw("record.category");
        let process = kw("process.name");
        let log_source = kw("log.source.address");
        let tags = kw("tags");
        let timestamp = builder.add_date_field("@timestamp", date.clone());
        let ingested = builder.add_date_field("event.ingested", date);
        let record_count = builder.add_u64_field(
            "record.count",
            NumericOptions::default().set_indexed().set_fast(),
        );
        let message = builder.add_text_field(
            "message",
            text(TEXT_JA, IndexRecordOption::WithFreqsAndPositions),
        );
        // Ranges over `_seq` (retention) and the sort read the column; no term is looked up.
        let seq = builder.add_u64_field("_seq", FAST);
        let digest = builder.add_u64_field("_digest", FAST);
        let id_key = builder.add_u64_field("_id", FAST);
        EventSchema {
            schema: builder.build(),
            id,
            timestamp,
            ingested,
            dataset,
            action,
            code,
            outcome,
            user,
            user_domain,
            roles,
            source_ip,
            host,
            site,
            patient,
            category,
            record_count,
            process,
            log_source,
            tags,
            message,
            seq,
            digest,
            id_key,
        }
    }

    /// Tokenizers are not saved in the index: every process that opens it registers them.
    pub fn register_tokenizers(index: &Index) {
        let tokenizers = index.tokenizers();
        tokenizers.register(
            KEYWORD,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        tokenizers.register(TEXT_JA, TextAnalyzer::from(CjkBigramTokenizer));
        tokenizers.register(ID, TextAnalyzer::from(IdTokenizer));
    }

    /// Names of the fields a query may name (everything but `_seq` and `_digest`).
    pub fn searchable_fields(&self) -> Vec<&str> {
        self.schema
            .fields()
            .map(|(_, entry)| entry.name())
            .filter(|name| !name.starts_with('_'))
            .collect()
    }

    /// The document for one event, held in write-ahead log record `seq` whose chain value is
    /// `chain`.
    pub fn document(&self, event: &Event, seq: u64, chain: &[u8; 32]) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_u64(self.seq, seq);
        doc.add_u64(self.digest, chain_digest(chain));
        doc.add_u64(self.id_key, id_key(&id_term(event.id.as_str())));
        // The id's terms (35 bytes an event) serve the duplicate check of imports only
        // ([`crate::EventIndex::contains_id`]): what a listener received is never looked up so.
        if !event
            .log_source
            .as_deref()
            .is_some_and(source_key::is_listener)
        {
            doc.add_text(self.id, event.id.as_str());
        }
        doc.add_date(self.timestamp, to_tantivy(event.timestamp));
        doc.add_date(self.ingested, to_tantivy(event.ingested));
        doc.add_text(self.dataset, &event.dataset);
        doc.add_text(self.action, &event.action);
        doc.add_text(self.outcome, event.outcome.as_str());
        let optional = [
            (self.code, &event.code),
            (self.user, &event.user),
            (self.user_domain, &event.user_domain),
            (self.source_ip, &event.source_ip),
            (self.host, &event.host),
            (self.site, &event.site),
            (self.patient, &event.patient),
            (self.category, &event.category),
            (self.process, &event.process),
            (self.log_source, &event.log_source),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        for role in &event.roles {
            doc.add_text(self.roles, role);
        }
        for tag in &event.tags {
            doc.add_text(self.tags, tag);
        }
        if let Some(count) = event.record_count {
            doc.add_u64(self.record_count, count);
        }
        doc.add_text(self.message, &event.message);
        doc
    }
}

impl Default for EventSchema {
    fn default() -> Self {
        EventSchema::new()
    }
}

/// What `_digest` holds for a record whose chain value is `chain`.
pub fn chain_digest(chain: &[u8; 32]) -> u64 {
    u64::from(u32::from_le_bytes(chain[..4].try_into().expect("4 bytes")))
}

/// `t` as the index holds it: nanoseconds, to the microsecond, in an `i64`. A time beyond what
/// that holds (before 1677-09-21 or after 2262-04-11: a broken clock, a placeholder such as
/// 0001-01-01 or 9999-12-31) is held as the first or last value, so it sorts and filters as the
/// earliest or latest time instead of wrapping round into another era.
pub fn to_tantivy(t: chrono::DateTime<chrono::Utc>) -> DateTime {
    DateTime::from_timestamp_nanos(t.timestamp_micros().saturating_mul(1000))
}
