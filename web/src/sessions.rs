//! Sessions of the web UI: a cookie's SHA-256 names one, with its CSRF token, its age and
//! whether it still waits for the second factor; idle and absolute timeouts end it.

use chrono::{Duration, Utc};
use rusqlite::{OptionalExtension, params};

use crate::accounts::{
    Account, AccountDb, AccountError, LOCKOUT_FAILURES, Role, digest, parse_time, random_token,
};

/// A session found by its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: Account,
    /// The token every form of this session must carry back.
    pub csrf: String,
    /// The password was right but the second factor is still to come: nothing but the code
    /// page is open to this session.
    pub pending: bool,
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Signed out after this long without a request.
    pub idle: Duration,
    /// Signed out this long after signing in, however busy.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
        }
    }
}

impl AccountDb {
    /// Starts a session: the cookie's value (given once, stored only as a digest).
    pub fn start_session(&self, name: &str) -> Result<String, AccountError> {
        self.new_session(name, false)
    }

    /// Starts a session that waits for the second factor ([`AccountDb::complete_session`]).
    pub fn start_pending_session(&self, name: &str) -> Result<String, AccountError> {
        self.new_session(name, true)
    }

    fn new_session(&self, name: &str, pending: bool) -> Result<String, AccountError> {
        let token = random_token();
        let now = Utc::now().to_rfc3339();
        self.conn()
            .execute(
                "INSERT INTO sessions (digest, user, csrf, created_at, seen_at, pending) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![digest(&token), name, random_token(), now, pending],
            )
            .map_err(self.err())?;
        Ok(token)
    }

    /// The second factor was given: the session is a full one from now.
    pub fn complete_session(&self, token: &str) -> Result<(), AccountError> {
        self.conn()
            .execute(
                "UPDATE sessions SET pending = 0 WHERE digest = ?1",
                params![digest(token)],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Counts a wrong second-factor code against a waiting session: after
    /// [`LOCKOUT_FAILURES`] the session ends (the password must be given again).
    pub fn fail_second_factor(&self, token: &str) -> bool {
        let conn = self.conn();
        let key = digest(token);
        let tries: u32 = conn
            .query_row(
                "UPDATE sessions SET tries = tries + 1 WHERE digest = ?1 RETURNING tries",
                params![key],
                |r| r.get(0),
            )
            .unwrap_or(u32::MAX);
        if tries >= LOCKOUT_FAILURES {
            let _ = conn.execute("DELETE FROM sessions WHERE digest = ?1", params![key]);
            return false;
        }
        true
    }

    /// The live session of a cookie, its last use moved to now; an idle or old one ends.
    pub fn session(&self, token: &str, limits: SessionLimits) -> Option<Session> {
        let now = Utc::now();
        let conn = self.conn();
        let key = digest(token);
        type Row = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            bool,
            bool,
        );
        let row: Row = conn
            .query_row(
                "SELECT s.user, s.csrf, s.created_at, s.seen_at, u.role, u.lang, u.disabled, s.pending
                 FROM sessions s JOIN users u ON u.name = s.user WHERE s.digest = ?1",
                params![key],
                |r| Row::try_from(r),
            )
            .optional()
            .ok()
            .flatten()?;
        let (user, csrf, created, seen, role, lang, disabled, pending) = row;
        // A session waiting for its second factor lasts five minutes.
        let absolute = if pending {
            Duration::minutes(5)
        } else {
            limits.absolute
        };
        if disabled
            || now - parse_time(&seen) > limits.idle
            || now - parse_time(&created) > absolute
        {
            let _ = conn.execute("DELETE FROM sessions WHERE digest = ?1", params![key]);
            return None;
        }
        let _ = conn.execute(
            "UPDATE sessions SET seen_at = ?2 WHERE digest = ?1",
            params![key, now.to_rfc3339()],
        );
        Some(Session {
            account: Account {
                name: user,
                role: role.parse().unwrap_or(Role::Viewer),
                lang,
            },
            csrf,
            pending,
        })
    }

    pub fn end_session(&self, token: &str) {
        let _ = self.conn().execute(
            "DELETE FROM sessions WHERE digest = ?1",
            params![digest(token)],
        );
    }

    /// Sets the language an account's pages are in (`ja`, `en`).
    pub fn set_lang(&self, name: &str, lang: &str) -> Result<(), AccountError> {
        self.conn()
            .execute(
                "UPDATE users SET lang = ?2 WHERE name = ?1",
                params![name, lang],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Makes a session look older than it is (tests of the timeouts).
    #[doc(hidden)]
    pub fn age_sessions(&self, by: Duration) -> Result<(), AccountError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT digest, created_at, seen_at FROM sessions")
            .map_err(self.err())?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<Result<_, _>>()
            .map_err(self.err())?;
        for (key, created, seen) in rows {
            let shift = |t: &str| (parse_time(t) - by).to_rfc3339();
            conn.execute(
                "UPDATE sessions SET created_at = ?2, seen_at = ?3 WHERE digest = ?1",
                params![key, shift(&created), shift(&seen)],
            )
            .map_err(self.err())?;
        }
        Ok(())
    }
}
