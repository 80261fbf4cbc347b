use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot listen for syslog on {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}
