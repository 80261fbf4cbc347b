//! The spool directory: an EHR that can only export files drops them here; `serve` imports each
//! once it has stopped growing, then moves it to `done/` (with a `.rejects` file beside it when
//! some records were refused) or to `failed/` with a `.error` file that says why.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::IngestError;
use crate::import::{Format, ImportError, Importer, LineCap, Progress};

pub struct Spool {
    dir: PathBuf,
    poll: Duration,
    settle: Duration,
}

impl Spool {
    /// The spool in `dir` (created with its `done/` and `failed/`), looked at every `poll`; a
    /// file is taken once its size has stayed the same for `settle`.
    pub fn new(dir: PathBuf, poll: Duration, settle: Duration) -> Result<Spool, IngestError> {
        for sub in ["", "done", "failed"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|source| IngestError::Spool { path: d, source })?;
        }
        Ok(Spool { dir, poll, settle })
    }

    pub async fn run(self, importer: Arc<Importer>) {
        info!(dir = %self.dir.display(), "watching the spool directory");
        // path -> (size, since when it has had that size)
        let mut seen: HashMap<PathBuf, (u64, Instant)> = HashMap::new();
        let mut ignored: std::collections::HashSet<String> = std::collections::HashSet::new();
        loop {
            let ready = self.ready_files(&mut seen, &mut ignored);
            for path in ready {
                seen.remove(&path);
                let importer = importer.clone();
                let dir = self.dir.clone();
                let done =
                    tokio::task::spawn_blocking(move || take_file(&dir, &path, &importer)).await;
                if let Err(e) = done {
                    warn!(error = %e, "spool import task failed");
                }
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Files whose size has not changed for `settle`. Anything else there (a directory, a
    /// symbolic link, a pipe) is not imported, and said once (`ignored` remembers it).
    fn ready_files(
        &self,
        seen: &mut HashMap<PathBuf, (u64, Instant)>,
        ignored: &mut std::collections::HashSet<String>,
    ) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ready = Vec::new();
        let mut present = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file()
                && !name.starts_with('.')
                && !matches!(name.as_str(), "done" | "failed")
                && ignored.len() < 1000
                && ignored.insert(name.clone())
            {
                warn!(entry = %name, "the spool takes regular files only; this directory, link or pipe is not imported (put the files themselves in the spool directory)");
            }
            if !meta.is_file()
                || name.starts_with('.')
                || name.ends_with(".part")
                || name.ends_with(".tmp")
            {
                continue;
            }
            let path = entry.path();
            present.push(path.clone());
            let now = Instant::now();
            match seen.get(&path) {
                Some(&(size, since)) if size == meta.len() => {
                    if now.duration_since(since) >= self.settle {
                        ready.push(path);
                    }
                }
                _ => {
                    seen.insert(path, (meta.len(), now));
                }
            }
        }
        seen.retain(|p, _| present.contains(p));
        ready.sort();
        ready
    }
}

/// Rejects listed in a spool file's `.rejects` / `.error` note, at most.
const MAX_NOTE_LINES: u64 = 100_000;

/// Imports one spooled file and moves it out of the way. Rejects stream to a hidden file
/// beside it as they come (bounded), which becomes the note.
fn take_file(dir: &Path, path: &Path, importer: &Importer) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.rejects.partial"));
    let mut rejects = match std::fs::File::create(&partial) {
        Ok(f) => Some(LineCap::new(std::io::BufWriter::new(f), MAX_NOTE_LINES)),
        Err(e) => {
            warn!(error = %e, "cannot write the spool reject list; rejects are counted only");
            None
        }
    };
    let log = rejects.as_mut().map(|w| w as &mut dyn Write);
    let result = importer.import_file(path, Format::Auto, &Progress::default(), log);
    let listed = rejects.and_then(|w| w.finish().ok()).is_some();
    if let Err(ImportError::Store(e)) = &result {
        // A full disk: the file stays and is imported again once the log takes data (what
        // was stored before the refusal is skipped as a duplicate then).
        warn!(file = %name, error = %e, "spool file left in place until the store takes data again");
        let _ = std::fs::remove_file(&partial);
        return;
    }
    let (target, note): (&str, Option<(&str, String)>) = match &result {
        Ok(report) if report.accepted == 0 && report.rejected > 0 => (
            "failed",
            Some((
                "error",
                format!(
                    "nothing in this file could be imported: {} record(s) rejected\n",
                    report.rejected
                ),
            )),
        ),
        Ok(report) if report.rejected > 0 => ("done", Some(("rejects", String::new()))),
        Ok(_) => ("done", None),
        Err(e) => ("failed", Some(("error", format!("{e}\n")))),
    };
    match &result {
        Ok(r) => {
            info!(file = %name, accepted = r.accepted, duplicates = r.duplicates, rejected = r.rejected,
            filtered = r.filtered.values().sum::<u64>(), to = target, "spool file imported")
        }
        Err(e) => warn!(file = %name, error = %e, "spool file could not be imported"),
    }
    let destination = free_name(&dir.join(target), &name);
    if let Err(e) = std::fs::rename(path, &destination) {
        warn!(file = %name, error = %e, "cannot move the spool file; it will be imported again (duplicates are skipped)");
        let _ = std::fs::remove_file(&partial);
        return;
    }
    if let Some((ext, head)) = note {
        let mut note_path = destination.into_os_string();
        note_path.push(format!(".{ext}"));
        let written = std::fs::File::create(&note_path).and_then(|mut out| {
            out.write_all(head.as_bytes())?;
            if listed && let Ok(mut list) = std::fs::File::open(&partial) {
                std::io::copy(&mut list, &mut out)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            warn!(error = %e, "cannot write the spool note");
        }
    }
    let _ = std::fs::remove_file(&partial);
}

/// `dir/name`, or `dir/name.2`, `.3`, ... when taken.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}
