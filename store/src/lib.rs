//! Keeps the clinic's access trail: the normalized [`Event`], the write-ahead log that makes an
//! accepted event durable and tamper-evident, and the Tantivy index that makes it searchable.
//!
//! An event is *accepted* once it is in the write-ahead log and the log is fsynced; only then is
//! its sender acknowledged. Each record carries a checksum, a sync marker and the SHA-256 chain
//! of every record before it; damage costs the damaged record only. The index follows the log
//! and records, in each commit, the last log record it holds and the chain at that record, so a
//! restart replays exactly the records the index is missing and [`verify`] can show that
//! nothing was changed since.

mod appender;
pub mod backup;
mod checkpoint;
mod durable;
mod error;
mod event;
mod facets;
mod follower;
mod health;
mod histogram;
mod id_query;
mod index;
mod indexer;
mod metrics;
pub mod pattern;
mod pipeline;
pub mod query;
mod reindex;
mod replay;
mod retention;
mod schema;
mod search;
mod space;
mod time_order;
mod tokenizer;
mod value_counts;
pub mod verify;
mod wal;

pub use crate::appender::MAX_EVENT_BYTES;
pub use crate::checkpoint::Checkpoint;
pub use crate::error::StoreError;
pub use crate::event::{ACTIONS, AUDIT_DATASET, Event, EventId, Outcome, source_key};
pub use crate::facets::{
    FacetRequest, FacetValue, Facets, MAX_BUCKETS, MAX_COUNTED_VALUES, MAX_FACET_VALUES,
    bucket_width,
};
pub use crate::follower::Follower;
pub use crate::health::{Health, StageGuard, StageStatus};
pub use crate::index::{EventIndex, MAX_SEARCH_LIMIT};
pub use crate::metrics::{Registrar, StoreMetrics};
pub use crate::pipeline::{
    Ack, Batch, Store, StoreConfig, StoreHandle, lock_data_dir, refuse_half_restored,
};
pub use crate::reindex::reindex;
pub use crate::replay::{Replay, replay};
pub use crate::schema::{DEFAULT_FIELDS, EventSchema, FACET_FIELDS};
pub use crate::search::{
    COUNTED_MATCHES, MAX_OFFSET, MAX_RESULT_BYTES, SearchRequest, SearchResults, parse_time_bound,
};
pub use crate::verify::{Finding, FindingKind, VerifyReport};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod time_tests;
