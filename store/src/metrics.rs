//! The store's Prometheus metrics, registered on the registry the binary serves at /metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct StoreMetrics {
    /// Events synced to the write-ahead log, by dataset: what "accepted" means.
    pub events_accepted: IntCounterVec,
    /// Events a WAL write failed for (disk full, I/O error): not accepted.
    pub events_failed: IntCounter,
    pub wal_written_bytes: IntCounter,
    pub wal_bytes: IntGauge,
    pub wal_fsync_seconds: Histogram,
    pub wal_damage: IntCounter,
    pub wal_damaged_records: IntCounter,
    pub wal_write_errors: IntCounter,
    /// Free bytes on the data directory's filesystem, as last looked up.
    pub storage_free_bytes: IntGauge,
    /// 1 while the log refuses new data (free space below the reserve, write errors).
    pub storage_refusing: IntGauge,
    /// Events whose longest fields were cut so the record fits the log.
    pub events_cut: IntCounter,
    pub index_errors: IntCounter,
    pub index_documents: IntCounter,
    pub index_commit_seconds: Histogram,
    /// Events in the log that are not yet searchable.
    pub index_lag_events: IntGauge,
    pub search_seconds: Histogram,
}

fn buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ]
}

/// Makes metrics and registers them on one registry: the one way every crate does it.
pub struct Registrar<'a>(pub &'a Registry);

impl Registrar<'_> {
    fn register<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> prometheus::Result<M> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounter> {
        self.register(IntCounter::new(name, help)?)
    }

    /// A counter per label value; the values must come from a bounded set.
    pub fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    pub fn gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        self.register(IntGauge::new(name, help)?)
    }

    /// Latencies in seconds, from half a millisecond to five seconds.
    pub fn histogram(&self, name: &str, help: &str) -> prometheus::Result<Histogram> {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets()),
        )?)
    }
}

impl StoreMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<StoreMetrics> {
        let r = Registrar(registry);
        let (counter, gauge) = (|n, h| r.counter(n, h), |n, h| r.gauge(n, h));
        let histogram = |n, h| r.histogram(n, h);
        Ok(StoreMetrics {
            events_accepted: r.counters(
                "mimamori_events_accepted_total",
                "Events synced to the write-ahead log (accepted), by dataset",
                &["dataset"],
            )?,
            events_failed: counter(
                "mimamori_events_wal_failed_total",
                "Events not accepted because the write-ahead log write failed",
            )?,
            wal_written_bytes: counter(
                "mimamori_wal_written_bytes_total",
                "Bytes appended to the write-ahead log",
            )?,
            wal_bytes: gauge("mimamori_wal_bytes", "Bytes of write-ahead log on disk")?,
            wal_fsync_seconds: histogram(
                "mimamori_wal_fsync_seconds",
                "Write-ahead log group-commit fsync latency",
            )?,
            wal_damage: counter(
                "mimamori_wal_damaged_segments_total",
                "Damaged stretches of the write-ahead log skipped while indexing",
            )?,
            wal_damaged_records: counter(
                "mimamori_wal_damaged_records_total",
                "Write-ahead log records lost to damage (skipped while indexing)",
            )?,
            wal_write_errors: counter(
                "mimamori_wal_write_errors_total",
                "Failed write-ahead log writes or fsyncs (the group was refused and the log cut back to its last synced record)",
            )?,
            storage_free_bytes: gauge(
                "mimamori_storage_free_bytes",
                "Free bytes on the filesystem of the data directory",
            )?,
            storage_refusing: gauge(
                "mimamori_storage_refusing",
                "1 while the write-ahead log refuses new data (low space or write errors)",
            )?,
            events_cut: counter(
                "mimamori_events_cut_to_fit_total",
                "Events whose longest fields were cut so they fit a log record (tagged truncated_too_long)",
            )?,
            index_errors: counter(
                "mimamori_index_errors_total",
                "Indexing or commit failures (the indexer starts again from its last commit)",
            )?,
            index_documents: counter(
                "mimamori_index_documents_total",
                "Events added to the search index",
            )?,
            index_commit_seconds: histogram(
                "mimamori_index_commit_seconds",
                "Search index commit latency",
            )?,
            index_lag_events: gauge(
                "mimamori_index_lag_events",
                "Accepted events not yet committed to the search index",
            )?,
            search_seconds: histogram("mimamori_search_seconds", "Search latency")?,
        })
    }
}

/// The datasets `mimamori_events_accepted_total` names; others (a Windows channel a sender
/// made up) are counted as `windows.other` or `other`, so input cannot add series.
const DATASET_LABELS: &[&str] = &[
    "syslog",
    "ehr.audit",
    "ehr.atna",
    "ehr.fhir",
    "windows",
    "windows.security",
    "windows.system",
    "windows.application",
    "windows.microsoft-windows-sysmon/operational",
    "windows.microsoft-windows-terminalservices-localsessionmanager/operational",
    "windows.microsoft-windows-terminalservices-remoteconnectionmanager/operational",
    "windows.microsoft-windows-powershell/operational",
    "mimamori.gap",
];

pub(crate) fn dataset_label(dataset: &str) -> &'static str {
    match DATASET_LABELS.iter().find(|d| **d == dataset) {
        Some(d) => d,
        None if dataset.starts_with("windows.") => "windows.other",
        None => "other",
    }
}
