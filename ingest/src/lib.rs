//! Turns bytes into [`store::Event`]s: syslog listeners (UDP, TCP with LF or octet-counted
//! framing, TLS), file imports (EVTX, Windows event XML, Winlogbeat/NXLog JSON, EHR CSV and
//! JSON lines, FHIR AuditEvent, IHE ATNA, syslog files) and the parsers behind them.
//!
//! Every input path is bounded: message size (`max_message_bytes`), connections
//! (`max_connections`), record and line sizes in files, pairs and labels per event. Input that
//! is not what it should be is kept or counted, never a reason to stop a listener.

mod config;
pub mod ehr;
mod error;
pub mod framing;
pub mod gaps;
pub mod import;
mod listener;
mod metrics;
mod normalize;
pub mod spool;
pub mod syslog;
mod tls;
pub mod windows;
pub mod xml;

pub use crate::config::{
    EhrConfig, SourceConfig, SourceRule, SyslogConfig, SyslogFormat, WindowsConfig,
};
pub use crate::error::{IngestError, Unreadable};
pub use crate::listener::{
    PeerCounts, PeerSlot, SyslogContext, TcpSyslogListener, UdpSyslogListener, udp_kernel_drops,
};
pub use crate::metrics::IngestMetrics;
pub use crate::normalize::action as normalize_action;
pub use crate::syslog::{Origin, SyslogParser};
pub use crate::tls::tls_acceptor;
