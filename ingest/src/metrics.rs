//! Ingest counters: what arrived, what was turned away and why, per transport. Label values
//! come from fixed sets or from a bounded set of the first sources seen ([`BoundedLabels`]),
//! so hostile input cannot grow `/metrics` without end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

/// Distinct sources named in per-source metrics; later ones are counted as `other`.
pub const MAX_SOURCE_LABELS: usize = 100;

/// The first [`MAX_SOURCE_LABELS`] values seen of a label taken from input; `other` after.
#[derive(Clone, Default)]
pub struct BoundedLabels {
    seen: Arc<Mutex<HashSet<String>>>,
}

impl BoundedLabels {
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < MAX_SOURCE_LABELS {
            seen.insert(value.to_owned());
            return value;
        }
        "other"
    }
}

#[derive(Clone)]
pub struct IngestMetrics {
    /// Messages framed and parsed, by transport.
    pub received: IntCounterVec,
    /// Input that did not become an event, by transport and reason (`empty`, `bad_octet_count`,
    /// `store_closed`).
    pub rejected: IntCounterVec,
    /// Events kept in part, by transport and reason (`too_long`, `cut_off`).
    pub truncated: IntCounterVec,
    /// Lines that parsed as neither RFC (stored whole, tagged `syslog_parse_failure`).
    pub parse_failures: IntCounterVec,
    pub tcp_connections: IntGauge,
    pub tcp_connections_refused: IntCounter,
    pub tcp_idle_closed: IntCounter,
    /// Datagrams the kernel dropped on our UDP sockets (from /proc/net/udp).
    pub udp_kernel_drops: IntCounter,
    /// Events left out as noise (machine and service accounts), by reason.
    pub filtered: IntCounterVec,
    /// Imported records the store already held (re-imports).
    pub duplicates: IntCounter,
    /// Jumps in a source's record numbering, and records missing in them, by source.
    pub sequence_gaps: IntCounterVec,
    pub missing_records: IntCounterVec,
    /// The sources `sequence_gaps` and `missing_records` name.
    pub gap_sources: BoundedLabels,
    /// TLS handshakes that failed (bad client, wrong protocol).
    pub tls_handshake_failures: IntCounter,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<IngestMetrics> {
        let r = store::Registrar(registry);
        let (vec, counter) = (|n, h, l| r.counters(n, h, l), |n, h| r.counter(n, h));
        let tcp_connections = r.gauge("mimamori_tcp_connections", "Open syslog TCP connections")?;
        Ok(IngestMetrics {
            received: vec(
                "mimamori_events_received_total",
                "Messages received, by transport",
                &["transport"],
            )?,
            rejected: vec(
                "mimamori_events_rejected_total",
                "Input that did not become an event, by transport and reason",
                &["transport", "reason"],
            )?,
            truncated: vec(
                "mimamori_events_truncated_total",
                "Events kept in part, by transport and reason",
                &["transport", "reason"],
            )?,
            parse_failures: vec(
                "mimamori_parse_failures_total",
                "Messages that parsed as no known format (kept as text)",
                &["transport", "format"],
            )?,
            tcp_connections,
            tcp_connections_refused: counter(
                "mimamori_tcp_connections_refused_total",
                "Syslog TCP connections closed at once because max_connections were open",
            )?,
            tcp_idle_closed: counter(
                "mimamori_tcp_idle_closed_total",
                "Syslog TCP connections closed after idle_timeout_secs without data",
            )?,
            udp_kernel_drops: counter(
                "mimamori_udp_kernel_drops_total",
                "Datagrams the kernel dropped on the syslog UDP sockets (receive buffer full)",
            )?,
            filtered: vec(
                "mimamori_events_filtered_total",
                "Events left out as noise ([windows] filter), by reason",
                &["reason"],
            )?,
            duplicates: counter(
                "mimamori_import_duplicates_total",
                "Imported records skipped because the store already held them",
            )?,
            sequence_gaps: vec(
                "mimamori_sequence_gaps_total",
                "Jumps in a source's record numbering (records that never arrived), by source",
                &["source"],
            )?,
            missing_records: vec(
                "mimamori_sequence_missing_records_total",
                "Records missing in the gaps of a source's numbering, by source",
                &["source"],
            )?,
            gap_sources: BoundedLabels::default(),
            tls_handshake_failures: counter(
                "mimamori_tls_handshake_failures_total",
                "Syslog TLS connections closed because the handshake failed",
            )?,
        })
    }
}
