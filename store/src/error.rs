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
    #[error(
        "`{path}` was written by a newer mimamori (format {found}); this one reads up to format {}: install the newer release again",
        crate::wal::format::FORMAT_VERSION
    )]
    NewerFormat { path: PathBuf, found: u32 },
    #[error(
        "the search index is unreadable ({reason}); every accepted event is still in the write-ahead log: stop mimamori and run `mimamori reindex`, or set `storage.auto_reindex = true`"
    )]
    IndexUnreadable { reason: String },
    #[error(
        "free space is below the reserve ({free} bytes free, {reserve} kept in reserve): new data is refused until space is freed"
    )]
    LowSpace { free: u64, reserve: u64 },
    #[error("the store refuses new data for now: {0}")]
    Unavailable(String),
    #[error("a record of {0} bytes is over the log's limit")]
    TooLarge(usize),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("the store is shutting down")]
    Closed,
    #[error("index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Defines an error that is a reason in words: what is wrong, for the person who can fix it
/// (`Display` says it as it is; `From<String>` and `From<&str>` make one).
#[macro_export]
macro_rules! reason_error {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}

        impl From<String> for $name {
            fn from(reason: String) -> $name {
                $name(reason)
            }
        }

        impl From<&str> for $name {
            fn from(reason: &str) -> $name {
                $name(reason.to_owned())
            }
        }
    };
}
