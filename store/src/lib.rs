//! Keeps the clinic's access trail: the normalized [`Event`], the write-ahead log that makes an
//! accepted event durable, and the Tantivy index that makes it searchable.
//!
//! An event is *accepted* once it is in the write-ahead log and the log is fsynced; only then is
//! its sender acknowledged. The index follows the log and records, in each commit, the last log
//! record it holds, so a restart replays exactly the records the index is missing: after a
//! crash every accepted event is searchable exactly once.

mod error;
mod event;
mod index;
mod metrics;
pub mod pattern;
mod pipeline;
mod schema;
mod search;
mod tokenizer;
pub mod wal;

pub use crate::error::StoreError;
pub use crate::event::{ACTIONS, Event, EventId, Outcome};
pub use crate::index::{EventIndex, MAX_SEARCH_LIMIT};
pub use crate::metrics::StoreMetrics;
pub use crate::pipeline::{Ack, Batch, Follower, Store, StoreConfig, StoreHandle};
pub use crate::schema::{DEFAULT_FIELDS, EventSchema};
pub use crate::search::{SearchRequest, SearchResults, parse_time_bound};

#[cfg(test)]
mod tests;
