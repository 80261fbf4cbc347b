//! Alerts in an embedded SQLite database (`<data_dir>/alerts.db`): they survive restarts, a
//! condition that continues updates its one open alert instead of adding more (same rule, user
//! and site within the dedup window), and the position in the event log the rules have reached is
//! kept beside them, so a restart neither misses nor repeats an alert.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rules::{Alert, Severity};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use store::EventId;

use crate::outbox::{self, Change};
use crate::schema;

/// Evidence event ids kept per alert, at most.
const MAX_EVIDENCE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AlertDbError {
    #[error("alert database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("no alert {0}")]
    NotFound(i64),
    #[error(
        "alert database {path} was written by a newer mimamori (schema {found}); this one reads up to {SCHEMA_VERSION}: install the newer release again"
    )]
    NewerFormat { path: String, found: u32 },
    /// A status change that is not allowed, with what is expected.
    #[error("{0}")]
    Invalid(String),
}

pub use crate::schema::SCHEMA_VERSION;

/// Where an alert stands in its triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Open,
    /// Someone is looking at it.
    Acknowledged,
    /// Done with, with a reason.
    Closed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Closed => "closed",
        }
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AlertStatus {
    type Err = AlertDbError;

    fn from_str(s: &str) -> Result<AlertStatus, AlertDbError> {
        match s {
            "open" => Ok(AlertStatus::Open),
            "acknowledged" => Ok(AlertStatus::Acknowledged),
            "closed" => Ok(AlertStatus::Closed),
            other => Err(AlertDbError::Invalid(format!(
                "status must be open, acknowledged or closed, not {other:?}"
            ))),
        }
    }
}

impl rusqlite::types::FromSql for AlertStatus {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse()
            .map_err(|e: AlertDbError| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

impl rusqlite::ToSql for AlertStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// Longest reason or name kept with a status change.
pub(crate) const MAX_NOTE_CHARS: usize = 1000;

/// One change of an alert's status: who, when, to what, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    pub at: DateTime<Utc>,
    /// What was done: a status change, an assignment or a comment.
    pub kind: crate::triage::ChangeKind,
    /// The status after the change.
    pub status: AlertStatus,
    /// How a closed alert was judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<crate::triage::Resolution>,
    /// To whom it was assigned (an assignment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// The reason or the comment.
    pub reason: Option<String>,
    pub by: String,
}

/// An alert as stored: with its id and status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredAlert {
    pub id: i64,
    #[serde(flatten)]
    pub alert: Alert,
    pub status: AlertStatus,
    pub status_reason: Option<String>,
    /// How it was judged when closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<crate::triage::Resolution>,
    /// Who is looking into it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// Its status changes, oldest first (given by [`AlertDb::get`], not in lists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StatusChange>,
}

pub struct AlertDb {
    conn: Connection,
    path: String,
    /// An alert whose last event is older than this is not continued; a new one starts.
    dedup_window: Duration,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub since: Option<DateTime<Utc>>,
    /// Alerts first seen before this only.
    pub until: Option<DateTime<Utc>>,
    pub status: Option<AlertStatus>,
    pub severity: Option<Severity>,
    pub rule: Option<String>,
    pub site: Option<String>,
    /// The person the alert is about (case-insensitive).
    pub user: Option<String>,
    pub limit: usize,
    /// The oldest first (by first seen), instead of the most recently seen first.
    pub oldest_first: bool,
}

/// The conditions of an [`AlertFilter`], its parameters numbered as [`AlertDb::list`] binds
/// them.
const FILTER: &str = "last_seen >= ?1 AND (?2 IS NULL OR status = ?2)
                 AND (?4 IS NULL OR first_seen < ?4) AND (?5 IS NULL OR severity = ?5)
                 AND (?6 IS NULL OR rule = ?6) AND (?7 IS NULL OR site = ?7)
                 AND (?8 IS NULL OR lower(user) = lower(?8))";

impl AlertDb {
    pub fn open(path: &Path, dedup_window: Duration) -> Result<AlertDb, AlertDbError> {
        let shown = path.display().to_string();
        let err = |source| AlertDbError::Sqlite {
            path: shown.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::SchemaError::Newer(found) => AlertDbError::NewerFormat {
                path: shown.clone(),
                found,
            },
            schema::SchemaError::Sqlite(source) => err(source),
        })?;
        Ok(AlertDb {
            conn,
            path: shown,
            dedup_window,
        })
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> AlertDbError + use<> {
        sql_err(&self.path)
    }

    /// Stores an alert, or continues the open one with the same rule, user, site (and subject).
    /// Returns its id and what happened (an alert already holding this evidence is left as it
    /// is: replays after a restart do not count twice).
    pub fn record(&mut self, alert: &Alert) -> Result<(i64, Recorded), AlertDbError> {
        Ok(self.record_all(std::slice::from_ref(alert))?[0])
    }

    /// [`AlertDb::record`] for several alerts in one transaction (one sync).
    pub fn record_all(&mut self, alerts: &[Alert]) -> Result<Vec<(i64, Recorded)>, AlertDbError> {
        let path = self.path.clone();
        let window = self.dedup_window;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| AlertDbError::Sqlite {
                path: path.clone(),
                source,
            })?;
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            out.push(record_in(&tx, &path, window, alert)?);
        }
        tx.commit()
            .map_err(|source| AlertDbError::Sqlite { path, source })?;
        Ok(out)
    }

    /// When each account was last active, as the rules last saved it (for dormant accounts).
    pub fn activity(&self) -> Result<Vec<(String, DateTime<Utc>)>, AlertDbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user, last_active FROM activity")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (user, at) = row.map_err(self.err())?;
            if let Ok(t) = DateTime::parse_from_rfc3339(&at) {
                out.push((user, t.with_timezone(&Utc)));
            }
        }
        Ok(out)
    }

    pub fn save_activity(
        &mut self,
        changed: &[(String, DateTime<Utc>)],
    ) -> Result<(), AlertDbError> {
        self.upsert_all(
            "INSERT INTO activity (user, last_active) VALUES (?1, ?2)
             ON CONFLICT(user) DO UPDATE SET last_active = max(last_active, excluded.last_active)",
            changed
                .iter()
                .map(|(user, at)| vec![user.clone().into(), at.to_rfc3339().into()]),
        )
    }

    /// Runs `sql` once per row of values, in one transaction.
    fn upsert_all(
        &mut self,
        sql: &str,
        rows: impl Iterator<Item = Vec<rusqlite::types::Value>>,
    ) -> Result<(), AlertDbError> {
        let mut rows = rows.peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| AlertDbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut statement = tx.prepare_cached(sql).map_err(err)?;
            for row in rows {
                statement
                    .execute(rusqlite::params_from_iter(row))
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Each account's machines and login count (for new-workstation detection).
    pub fn machines(&self) -> Result<Vec<(String, u32, Vec<String>)>, AlertDbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user, logins, hosts FROM machines")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                let hosts: String = r.get(2)?;
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                    serde_json::from_str(&hosts).unwrap_or_default(),
                ))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn save_machines(
        &mut self,
        changed: &[(String, u32, Vec<String>)],
    ) -> Result<(), AlertDbError> {
        self.upsert_all(
            "INSERT INTO machines (user, logins, hosts) VALUES (?1, ?2, ?3)
             ON CONFLICT(user) DO UPDATE SET logins = excluded.logins, hosts = excluded.hosts",
            changed.iter().map(|(user, logins, hosts)| {
                vec![
                    user.clone().into(),
                    i64::from(*logins).into(),
                    serde_json::to_string(hosts).unwrap_or_default().into(),
                ]
            }),
        )
    }

    /// The event-log position the rules have processed (0: none).
    pub fn checkpoint(&self) -> Result<u64, AlertDbError> {
        let v = outbox::meta(&self.conn, "rules_wal_seq").map_err(self.err())?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub fn set_checkpoint(&self, seq: u64) -> Result<(), AlertDbError> {
        outbox::set_meta(&self.conn, "rules_wal_seq", &seq.to_string()).map_err(self.err())
    }

    /// The database file, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The connection, for reading the outbox and deliveries (the web API).
    pub fn conn_for_reading(&self) -> &Connection {
        &self.conn
    }

    /// A transaction on the database, for the delivery router.
    pub(crate) fn transaction(&mut self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    /// The database's connection, for the outbox's readers in this crate.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAlert> {
        let time = parse_time;
        let evidence: String = r.get(9)?;
        let ids: Vec<String> = serde_json::from_str(&evidence).unwrap_or_default();
        Ok(StoredAlert {
            id: r.get(0)?,
            alert: Alert {
                rule: r.get(1)?,
                severity: Severity::from_name(&r.get::<_, String>(2)?),
                user: r.get(3)?,
                site: r.get(4)?,
                first_seen: time(r.get(5)?),
                last_seen: time(r.get(6)?),
                count: r.get::<_, i64>(7)? as u64,
                explanation: r.get(8)?,
                evidence: ids.into_iter().map(EventId::from_hex).collect(),
                subject: None,
                private: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
            },
            status: r.get(10)?,
            status_reason: r.get(11)?,
            resolution: r.get(13)?,
            assignee: r.get(14)?,
            history: Vec::new(),
        })
    }

    pub(crate) const COLUMNS: &'static str = "id, rule, severity, user, site, first_seen, last_seen, count, explanation, evidence, status, status_reason, private, resolution, assignee";

    /// Alerts, newest last-seen first.
    pub fn list(&self, filter: &AlertFilter) -> Result<Vec<StoredAlert>, AlertDbError> {
        let order = if filter.oldest_first {
            "first_seen ASC, id ASC"
        } else {
            "last_seen DESC, id DESC"
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {} FROM alerts WHERE {FILTER} ORDER BY {order} LIMIT ?3",
                Self::COLUMNS
            ))
            .map_err(self.err())?;
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit
        } as i64;
        let rows = stmt
            .query_map(Self::filter_params(filter, limit), Self::row)
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// How many alerts `filter` finds (its limit aside).
    pub fn count(&self, filter: &AlertFilter) -> Result<u64, AlertDbError> {
        let n: i64 = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM alerts WHERE {FILTER} AND ?3 IS NOT NULL"),
                Self::filter_params(filter, 0),
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(n as u64)
    }

    fn filter_params(filter: &AlertFilter, limit: i64) -> impl rusqlite::Params + '_ {
        (
            filter.since.map(|t| t.to_rfc3339()).unwrap_or_default(),
            filter.status,
            limit,
            filter.until.map(|t| t.to_rfc3339()),
            filter.severity.map(|s| s.as_str()),
            filter.rule.clone(),
            filter.site.clone(),
            filter.user.clone(),
        )
    }
}

/// A SQLite error of the database at `path`.
pub(crate) fn sql_err(path: &str) -> impl Fn(rusqlite::Error) -> AlertDbError + use<> {
    let path = path.to_owned();
    move |source| AlertDbError::Sqlite {
        path: path.clone(),
        source,
    }
}

pub(crate) fn parse_time(s: String) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// What recording an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new alert.
    New,
    /// An open alert took the new evidence (its count and last time moved).
    Continued,
    /// Its evidence was already held (a replay): nothing changed.
    Known,
}

impl Recorded {
    pub fn changed(self) -> bool {
        self != Recorded::Known
    }
}

/// One alert, inside the caller's transaction.
fn record_in(
    tx: &rusqlite::Transaction<'_>,
    path: &str,
    dedup_window: Duration,
    alert: &Alert,
) -> Result<(i64, Recorded), AlertDbError> {
    let mut key = format!(
        "{}|{}|{}",
        alert.rule,
        alert.user.as_deref().unwrap_or("").to_lowercase(),
        alert.site.as_deref().unwrap_or("")
    );
    // An alert about an address or a sender continues only alerts about the same one.
    if let Some(subject) = &alert.subject {
        key.push('|');
        key.push_str(&subject.to_lowercase());
    }
    // The same events again (a replay after a crash) change nothing, even if the alert they
    // raised has been closed since.
    if !alert.evidence.is_empty() {
        let mut known = None;
        for e in &alert.evidence {
            known = tx
                .prepare_cached(
                    "SELECT id FROM alerts WHERE dedup_key = ?1 AND instr(evidence, ?2) > 0 LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![key, format!("\"{}\"", e.as_str())], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                })
                .map_err(|source| AlertDbError::Sqlite {
                    path: path.to_owned(),
                    source,
                })?;
            if known.is_none() {
                break;
            }
        }
        if let Some(id) = known {
            return Ok((id, Recorded::Known));
        }
    }
    let since = (alert.first_seen - dedup_window).to_rfc3339();
    let existing: Option<(i64, String, String, String, i64, String)> = tx
        .prepare_cached(
            "SELECT id, evidence, first_seen, last_seen, count, private FROM alerts
                 WHERE dedup_key = ?1 AND status != 'closed' AND last_seen >= ?2
                 ORDER BY last_seen DESC LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row(params![key, since], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()
        })
        .map_err(|source| AlertDbError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
    let result = match existing {
        Some((id, evidence, first, last, count, private)) => {
            let mut ids: Vec<String> = serde_json::from_str(&evidence).unwrap_or_default();
            let new: Vec<String> = alert
                .evidence
                .iter()
                .map(|e| e.as_str().to_owned())
                .filter(|e| !ids.contains(e))
                .collect();
            if new.is_empty() {
                (id, Recorded::Known)
            } else {
                for e in new {
                    if ids.len() < MAX_EVIDENCE {
                        ids.push(e);
                    }
                }
                let first = first.min(alert.first_seen.to_rfc3339());
                let last = last.max(alert.last_seen.to_rfc3339());
                let mut private: Vec<String> = serde_json::from_str(&private).unwrap_or_default();
                for p in &alert.private {
                    if !private.contains(p) && private.len() < MAX_EVIDENCE {
                        private.push(p.clone());
                    }
                }
                tx.prepare_cached(
                    "UPDATE alerts SET evidence = ?2, first_seen = ?3, last_seen = ?4, count = ?5,
                         explanation = ?6, private = ?7 WHERE id = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        serde_json::to_string(&ids).unwrap_or_default(),
                        first,
                        last,
                        count + 1,
                        alert.explanation,
                        serde_json::to_string(&private).unwrap_or_default()
                    ])
                })
                .and_then(|_| outbox::note(tx, id, Change::Updated, None))
                .map_err(|source| AlertDbError::Sqlite {
                    path: path.to_owned(),
                    source,
                })?;
                (id, Recorded::Continued)
            }
        }
        None => {
            let evidence: Vec<&str> = alert.evidence.iter().map(EventId::as_str).collect();
            let id = tx
                .prepare_cached(
                    "INSERT INTO alerts (rule, severity, user, site, dedup_key, first_seen, last_seen,
                     count, explanation, evidence, private)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        alert.rule,
                        alert.severity.as_str(),
                        alert.user,
                        alert.site,
                        key,
                        alert.first_seen.to_rfc3339(),
                        alert.last_seen.to_rfc3339(),
                        alert.count as i64,
                        alert.explanation,
                        serde_json::to_string(&evidence).unwrap_or_default(),
                        serde_json::to_string(&alert.private).unwrap_or_default()
                    ])
                })
                .and_then(|_| {
                    let id = tx.last_insert_rowid();
                    outbox::note(tx, id, Change::Raised, None).map(|()| id)
                })
                .map_err(|source| AlertDbError::Sqlite {
                    path: path.to_owned(),
                    source,
                })?;
            (id, Recorded::New)
        }
    };
    Ok(result)
}
