//! The demo's local mailbox: what the email channel sent, received by a real SMTP server on a
//! loopback port ([`smtp::Receiver`]) and kept as `.eml` files, so that `mimamori demo` shows
//! alert delivery working end to end without sending anything off the machine. The web UI
//! lists and opens them ([`Mailbox::list`], [`Mailbox::open`]).

mod mime;
pub mod smtp;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use mime::Mail;

/// A message bigger than this is refused (552).
pub const MAX_MESSAGE_BYTES: usize = 10 << 20;
/// Received messages kept at most, in bytes: beyond, new ones are refused (452) until some
/// are deleted, so a flood cannot fill the disk the demo's data is on.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;
/// Messages listed at most, newest first.
pub const MAX_LISTED: usize = 500;

/// A directory of received messages, one `.eml` file each, named so that they sort by arrival.
#[derive(Debug, Clone)]
pub struct Mailbox {
    dir: PathBuf,
    /// [`MAX_TOTAL_BYTES`], smaller in tests.
    limit: u64,
}

/// One message as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// The file's name without `.eml`: what [`Mailbox::open`] takes.
    pub id: String,
    pub to: String,
    pub subject: String,
    /// Arrival, from the file's time.
    pub received: chrono::DateTime<chrono::Utc>,
    pub bytes: u64,
}

impl Mailbox {
    pub fn new(dir: impl Into<PathBuf>) -> Mailbox {
        Mailbox {
            dir: dir.into(),
            limit: MAX_TOTAL_BYTES,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one received message whole (a temporary name, then renamed), with the envelope in
    /// `X-Mimamori-*` headers on top.
    pub fn keep(&self, from: &str, to: &[String], body: &[u8], n: u64) -> std::io::Result<()> {
        let held: u64 = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if held + body.len() as u64 > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("the mailbox holds {held} bytes already"),
            ));
        }
        let now = chrono::Utc::now();
        let id = format!("{}-{n:06}", now.format("%Y%m%dT%H%M%S%.6fZ"));
        let temporary = self.dir.join(format!(".{id}.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        write!(
            file,
            "X-Mimamori-Envelope-From: {}\r\nX-Mimamori-Envelope-To: {}\r\n",
            clean(from),
            clean(&to.join(", "))
        )?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.dir.join(format!("{id}.eml")))
    }

    /// The newest [`MAX_LISTED`] messages, newest first.
    pub fn list(&self) -> std::io::Result<Vec<Summary>> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".eml").map(str::to_owned))
                .filter(|n| valid_id(n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        names.sort_unstable_by(|a, b| b.cmp(a));
        names.truncate(MAX_LISTED);
        let mut out = Vec::with_capacity(names.len());
        for id in names {
            let path = self.dir.join(format!("{id}.eml"));
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let head = mime::read_head(&path)?;
            out.push(Summary {
                to: head.header("to").unwrap_or_default(),
                subject: head.header("subject").unwrap_or_default(),
                received: meta
                    .modified()
                    .map(chrono::DateTime::<chrono::Utc>::from)
                    .unwrap_or_default(),
                bytes: meta.len(),
                id,
            });
        }
        Ok(out)
    }

    /// One message, decoded; `None` for a name that is not one of this mailbox's messages.
    pub fn open(&self, id: &str) -> std::io::Result<Option<Mail>> {
        if !valid_id(id) {
            return Ok(None);
        }
        match std::fs::read(self.dir.join(format!("{id}.eml"))) {
            Ok(bytes) => Ok(Some(Mail::parse(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Names this mailbox writes: digits, letters, `.`, `-` (never a path).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_refuses_new_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox {
            dir: dir.path().to_owned(),
            limit: 1000,
        };
        mailbox
            .keep("x@y", &["a@b".into()], &[b'a'; 600], 1)
            .unwrap();
        let full = mailbox
            .keep("x@y", &["a@b".into()], &[b'b'; 600], 2)
            .unwrap_err();
        assert_eq!(full.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(mailbox.list().unwrap().len(), 1);
    }

    #[test]
    fn messages_are_kept_listed_newest_first_and_only_by_their_own_names() {
        let dir = tempfile::tempdir().unwrap();
        let mailbox = Mailbox::new(dir.path());
        let body = |subject: &str| {
            format!("Subject: {subject}\r\nTo: a@b.example\r\n\r\nhello\r\n").into_bytes()
        };
        mailbox
            .keep("x@y", &["a@b.example".into()], &body("first"), 1)
            .unwrap();
        mailbox
            .keep("x@y", &["a@b.example".into()], &body("second"), 2)
            .unwrap();
        let list = mailbox.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].subject, "second");
        assert_eq!(list[1].to, "a@b.example");
        let mail = mailbox.open(&list[1].id).unwrap().unwrap();
        assert_eq!(mail.subject, "first");
        assert_eq!(mail.text.as_deref().map(str::trim), Some("hello"));
        for bad in ["../etc/passwd", "", ".hidden", "a/b"] {
            assert!(mailbox.open(bad).unwrap().is_none(), "{bad}");
        }
    }
}
