//! People who sign in to the web UI: accounts with a role, passwords hashed with argon2id,
//! lockout after repeated failures, and sessions (`<data_dir>/accounts.db`, SQLite). A session
//! is known by the SHA-256 of its cookie, never the cookie itself, and carries its own CSRF
//! token.

use std::path::{Path, PathBuf};

pub use crate::sessions::{Session, SessionLimits};
pub use crate::web_config::{WebConfig, accounts_db_path};
use std::sync::Mutex;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// What a person may do. Each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search and reports.
    Viewer,
    /// Plus alerts and sign-off.
    Auditor,
    /// Plus users, tokens and settings.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Role, AccountError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "auditor" => Ok(Role::Auditor),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::Invalid(format!(
                "a role is admin, auditor or viewer, not {other:?}"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("no account named {0:?}")]
    NotFound(String),
    #[error("an account named {0:?} exists already")]
    Exists(String),
    #[error("no API token named {0:?}")]
    TokenNotFound(String),
    #[error("an API token named {0:?} exists already (a revoked one keeps its name)")]
    TokenExists(String),
}

/// Why a sign-in failed. The page says the same for an unknown name and a wrong password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown name or wrong password.
    Refused,
    /// Too many failures: locked until then.
    Locked(DateTime<Utc>),
    Disabled,
}

/// Failures in a row that lock an account.
pub const LOCKOUT_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT_MINUTES: i64 = 15;
/// Shortest password accepted (NIST SP 800-63B asks for at least 8; a shared clinic PC
/// deserves more).
pub const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_BYTES: usize = 1024;

/// A signed-in person, as the pages see them.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// The language they chose (`ja` / `en`); none: the browser's.
    pub lang: Option<String>,
}

/// An account as listed.
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Locked after failed sign-ins until then (RFC 3339).
    pub locked_until: Option<String>,
}

pub struct AccountDb {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// A hash checked when the name is unknown, so both cost the same time.
    decoy: String,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS users (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        role TEXT NOT NULL,
        hash TEXT NOT NULL,
        lang TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sessions (
        digest TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        seen_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS tokens (
        name TEXT PRIMARY KEY COLLATE NOCASE,
        digest TEXT NOT NULL UNIQUE,
        scopes TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    PRAGMA user_version = 2;";

/// Columns added after the first release (two-factor sign-in), added where missing.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("users", "totp_secret TEXT"),
    ("users", "totp_pending TEXT"),
    ("users", "totp_step INTEGER"),
    ("users", "recovery TEXT"),
    ("sessions", "pending INTEGER NOT NULL DEFAULT 0"),
    ("sessions", "tries INTEGER NOT NULL DEFAULT 0"),
];

/// 32 random bytes, URL-safe base64: a session cookie, a CSRF token, a setup token.
pub fn random_token() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A time as stored (RFC 3339); an unreadable one is the epoch (long past).
pub(crate) fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

pub(crate) fn digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hash(password: &str) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Account names: letters, digits, `.`, `_`, `-`, `@`, 1 to 64 of them.
pub fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(
            "an account name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`".into(),
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), AccountError> {
    let letters = password.chars().filter(|c| !c.is_whitespace()).count();
    if letters < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
        return Err(AccountError::Invalid(format!(
            "a password is at least {MIN_PASSWORD_CHARS} characters besides spaces (and at most {MAX_PASSWORD_BYTES} bytes)"
        )));
    }
    Ok(())
}

impl AccountDb {
    pub fn open(path: &Path) -> Result<AccountDb, AccountError> {
        let err = |source| AccountError::Sqlite {
            path: path.to_owned(),
            source,
        };
        // The file holds password hashes and second-factor secrets: its owner's only.
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path);
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                if file.exists() {
                    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        for (table, column) in ADDED_COLUMNS {
            let name = column.split(' ').next().unwrap_or(column);
            let exists: bool = conn
                .query_row(
                    &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                    params![name],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?
                > 0;
            if !exists {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column}"))
                    .map_err(err)?;
            }
        }
        Ok(AccountDb {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            decoy: hash(&random_token())?,
        })
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> AccountError + '_ {
        |source| AccountError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether nobody has an account yet (the first-run setup is open).
    pub fn is_empty(&self) -> Result<bool, AccountError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(n == 0)
    }

    pub fn add(
        &self,
        name: &str,
        role: Role,
        password: &str,
        by: &str,
    ) -> Result<(), AccountError> {
        self.insert(name, role, password, by, false)
    }

    /// Adds the first account, in one statement that finds none yet: of two setups at once,
    /// one wins.
    pub fn add_first(&self, name: &str, password: &str) -> Result<(), AccountError> {
        self.insert(name, Role::Admin, password, "setup", true)
    }

    fn insert(
        &self,
        name: &str,
        role: Role,
        password: &str,
        by: &str,
        first: bool,
    ) -> Result<(), AccountError> {
        check_name(name)?;
        check_password(password)?;
        let hash = hash(password)?;
        let added = self
            .conn()
            .execute(
                "INSERT INTO users (name, role, hash, created_at, created_by)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT ?6 OR NOT EXISTS (SELECT 1 FROM users)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    name,
                    role.as_str(),
                    hash,
                    Utc::now().to_rfc3339(),
                    by,
                    first
                ],
            )
            .map_err(self.err())?;
        match added {
            0 if first => Err(AccountError::Invalid(
                "the first account exists already: sign in".into(),
            )),
            0 => Err(AccountError::Exists(name.to_owned())),
            _ => Ok(()),
        }
    }

    /// Counts a failed second-factor code against the account as a failed sign-in: after
    /// [`LOCKOUT_FAILURES`] in a row it is locked, and the password step refuses it too.
    pub fn count_failure(&self, name: &str) {
        let until = (Utc::now() + Duration::minutes(LOCKOUT_MINUTES)).to_rfc3339();
        let _ = self.conn().execute(
            "UPDATE users SET failures = failures + 1,
               locked_until = CASE WHEN failures + 1 >= ?2 THEN ?3 ELSE locked_until END
             WHERE name = ?1",
            params![name, LOCKOUT_FAILURES, until],
        );
    }

    /// A sign-in is complete (the second factor was right): the count starts again.
    pub fn clear_failures(&self, name: &str) {
        let _ = self.conn().execute(
            "UPDATE users SET failures = 0 WHERE name = ?1",
            params![name],
        );
    }

    /// Whether the account is locked now.
    pub fn locked(&self, name: &str) -> bool {
        self.conn()
            .query_row(
                "SELECT locked_until FROM users WHERE name = ?1",
                params![name],
                |r| r.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten()
            .is_some_and(|t| parse_time(&t) > Utc::now())
    }

    /// Ends the account's sessions but `keep` (a change of its second factor).
    pub fn end_sessions(&self, name: &str, keep: Option<&str>) {
        let keep = keep.map(digest).unwrap_or_default();
        let _ = self.conn().execute(
            "DELETE FROM sessions WHERE user = ?1 AND digest != ?2",
            params![name, keep],
        );
    }

    /// Sets a new password; the account's sessions end and a lockout is lifted.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        check_password(password)?;
        let hash = hash(password)?;
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE users SET hash = ?2, failures = 0, locked_until = NULL WHERE name = ?1",
                params![name, hash],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        conn.execute("DELETE FROM sessions WHERE user = ?1", params![name])
            .map_err(self.err())?;
        Ok(())
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<AccountInfo>, AccountError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, role, disabled, locked_until FROM users ORDER BY name")
            .map_err(self.err())?;
        type Row = (String, String, bool, Option<String>);
        let rows = stmt
            .query_map([], |r| Row::try_from(r))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, disabled, locked_until) = row.map_err(self.err())?;
            out.push(AccountInfo {
                name,
                role: role.parse().unwrap_or(Role::Viewer),
                disabled,
                locked_until,
            });
        }
        Ok(out)
    }

    /// Checks a name and password; counts failures and locks the account after
    /// [`LOCKOUT_FAILURES`] in a row.
    pub fn login(&self, name: &str, password: &str) -> Result<Account, LoginError> {
        let now = Utc::now();
        type Row = (String, String, String, Option<String>, bool, Option<String>);
        let row: Option<Row> = self
            .conn()
            .query_row(
                "SELECT name, role, hash, lang, disabled, locked_until FROM users WHERE name = ?1",
                params![name],
                |r| Row::try_from(r),
            )
            .optional()
            .ok()
            .flatten();
        let Some((name, role, stored, lang, disabled, locked)) = row else {
            verify(password, &self.decoy);
            return Err(LoginError::Refused);
        };
        if let Some(until) = locked.as_deref().map(parse_time).filter(|t| *t > now) {
            // As slow as a wrong password: the time taken does not tell a locked account apart.
            verify(password, &self.decoy);
            return Err(LoginError::Locked(until));
        }
        // The attempt is counted before the password is checked, so guesses sent at once
        // cannot outrun the lockout; a success clears the count.
        let until = (now + Duration::minutes(LOCKOUT_MINUTES)).to_rfc3339();
        let attempt: u32 = self
            .conn()
            .query_row(
                "UPDATE users SET failures = failures + 1 WHERE name = ?1 RETURNING failures",
                params![name],
                |r| r.get(0),
            )
            .unwrap_or(u32::MAX);
        let lock = || {
            let _ = self.conn().execute(
                "UPDATE users SET locked_until = ?2, failures = 0 WHERE name = ?1",
                params![name, until],
            );
        };
        if attempt > LOCKOUT_FAILURES {
            lock();
            verify(password, &self.decoy);
            return Err(LoginError::Locked(now + Duration::minutes(LOCKOUT_MINUTES)));
        }
        // The hash is checked outside the lock: it takes a while by design.
        if !verify(password, &stored) {
            if attempt >= LOCKOUT_FAILURES {
                lock();
            }
            return Err(LoginError::Refused);
        }
        if disabled {
            return Err(LoginError::Disabled);
        }
        // The right password clears the count, but for an account with a second factor only
        // this attempt is taken back: wrong codes stay counted until a code is right.
        let _ = self.conn().execute(
            "UPDATE users SET failures = CASE WHEN totp_secret IS NULL THEN 0 ELSE max(failures - 1, 0) END,
               locked_until = NULL WHERE name = ?1",
            params![name],
        );
        Ok(Account {
            name,
            role: role.parse().unwrap_or(Role::Viewer),
            lang,
        })
    }
}
