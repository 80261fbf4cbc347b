//! Turns bytes into [`store::Event`]s: syslog listeners (UDP, TCP with LF or octet-counted
//! framing) and the parsers behind them.
//!
//! Every input path is bounded: message size (`max_message_bytes`), connections
//! (`max_connections`), pairs read from one message, labels kept per event. Input that is not
//! what it should be is kept or counted, never a reason to stop a listener.

mod config;
mod error;
pub mod framing;
mod listener;
mod metrics;
mod normalize;
pub mod syslog;

pub use crate::config::SyslogConfig;
pub use crate::error::IngestError;
pub use crate::listener::{SyslogContext, TcpSyslogListener, UdpSyslogListener, udp_kernel_drops};
pub use crate::metrics::IngestMetrics;
pub use crate::normalize::action as normalize_action;
pub use crate::syslog::{Origin, SyslogParser};
