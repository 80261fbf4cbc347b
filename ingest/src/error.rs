use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen for syslog on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the spool directory {}: {source}", path.display())]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Why an import (a file, a spool file, an HTTP body) stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// The input cannot be read at all (its format, its compression, the file itself): the
    /// sender's problem; trying again will not help.
    #[error("{0}")]
    Input(String),
    /// The store did not take the records (free space below the reserve, write errors, shut
    /// down): the appliance's condition; what was stored stays, and a retry later skips it.
    #[error("{0}")]
    Store(String),
}

store::reason_error! {
    /// Why input could not be read: a record (rejected with its location, the rest read on),
    /// or a whole file or body. Said to the sender as it is.
    Unreadable
}
