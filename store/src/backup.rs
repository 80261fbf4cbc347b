//! Backups: a folder (a USB disk, a NAS share) of snapshots. Each snapshot is a manifest
//! (`snapshots/<time>/MANIFEST.json`: every file's path in the data directory, SHA-256 and
//! size); the files themselves are kept once each by content (`objects/<aa>/<sha256>`), so a
//! second backup copies only what changed (the log's sealed segments never do). A snapshot
//! exists only once its manifest is written, last; a backup cut short leaves objects that the
//! next pruning removes.
//!
//! The log is copied while it is written: the data directory's `FORMAT`, the segments oldest
//! first (a segment sealed or removed by retention during the copy is looked up again), the
//! active one as far as it was written when its copy began. A record cut at that point was not
//! yet in the snapshot; a restored store sets it aside as a torn write, as after a power cut.
//! The index is not copied: a restore rebuilds it from the log.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's format.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Where it goes, relative to the data directory (`/`-separated, never `..`).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The release that wrote it.
    pub mimamori: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub files: Vec<Entry>,
}

/// The file in a data directory while a restore writes into it.
pub const RESTORING: &str = "RESTORING";

/// A backup folder, locked while open: one backup (or restore) at a time.
pub struct Vault {
    dir: PathBuf,
    _lock: File,
    /// Bytes copied and files already held, in this run.
    pub copied: (u64, u64),
    pub reused: u64,
}

impl Vault {
    /// Opens (or creates) the backup folder `dir`.
    pub fn open(dir: &Path) -> Result<Vault, BackupError> {
        for sub in ["objects", "snapshots", "tmp"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_at(&path))?;
        }
        let lock_path = dir.join("lock");
        let lock = private_file(&lock_path, false).map_err(io_at(&lock_path))?;
        held(&lock_path, lock.try_lock())?;
        // Scratch files of runs that were cut short (nobody else holds the folder now).
        let tmp = dir.join("tmp");
        for old in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
            let _ = fs::remove_file(old.path());
        }
        Ok(Vault {
            dir: dir.to_owned(),
            _lock: lock,
            copied: (0, 0),
            reused: 0,
        })
    }

    fn object(&self, sha256: &str) -> PathBuf {
        self.dir.join("objects").join(&sha256[..2]).join(sha256)
    }

    /// Opens the backup folder `dir` to restore from it, without writing to it (it may be a
    /// read-only medium); a backup running into it meanwhile is refused.
    pub fn open_to_read(dir: &Path) -> Result<Vault, BackupError> {
        let lock_path = dir.join("lock");
        let lock = File::open(&lock_path).map_err(io_at(&lock_path))?;
        held(&lock_path, lock.try_lock_shared())?;
        Ok(Vault {
            dir: dir.to_owned(),
            _lock: lock,
            copied: (0, 0),
            reused: 0,
        })
    }

    /// A temporary file of this vault (same filesystem as its objects).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir
            .join("tmp")
            .join(format!("{}-{name}", std::process::id()))
    }

    /// Keeps the first `limit` bytes of `reader` (all when `None`) as the file `path` of the
    /// snapshot being made.
    pub fn put(
        &mut self,
        path: &str,
        reader: &mut dyn Read,
        limit: Option<u64>,
    ) -> Result<Entry, BackupError> {
        check_path(path)?;
        let scratch = self.scratch("object");
        let mut out = private_file(&scratch, true).map_err(io_at(&scratch))?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut reader: Box<dyn Read + '_> = match limit {
            Some(n) => Box::new(reader.take(n)),
            None => Box::new(reader),
        };
        loop {
            let n = reader.read(&mut buf).map_err(io_at(Path::new(path)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_at(&scratch))?;
            bytes += n as u64;
        }
        let sha256 = hex(&hasher.finalize());
        let object = self.object(&sha256);
        // An object already there is read back: a copy damaged on the medium (a flipped bit
        // on the USB disk) is replaced by the good bytes just read, never taken as held.
        let held = fs::metadata(&object).is_ok_and(|m| m.len() == bytes)
            && File::open(&object)
                .and_then(|mut f| hash_all(&mut f))
                .is_ok_and(|(held, _)| held == sha256);
        if held {
            fs::remove_file(&scratch).map_err(io_at(&scratch))?;
            self.reused += 1;
        } else {
            out.sync_all().map_err(io_at(&scratch))?;
            let parent = object.parent().expect("objects have a folder");
            fs::create_dir_all(parent).map_err(io_at(parent))?;
            fs::rename(&scratch, &object).map_err(io_at(&object))?;
            self.copied.0 += bytes;
            self.copied.1 += 1;
        }
        Ok(Entry {
            path: path.to_owned(),
            sha256,
            bytes,
        })
    }

    /// Writes the manifest: from now on the snapshot exists. Returns its name.
    pub fn commit(&self, files: Vec<Entry>) -> Result<String, BackupError> {
        let created = chrono::Utc::now();
        let mut name = created.format("%Y%m%dT%H%M%SZ").to_string();
        let mut n = 1;
        while self.dir.join("snapshots").join(&name).exists() {
            n += 1;
            name = format!("{}-{n}", created.format("%Y%m%dT%H%M%SZ"));
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            mimamori: env!("CARGO_PKG_VERSION").to_owned(),
            created,
            files,
        };
        let folder = self.dir.join("snapshots").join(&name);
        let scratch = self.scratch("manifest");
        let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        let mut file = private_file(&scratch, true).map_err(io_at(&scratch))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(io_at(&scratch))?;
        fs::create_dir_all(&folder).map_err(io_at(&folder))?;
        let path = folder.join("MANIFEST.json");
        fs::rename(&scratch, &path).map_err(io_at(&path))?;
        Ok(name)
    }

    /// Snapshot names, oldest first.
    pub fn snapshots(&self) -> Result<Vec<String>, BackupError> {
        snapshot_names(&self.dir)
    }
}

/// The finished snapshots in backup folder `vault`, oldest first.
fn snapshot_names(vault: &Path) -> Result<Vec<String>, BackupError> {
    let dir = vault.join("snapshots");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(io_at(&dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("MANIFEST.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// When the newest snapshot in backup folder `vault` was made (from its name), if it has one;
/// reads only (no lock, nothing created: a missing folder has none).
pub fn newest(vault: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    snapshot_names(vault).ok()?.iter().rev().find_map(|name| {
        chrono::NaiveDateTime::parse_from_str(name.get(..16)?, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    })
}

impl Vault {
    pub fn manifest(&self, name: &str) -> Result<Manifest, BackupError> {
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(BackupError::Invalid(format!("`{name}` is not a snapshot")));
        }
        let path = self.dir.join("snapshots").join(name).join("MANIFEST.json");
        let text = fs::read(&path).map_err(io_at(&path))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
            BackupError::Invalid(format!("{}: not a manifest: {e}", path.display()))
        })?;
        if manifest.format > MANIFEST_FORMAT {
            return Err(BackupError::Invalid(format!(
                "{}: written by a newer release ({}, manifest format {}): restore it with that release or newer",
                path.display(),
                manifest.mimamori,
                manifest.format
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for entry in &manifest.files {
            check_path(&entry.path)?;
            let hex_ok = entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok || !seen.insert(entry.path.clone()) {
                return Err(BackupError::Invalid(format!(
                    "{}: `{}` is listed twice or without a SHA-256: the manifest is damaged",
                    path.display(),
                    entry.path
                )));
            }
        }
        Ok(manifest)
    }

    /// Copies every file of snapshot `name` into `data_dir`, which must be empty: every object
    /// is checked against its SHA-256 first, and what was written is removed again when a copy
    /// fails, so a failed restore leaves the directory as empty as it was. Files under
    /// `config/` go to `<data_dir>/restored-config/`. Everything is written readable by the
    /// owner only (the databases hold password hashes).
    pub fn restore(&self, name: &str, data_dir: &Path) -> Result<Manifest, BackupError> {
        let manifest = self.manifest(name)?;
        if manifest.files.is_empty() {
            return Err(BackupError::Invalid(format!(
                "snapshot {name} lists no files: the manifest is damaged"
            )));
        }
        for entry in &manifest.files {
            self.check_object(entry)?;
        }
        fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
        // Until every file is in place, the directory says so: a restore cut short (kill,
        // power) is refused by the server, `verify` and a second restore, never taken whole.
        let marker = data_dir.join(RESTORING);
        let result = private_file(&marker, true)
            .and_then(|mut f| {
                f.write_all(b"a restore into this directory has not finished\n")?;
                f.sync_all()
            })
            .map_err(io_at(&marker))
            .and_then(|()| {
                manifest
                    .files
                    .iter()
                    .try_for_each(|entry| self.restore_one(entry, data_dir))
            })
            .and_then(|()| {
                fs::remove_file(&marker).map_err(io_at(&marker))?;
                File::open(data_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_at(data_dir))
            });
        if let Err(e) = result {
            // The directory was empty: take back everything in it.
            if let Ok(entries) = fs::read_dir(data_dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                }
            }
            return Err(e);
        }
        Ok(manifest)
    }

    /// Reads every file of snapshot `name` against its SHA-256 (the copy on an offline disk
    /// is only worth what can be read back): the number of files and bytes read, and what is
    /// missing or damaged. A damaged object is renamed `<sha256>.damaged` where the medium
    /// allows, so that the next backup writes it again instead of taking it as held.
    pub fn check(&self, name: &str) -> Result<(usize, u64, Vec<String>), BackupError> {
        let manifest = self.manifest(name)?;
        let mut bytes = 0;
        let mut damaged = Vec::new();
        for entry in &manifest.files {
            match self.check_object(entry) {
                Ok(()) => bytes += entry.bytes,
                Err(BackupError::Invalid(_)) => {
                    let object = self.object(&entry.sha256);
                    let _ = fs::rename(&object, object.with_extension("damaged"));
                    damaged.push(entry.path.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Ok((manifest.files.len(), bytes, damaged))
    }

    /// Reads one object whole and compares it with the manifest.
    fn check_object(&self, entry: &Entry) -> Result<(), BackupError> {
        let object = self.object(&entry.sha256);
        let damaged = || {
            BackupError::Invalid(format!(
                "{}: the backup's copy of {} is missing or damaged (its checksum does not match the manifest); nothing was restored",
                object.display(),
                entry.path
            ))
        };
        let mut from = File::open(&object).map_err(|_| damaged())?;
        let (sha256, bytes) = hash_all(&mut from).map_err(io_at(&object))?;
        if sha256 != entry.sha256 || bytes != entry.bytes {
            return Err(damaged());
        }
        Ok(())
    }

    fn restore_one(&self, entry: &Entry, data_dir: &Path) -> Result<(), BackupError> {
        let object = self.object(&entry.sha256);
        let relative = match entry.path.strip_prefix("config/") {
            Some(rest) => format!("restored-config/{rest}"),
            None => entry.path.clone(),
        };
        let target = data_dir.join(&relative);
        let parent = target.parent().expect("inside the data directory");
        fs::create_dir_all(parent).map_err(io_at(parent))?;
        let partial = parent.join(format!(".restoring-{}", entry.sha256));
        let mut from = File::open(&object).map_err(io_at(&object))?;
        let mut to = private_file(&partial, true).map_err(io_at(&partial))?;
        let copied = io::copy(&mut from, &mut to).map_err(io_at(&partial))?;
        if copied != entry.bytes {
            let _ = fs::remove_file(&partial);
            return Err(BackupError::Invalid(format!(
                "{}: changed while it was restored",
                object.display()
            )));
        }
        to.sync_all().map_err(io_at(&partial))?;
        fs::rename(&partial, &target).map_err(io_at(&target))
    }

    /// Keeps the newest `keep` snapshots (at least one) and the objects they use.
    pub fn prune(&self, keep: usize) -> Result<usize, BackupError> {
        let names = self.snapshots()?;
        let cut = names.len().saturating_sub(keep.max(1));
        for name in &names[..cut] {
            let path = self.dir.join("snapshots").join(name);
            fs::remove_dir_all(&path).map_err(io_at(&path))?;
        }
        let mut used = std::collections::HashSet::new();
        for name in &names[cut..] {
            for entry in self.manifest(name)?.files {
                used.insert(entry.sha256);
            }
        }
        let objects = self.dir.join("objects");
        for shard in fs::read_dir(&objects).map_err(io_at(&objects))? {
            let shard = shard.map_err(io_at(&objects))?.path();
            for object in fs::read_dir(&shard).map_err(io_at(&shard))? {
                let object = object.map_err(io_at(&shard))?.path();
                let name = object.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if !used.contains(name) {
                    fs::remove_file(&object).map_err(io_at(&object))?;
                }
            }
        }
        // Scratch files of runs that did not finish.
        let tmp = self.dir.join("tmp");
        for old in fs::read_dir(&tmp).map_err(io_at(&tmp))?.flatten() {
            let _ = fs::remove_file(old.path());
        }
        Ok(cut)
    }
}

/// Copies the log of `data_dir` into the snapshot being made: `FORMAT`, `wal/retained.json`
/// and every segment, oldest first. Returns their entries.
pub fn put_log(vault: &mut Vault, data_dir: &Path) -> Result<Vec<Entry>, BackupError> {
    let mut entries = Vec::new();
    for name in ["FORMAT", "wal/retained.json"] {
        let path = data_dir.join(name);
        match File::open(&path) {
            Ok(mut file) => entries.push(vault.put(name, &mut file, None)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
    }
    let wal = data_dir.join("wal");
    let mut done: std::collections::BTreeSet<u64> = std::collections::BTreeSet::new();
    // A segment sealed (renamed) or removed while we copy is looked up again; a few rounds are
    // always enough, as only the oldest and the newest segments change.
    for _round in 0..5 {
        let segments = crate::wal::segments(&wal)
            .map_err(|e| BackupError::Invalid(format!("{}: {e}", wal.display())))?;
        let mut vanished = false;
        for (first, path) in segments {
            if done.contains(&first) {
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = true;
                    continue;
                }
                Err(e) => return Err(io_at(&path)(e)),
            };
            let len = file.metadata().map_err(io_at(&path))?.len();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            entries.push(vault.put(&format!("wal/{name}"), &mut file, Some(len))?);
            done.insert(first);
        }
        if !vanished {
            return Ok(entries);
        }
    }
    Err(BackupError::Invalid(
        "the log changed under the backup five times in a row; try again".into(),
    ))
}

/// The folder's lock taken, or why not.
fn held(lock: &Path, tried: Result<(), fs::TryLockError>) -> Result<(), BackupError> {
    match tried {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => Err(BackupError::Invalid(format!(
            "{}: another backup or restore is using this folder; try again when it is done",
            lock.parent().unwrap_or(lock).display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(io_at(lock)(e)),
    }
}

/// A new file readable by its owner only (`truncate`: empty it if it exists).
fn private_file(path: &Path, truncate: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

/// A snapshot's path stays inside the data directory.
fn check_path(path: &str) -> Result<(), BackupError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(BackupError::Invalid(format!(
            "`{path}` is not a path inside a data directory"
        )))
    }
}

/// The SHA-256 (hex) and length of everything `from` reads.
fn hash_all(from: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok((hex(&hasher.finalize()), bytes));
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_share_unchanged_files_restore_checked_and_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let mut vault = Vault::open(&tmp.path().join("b")).unwrap();
        let a = vault.put("wal/a", &mut &b"sealed"[..], None).unwrap();
        let b = vault.put("alerts.db", &mut &b"one"[..], None).unwrap();
        let first = vault.commit(vec![a.clone(), b.clone()]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        drop(vault);
        let mut vault = Vault::open(&tmp.path().join("b")).unwrap();
        assert!(
            Vault::open(&tmp.path().join("b")).is_err(),
            "one backup at a time"
        );
        let a2 = vault
            .put("wal/a", &mut &b"sealed and more"[..], Some(6))
            .unwrap();
        assert_eq!(a2, a, "only the first bytes, and kept once");
        let c = vault.put("alerts.db", &mut &b"two"[..], None).unwrap();
        assert_eq!((vault.reused, vault.copied.1), (1, 1));
        let second = vault.commit(vec![a2, c.clone()]).unwrap();
        assert_eq!(
            vault.snapshots().unwrap(),
            vec![first.clone(), second.clone()]
        );

        let out = tmp.path().join("restored");
        vault.restore(&first, &out).unwrap();
        assert_eq!(fs::read(out.join("alerts.db")).unwrap(), b"one");
        assert!(
            !out.join(RESTORING).exists(),
            "a finished restore leaves no marker"
        );
        assert_eq!(vault.prune(1).unwrap(), 1);
        assert_eq!(vault.snapshots().unwrap(), vec![second.clone()]);
        assert!(
            vault.object(&a.sha256).exists(),
            "still used by the kept snapshot"
        );
        assert!(
            !vault.object(&b.sha256).exists(),
            "used only by the pruned one"
        );

        // A damaged object is refused, naming the file.
        let object = vault.object(&c.sha256);
        fs::write(&object, b"tw0").unwrap();
        let err = vault
            .restore(&second, &tmp.path().join("again"))
            .unwrap_err();
        assert!(err.to_string().contains("alerts.db"), "{err}");
        // `check` names it and sets it aside, so the next backup writes it again.
        let (files, _, damaged) = vault.check(&second).unwrap();
        assert_eq!((files, damaged), (2, vec!["alerts.db".to_owned()]));
        let c2 = vault.put("alerts.db", &mut &b"two"[..], None).unwrap();
        assert_eq!(c2, c);
        assert_eq!(fs::read(&object).unwrap(), b"two");
        let (_, bytes, damaged) = vault.check(&second).unwrap();
        assert_eq!((bytes, damaged.len()), (9, 0));
        // A backup reads back what it reuses: a copy damaged to the same size is replaced.
        fs::write(&object, b"tw0").unwrap();
        vault.put("alerts.db", &mut &b"two"[..], None).unwrap();
        assert_eq!(fs::read(&object).unwrap(), b"two");
        assert!(check_path("../etc/passwd").is_err());
        assert!(vault.manifest("../x").is_err());
    }
}
