//! `mimamori import`: files and directories (`.gz` too) into the store, with a progress bar on a
//! terminal and a summary at the end. Re-importing adds nothing: records the store already
//! holds are counted as duplicates and skipped.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::IngestMetrics;
use ingest::import::{Format, ImportError, Importer, LineCap, Progress, Report};
use store::{Store, StoreMetrics};

use crate::Failure;
use crate::config::Checked;

pub struct Options {
    pub format: Format,
    pub allow_rejects: bool,
    pub report: Option<PathBuf>,
}

pub fn run(checked: &Checked, paths: &[PathBuf], options: Options) -> Result<(), Failure> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(Importer::expand(path).map_err(Failure::Usage)?);
    }
    if files.is_empty() {
        return Err(Failure::Usage("no files to import".into()));
    }
    let registry = prometheus::Registry::new();
    let runtime = |e: anyhow::Error| Failure::Runtime(e);
    let store = Store::open(
        &checked.config.storage,
        StoreMetrics::new(&registry).map_err(|e| runtime(e.into()))?,
    )
    .map_err(|e| {
        let hint = if e.to_string().contains("in use") {
            " (a running `mimamori serve` holds it: drop the files into its spool directory, or POST them to /api/v1/ingest)"
        } else {
            ""
        };
        Failure::Runtime(anyhow::anyhow!("cannot open the store: {e}{hint}"))
    })?;
    let importer = Importer::new(
        Arc::new(checked.parsers()),
        store.handle(),
        IngestMetrics::new(&registry).map_err(|e| runtime(e.into()))?,
    );
    let report_path = options.report.clone().unwrap_or_else(|| {
        checked
            .config
            .storage
            .data_dir
            .join("import-reports")
            .join(format!(
                "import-{}.rejects.txt",
                chrono::Local::now().format("%Y%m%d-%H%M%S")
            ))
    });
    // Every reject goes to the report, up to a million lines (then a count of the rest).
    let mut reject_log = LineCap::new(RejectFile::new(report_path), 1_000_000);
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let progress = Arc::new(Progress::default());
    let bar = ProgressDisplay::start(total_bytes, progress.clone());
    let started = Instant::now();
    let mut report = Report::default();
    for file in &files {
        bar.file(file);
        let result = importer.import_file(file, options.format, &progress, Some(&mut reject_log));
        match result {
            Ok(r) => report.merge(r),
            Err(ImportError::Store(e)) => {
                bar.finish();
                drop(importer);
                let _ = store.shutdown();
                return Err(Failure::Runtime(anyhow::anyhow!(e)));
            }
            Err(ImportError::Input(e)) => {
                // The file as a whole could not be read: count it, go on with the others.
                let _ = writeln!(reject_log, "{e}");
                report.merge(Report {
                    files: 1,
                    read: 1,
                    rejected: 1,
                    first_rejects: vec![ingest::import::Reject {
                        file: file.display().to_string(),
                        location: "file".into(),
                        reason: e,
                    }],
                    ..Report::default()
                });
            }
        }
    }
    bar.finish();
    drop(importer);
    store
        .shutdown()
        .context("the store did not shut down cleanly")
        .map_err(runtime)?;
    // The rules see what was imported in event-time order (files come one after another).
    let alerts = alerting::runner::catch_up_sorted(&checked.runner_settings(), checked.engine())
        .map_err(|e| runtime(e.into()))?;
    let elapsed = started.elapsed();
    let mut reject_file = reject_log.finish().map_err(|e| runtime(e.into()))?;
    print_summary(&report, elapsed, reject_file.path_if_written());
    println!("  alerts      {alerts:>10}  raised or continued (mimamori alerts)");
    if report.rejected > 0 && !options.allow_rejects {
        return Err(Failure::Rejected(format!(
            "{} record(s) rejected (pass --allow-rejects to accept that)",
            report.rejected
        )));
    }
    Ok(())
}

fn print_summary(report: &Report, elapsed: Duration, rejects_file: Option<&Path>) {
    let secs = elapsed.as_secs_f64().max(1e-6);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "imported {} file(s), {:.1} MB in {:.1} s ({:.0} events/s, {:.1} MB/s)",
        report.files,
        report.bytes as f64 / 1e6,
        secs,
        report.accepted as f64 / secs,
        report.bytes as f64 / 1e6 / secs
    );
    for (file, format) in report.formats.iter().take(20) {
        let _ = writeln!(out, "  {file}: {format}");
    }
    if report.formats.len() > 20 {
        let _ = writeln!(out, "  ... and {} more files", report.formats.len() - 20);
    }
    let _ = writeln!(out, "  read        {:>10}", report.read);
    let _ = writeln!(out, "  accepted    {:>10}", report.accepted);
    let _ = writeln!(
        out,
        "  duplicates  {:>10}  (already stored; skipped)",
        report.duplicates
    );
    let filtered: u64 = report.filtered.values().sum();
    let reasons: Vec<String> = report
        .filtered
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        out,
        "  filtered    {filtered:>10}  {}",
        if reasons.is_empty() {
            String::new()
        } else {
            let windows = report
                .filtered
                .keys()
                .any(|k| k == "machine_account" || k == "service_account");
            format!(
                "({}{})",
                reasons.join(", "),
                if windows {
                    "; see [windows] in the config"
                } else {
                    ""
                }
            )
        }
    );
    let _ = writeln!(out, "  rejected    {:>10}", report.rejected);
    if report.not_searchable > 0 {
        let _ = writeln!(
            out,
            "  stored in the log, not yet searchable: the index is behind (see /healthz); it catches up by itself"
        );
    }
    if !report.warnings.is_empty() {
        let w: Vec<String> = report
            .warnings
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "  kept with warnings: {}", w.join(", "));
    }
    if report.gaps > 0 {
        let _ = writeln!(
            out,
            "  gaps        {:>10}  ({} records missing in the sources' numbering; search event.action:sequence_gap)",
            report.gaps, report.missing_records
        );
    }
    if !report.first_rejects.is_empty() {
        let _ = writeln!(out, "first rejects:");
        for r in &report.first_rejects {
            let _ = writeln!(out, "  {r}");
        }
    }
    if let Some(path) = rejects_file {
        let _ = writeln!(out, "all rejects: {}", path.display());
    }
}

/// The report file of every reject, created at the first one.
struct RejectFile {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    failed: bool,
}

impl RejectFile {
    fn new(path: PathBuf) -> RejectFile {
        RejectFile {
            path,
            file: None,
            failed: false,
        }
    }

    fn path_if_written(&mut self) -> Option<&Path> {
        let file = self.file.as_mut()?;
        file.flush().ok()?;
        Some(&self.path)
    }
}

impl Write for RejectFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() && !self.failed {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::File::create(&self.path));
            match opened {
                Ok(f) => self.file = Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    eprintln!(
                        "mimamori: cannot write the reject report {}: {e}",
                        self.path.display()
                    );
                    self.failed = true;
                }
            }
        }
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
struct ProgressDisplay {
    bar: Option<indicatif::ProgressBar>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    fn start(total_bytes: u64, progress: Arc<Progress>) -> ProgressDisplay {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return ProgressDisplay {
                bar: None,
                stop,
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        let (b, s) = (bar.clone(), stop.clone());
        let ticker = std::thread::spawn(move || {
            let started = Instant::now();
            while !s.load(Ordering::Relaxed) {
                b.set_position(progress.bytes.load(Ordering::Relaxed));
                let events = progress.events.load(Ordering::Relaxed);
                let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                b.set_message(format!("{events} events ({rate:.0}/s)"));
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        ProgressDisplay {
            bar: Some(bar),
            stop,
            ticker: Some(ticker),
        }
    }

    fn file(&self, path: &Path) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(path.display().to_string());
        }
    }

    fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}
