//! The outbox: every change of an alert (raised, updated, acknowledged, closed, reopened) is
//! numbered and written here in the same SQLite transaction that makes the change, so no crash
//! can separate an alert from its notice. Delivery routes the changes to channels in order
//! (keeping its position in `meta`), and the live stream reads them by number.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::AlertStatus;

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new alert.
    Raised,
    /// An open alert took more evidence.
    Updated,
    Acknowledged,
    Closed,
    Reopened,
    /// A still-open alert, told again after `repeat_interval`.
    Reminder,
    /// `mimamori channels test`: not about a real alert.
    Test,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised => "raised",
            Change::Updated => "updated",
            Change::Acknowledged => "acknowledged",
            Change::Closed => "closed",
            Change::Reopened => "reopened",
            Change::Reminder => "reminder",
            Change::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Change> {
        [
            Change::Raised,
            Change::Updated,
            Change::Acknowledged,
            Change::Closed,
            Change::Reopened,
            Change::Reminder,
            Change::Test,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }

    /// A change of triage (told to the channels that were told of the alert), not news.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Change::Acknowledged | Change::Closed | Change::Reopened
        )
    }

    /// Japanese first, for people's messages.
    pub fn label(self) -> &'static str {
        match self {
            Change::Raised => "新しいアラート / New alert",
            Change::Updated => "アラート更新 / Alert updated",
            Change::Acknowledged => "確認中 / Acknowledged",
            Change::Closed => "対応済み / Closed",
            Change::Reopened => "再オープン / Reopened",
            Change::Reminder => "未対応のアラート / Still open",
            Change::Test => "テスト送信 / Test message",
        }
    }
}

impl From<AlertStatus> for Change {
    fn from(status: AlertStatus) -> Change {
        match status {
            AlertStatus::Open => Change::Reopened,
            AlertStatus::Acknowledged => Change::Acknowledged,
            AlertStatus::Closed => Change::Closed,
        }
    }
}

/// One numbered change in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Noted {
    pub seq: i64,
    pub alert_id: i64,
    pub change: Change,
    pub at: DateTime<Utc>,
    pub by: Option<String>,
}

/// Writes a change inside the caller's transaction.
pub(crate) fn note(
    tx: &rusqlite::Transaction<'_>,
    alert_id: i64,
    change: Change,
    by: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO outbox (alert_id, change, at, by) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            alert_id,
            change.as_str(),
            Utc::now().to_rfc3339(),
            by
        ])
        .map(|_| ())
}

/// The changes numbered after `seq`, oldest first, at most `limit`.
pub fn after(conn: &Connection, seq: i64, limit: usize) -> rusqlite::Result<Vec<Noted>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, alert_id, change, at, by FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit as i64], |r| {
        let change: String = r.get(2)?;
        Ok(Noted {
            seq: r.get(0)?,
            alert_id: r.get(1)?,
            change: Change::parse(&change).unwrap_or(Change::Updated),
            at: crate::db::parse_time(r.get(3)?),
            by: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The number of the newest change (0 when there is none).
pub fn last(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))
}

/// A value kept in the `meta` table.
pub(crate) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}
