//! `mimamori backup` and `mimamori restore`: a consistent copy of a running appliance into a
//! backup folder ([`store::backup::Vault`]), and a system rebuilt from it.
//!
//! Order matters for consistency while the service runs: the SQLite databases are copied
//! first (each with `VACUUM INTO`, a transaction-consistent copy), then the log; so the log
//! holds every event an alert, the rules' position or a review refers to, and a restored
//! system replays the few records the databases had not yet seen.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{NaiveTime, TimeZone, Utc};
use serde::Deserialize;
use store::backup::{Entry, Vault, put_log};

use crate::Failure;
use crate::config::Checked;

/// The databases of a data directory, in the order they are copied.
const DATABASES: [&str; 3] = ["alerts.db", "accounts.db", "reports.db"];

fn runtime(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Runtime(e.into())
}

/// `[backup]`: a daily backup made by the service itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// The backup folder; unset: no scheduled backup.
    pub dir: Option<PathBuf>,
    /// When, each day, in the clinic's time zone.
    pub time: String,
    /// Backups kept in the folder.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            dir: None,
            time: "02:30".into(),
            keep: 8,
        }
    }
}

impl BackupConfig {
    pub fn check(&self) -> Result<NaiveTime, (String, String)> {
        if self.keep == 0 {
            return Err(("backup.keep".into(), "at least 1".into()));
        }
        NaiveTime::parse_from_str(&self.time, "%H:%M").map_err(|_| {
            (
                "backup.time".into(),
                format!("a time like 02:30, not {:?}", self.time),
            )
        })
    }
}

/// The schedule's stage in `/healthz`.
pub const STAGE: &str = "backup";
/// After a failed backup, the next try.
const RETRY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Makes a backup into `[backup] dir` every day at `time` (clinic time), and at start when the
/// newest there is older than the last time due (the appliance was off). A failure is logged,
/// raised as a `backup` alert (delivered like any other) and tried again an hour later.
pub async fn schedule(checked: Checked, health: store::Health) {
    let (Some(dir), Ok(time)) = (
        checked.config.backup.dir.clone(),
        checked.config.backup.check(),
    ) else {
        return std::future::pending().await;
    };
    let zone = checked.clinic.zone;
    let keep = checked.config.backup.keep;
    loop {
        let now = Utc::now();
        let today = now.with_timezone(&zone).date_naive();
        let due = [today, today - chrono::Duration::days(1)]
            .into_iter()
            .filter_map(|day| zone.from_local_datetime(&day.and_time(time)).earliest())
            .map(|t| t.with_timezone(&Utc))
            .find(|t| *t <= now);
        let newest = store::backup::newest(&dir);
        let wanted = due.is_some_and(|due| newest.is_none_or(|made| made < due));
        if !wanted {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            continue;
        }
        let (c, d) = (checked.clone(), dir.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            // A missing folder is most likely a disk not mounted: never fill the system disk
            // with a backup meant for the USB disk or the NAS.
            if !d.is_dir() {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "{} does not exist (is the backup disk mounted?); create it once to start backing up there",
                    d.display()
                )));
            }
            take(&c, &d, Some(keep))
        })
        .await;
        match outcome {
            Ok(Ok(summary)) => {
                tracing::info!(summary, "scheduled backup made");
                if same_disk(&dir, &checked.config.storage.data_dir) {
                    // An unmounted disk's empty mount point looks like this too.
                    let reason = format!(
                        "the backup folder {} is on the same disk as the data: is the backup disk mounted?",
                        dir.display()
                    );
                    tracing::warn!("{reason}");
                    health.degraded(STAGE, &reason);
                } else {
                    health.running(STAGE);
                }
            }
            Ok(Err(failure)) => {
                let reason = match failure {
                    Failure::Usage(m) | Failure::Rejected(m) => m,
                    Failure::Runtime(e) => crate::causes(&e),
                };
                tracing::error!(dir = %dir.display(), reason, "the scheduled backup failed");
                health.degraded(STAGE, &format!("the last backup failed: {reason}"));
                raise_failure(&checked, &dir, &reason);
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "the scheduled backup stopped");
                health.degraded(STAGE, "the last backup stopped unexpectedly");
                raise_failure(&checked, &dir, "the backup stopped unexpectedly");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn raise_failure(checked: &Checked, dir: &Path, reason: &str) {
    let alert = rules::Alert::system(
        rules::RuleId::Backup,
        rules::Severity::High,
        format!(
            "定時のバックアップ({dir})に失敗しました。保存先(USBディスク・NAS)を確認してください。1時間後に再試行します。 / The scheduled backup to {dir} failed: {reason}. Check the backup disk or share; it is tried again in an hour.",
            dir = dir.display()
        ),
    );
    let dedup = chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes));
    let recorded = alerting::db::AlertDb::open(
        &alerting::runner::alerts_db_path(&checked.config.storage.data_dir),
        dedup,
    )
    .and_then(|mut db| db.record(&alert));
    if let Err(e) = recorded {
        tracing::error!(error = %e, "the backup failure could not be raised as an alert");
    }
}

pub fn backup(checked: &Checked, to: &Path, keep: Option<usize>) -> Result<(), Failure> {
    println!("{}", take(checked, to, keep)?);
    Ok(())
}

/// Makes one backup; returns what it did, for people.
fn take(checked: &Checked, to: &Path, keep: Option<usize>) -> Result<String, Failure> {
    let data_dir = &checked.config.storage.data_dir;
    if !data_dir.join("FORMAT").is_file() {
        return Err(Failure::Usage(format!(
            "{} is not a mimamori data directory (no FORMAT file): nothing to back up",
            data_dir.display()
        )));
    }
    if keep == Some(0) {
        return Err(Failure::Usage("--keep: at least 1".into()));
    }
    if real_path(to).starts_with(real_path(data_dir)) {
        return Err(Failure::Usage(format!(
            "--to {}: the backup must be outside the data directory (better: on another disk)",
            to.display()
        )));
    }
    let mut vault = Vault::open(to).map_err(|e| access_hint(e, to))?;
    let mut files: Vec<Entry> = Vec::new();
    for name in DATABASES {
        let db = data_dir.join(name);
        if db.is_file() {
            files.push(copy_database(&mut vault, &db, name)?);
        }
    }
    files.extend(put_log(&mut vault, data_dir).map_err(runtime)?);
    // The configuration, to be read back by a person (restore puts it beside the data).
    let mut config_files = vec![("mimamori.toml", checked.origin.0.clone())];
    config_files.push(("roster.csv", Some(checked.roster_file())));
    let appointments = &checked
        .config
        .detections
        .treatment_relationship
        .appointments_file;
    config_files.push(("appointments.csv", appointments.clone()));
    for (name, path) in config_files {
        let Some(path) = path.filter(|p| p.is_file()) else {
            continue;
        };
        let mut file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(runtime)?;
        files.push(
            vault
                .put(&format!("config/{name}"), &mut file, None)
                .map_err(runtime)?,
        );
    }
    let count = files.len();
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let name = vault.commit(files).map_err(runtime)?;
    let mut said = format!(
        "backup {name} in {}: {count} files, {:.1} MB; {} new ({:.1} MB copied), {} unchanged since an earlier backup",
        to.display(),
        total as f64 / 1e6,
        vault.copied.1,
        vault.copied.0 as f64 / 1e6,
        vault.reused
    );
    if same_disk(to, data_dir) {
        said.push_str(
            "\nnote: the backup folder is on the same disk as the data, so it does not outlive that disk: use a USB disk or a NAS share",
        );
    }
    if checked.config.storage.chain_key_file.is_some() {
        said.push_str(
            "\nnote: storage.chain_key_file is not in the backup (it must stay apart from the data): keep a copy of it elsewhere",
        );
    }
    if let Some(keep) = keep {
        let removed = vault.prune(keep).map_err(runtime)?;
        if removed > 0 {
            said.push_str(&format!(
                "\nremoved {removed} older backup(s), keeping the newest {keep}"
            ));
        }
    }
    Ok(said)
}

/// Whether `a` and `b` lie on one filesystem.
fn same_disk(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// The backup folder could not be opened: when it is for lack of rights, what to do.
fn access_hint(e: store::backup::BackupError, to: &Path) -> Failure {
    let kind = match &e {
        store::backup::BackupError::Io { source, .. } => Some(source.kind()),
        store::backup::BackupError::Invalid(_) => None,
    };
    let hint = match kind {
        Some(std::io::ErrorKind::ReadOnlyFilesystem) => {
            // systemd splits the setting at spaces unless the path is quoted.
            let path = format!("-{}", to.display());
            let path = if path.contains(char::is_whitespace) {
                format!("\"{path}\"")
            } else {
                path
            };
            format!(
                "; under the systemd unit only the data directory is writable: allow the folder with `systemctl edit mimamori` ([Service] ReadWritePaths={path}) and restart"
            )
        }
        Some(std::io::ErrorKind::PermissionDenied) => format!(
            "; the backup runs as the data directory's owner: make the folder theirs (`install -d -o mimamori -g mimamori -m 700 {}`)",
            to.display()
        ),
        _ => String::new(),
    };
    Failure::Runtime(anyhow::anyhow!("{e}{hint}"))
}

/// `path` with symbolic links resolved, as far as it exists (the rest appended as written).
fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// A transaction-consistent copy of one SQLite database, taken while the service writes it.
fn copy_database(vault: &mut Vault, db: &Path, name: &str) -> Result<Entry, Failure> {
    let scratch = vault.scratch(name);
    let _ = std::fs::remove_file(&scratch);
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))
    .map_err(runtime)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(runtime)?;
    conn.execute("VACUUM INTO ?1", [scratch.to_string_lossy()])
        .with_context(|| format!("cannot copy {}", db.display()))
        .map_err(runtime)?;
    drop(conn);
    let mut file = std::fs::File::open(&scratch).map_err(runtime)?;
    let entry = vault.put(name, &mut file, None).map_err(runtime)?;
    let _ = std::fs::remove_file(&scratch);
    Ok(entry)
}

/// The backup folder `from`, opened to read, and its snapshots: `snapshot` alone when given.
fn snapshots_in(from: &Path, snapshot: Option<&str>) -> Result<(Vault, Vec<String>), Failure> {
    if !from.join("snapshots").is_dir() {
        return Err(Failure::Usage(format!(
            "--from {}: not a mimamori backup folder (no snapshots/)",
            from.display()
        )));
    }
    let vault = Vault::open_to_read(from).map_err(runtime)?;
    let names = vault.snapshots().map_err(runtime)?;
    match snapshot {
        Some(name) if names.iter().any(|n| n == name) => Ok((vault, vec![name.to_owned()])),
        Some(name) => Err(Failure::Usage(format!(
            "--snapshot {name}: not in {} (it holds: {})",
            from.display(),
            names.join(", ")
        ))),
        None if names.is_empty() => Err(Failure::Runtime(anyhow::anyhow!(
            "{} holds no finished backup",
            from.display()
        ))),
        None => Ok((vault, names)),
    }
}

/// `restore --check`: every file of every snapshot read back against its checksum.
pub fn check(from: &Path, snapshot: Option<&str>) -> Result<(), Failure> {
    let (vault, names) = snapshots_in(from, snapshot)?;
    let mut bad = 0;
    for name in &names {
        let (files, bytes, damaged) = vault.check(name).map_err(runtime)?;
        if damaged.is_empty() {
            println!("{name}: {files} files, {bytes} bytes: all read back and match");
        } else {
            bad += 1;
            println!(
                "{name}: DAMAGED: {} of {files} files missing or changed: {}",
                damaged.len(),
                damaged.join(", ")
            );
        }
    }
    if bad > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{bad} of {} backups in {} cannot be restored whole; take a new backup (the files they share with it are written again)",
            names.len(),
            from.display()
        )));
    }
    Ok(())
}

pub fn restore(checked: &Checked, from: &Path, snapshot: Option<&str>) -> Result<(), Failure> {
    let data_dir = &checked.config.storage.data_dir;
    let in_use = std::fs::read_dir(data_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if data_dir.join(store::backup::RESTORING).exists() {
        return Err(Failure::Usage(format!(
            "{}: an earlier restore into it did not finish; empty the directory (keep the directory itself, with its owner) and run restore again",
            data_dir.display()
        )));
    }
    if in_use {
        return Err(Failure::Usage(format!(
            "{} is not empty: restore into an empty data directory (--data-dir), then point the service at it",
            data_dir.display()
        )));
    }
    let (vault, names) = snapshots_in(from, snapshot)?;
    // The one asked for, or the newest.
    let name = names
        .last()
        .cloned()
        .expect("snapshots_in returns at least one");
    let manifest = vault.restore(&name, data_dir).map_err(runtime)?;
    println!(
        "restored backup {name} (made {} by mimamori {}): {} files into {}",
        manifest.created.to_rfc3339(),
        manifest.mimamori,
        manifest.files.len(),
        data_dir.display()
    );
    crate::store_admin::reindex(checked)?;
    crate::store_admin::verify(checked)?;
    if crate::owner::effective_uid() == Some(0) {
        println!(
            "note: the restored files belong to root; a service that runs as its own user (the package's `mimamori`) cannot open them: `chown -R mimamori:mimamori {}`",
            data_dir.display()
        );
    }
    if manifest.files.iter().any(|f| f.path.starts_with("config/")) {
        println!(
            "the configuration of the backed-up system is in {}: compare it with yours before you start the service",
            data_dir.join("restored-config").display()
        );
    }
    Ok(())
}
