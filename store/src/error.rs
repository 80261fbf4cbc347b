use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory `{path}` is not usable: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write-ahead log segment `{path}` is corrupt at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
