//! Alerts in an embedded SQLite database (`<data_dir>/alerts.db`): they survive restarts, a
//! condition that continues updates its one open alert instead of adding more (same rule, user
//! and site within the dedup window), and the position in the event log the rules have reached is
//! kept beside them, so a restart neither misses nor repeats an alert.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use rules::{Alert, Severity};
use rusqlite::Connection;
use serde::Serialize;
use store::EventId;

use crate::outbox;
use crate::record::Recorder;
use crate::schema;

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

/// What one pass of the rules leaves behind ([`AlertDb::record_step`]).
#[derive(Debug, Default)]
pub struct Step<'a> {
    pub alerts: &'a [Alert],
    /// Per alert (or none: all may be), whether it was raised by an event never read before, so
    /// it cannot be a replay: it counts even if its evidence is held (a sender repeating a
    /// line exactly makes events with one id).
    pub fresh: &'a [bool],
    /// Accounts whose last activity changed, and when.
    pub activity: &'a [(String, DateTime<Utc>)],
    /// Accounts whose machines changed: login count and hosts.
    pub machines: &'a [(String, u32, Vec<String>)],
    /// The log position the rules have processed, when it moved.
    pub checkpoint: Option<u64>,
    /// The last event the rules have read (its arrival checks' alerts are in this step).
    pub read: Option<u64>,
    /// The position whose learned state this step stores in full (activity and machines).
    pub state_saved_at: Option<u64>,
}

/// Runs `sql` once per row of values, inside the caller's transaction.
fn upsert(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    rows: impl Iterator<Item = Vec<rusqlite::types::Value>>,
) -> rusqlite::Result<()> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut statement = tx.prepare_cached(sql)?;
    for row in rows {
        statement.execute(rusqlite::params_from_iter(row))?;
    }
    Ok(())
}

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
        self.record_step(&Step {
            alerts,
            ..Step::default()
        })
    }

    /// What a pass of the rules leaves, in one transaction (one sync): its alerts, the accounts'
    /// activity and machines that changed, and the log position reached.
    pub fn record_step(&mut self, step: &Step<'_>) -> Result<Vec<(i64, Recorded)>, AlertDbError> {
        if step.alerts.is_empty()
            && step.activity.is_empty()
            && step.machines.is_empty()
            && step.checkpoint.is_none()
            && step.read.is_none()
            && step.state_saved_at.is_none()
        {
            return Ok(Vec::new());
        }
        let path = self.path.clone();
        let err = sql_err(&path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut recorder = Recorder::new(&tx, &path, self.dedup_window);
        let out = step
            .alerts
            .iter()
            .enumerate()
            .map(|(i, alert)| recorder.record(alert, step.fresh.get(i).copied().unwrap_or(false)))
            .collect::<Result<Vec<_>, _>>()?;
        recorder.finish()?;
        upsert(
            &tx,
            "INSERT INTO activity (user, last_active) VALUES (?1, ?2)
             ON CONFLICT(user) DO UPDATE SET last_active = max(last_active, excluded.last_active)",
            step.activity
                .iter()
                .map(|(user, at)| vec![user.clone().into(), at.to_rfc3339().into()]),
        )
        .map_err(&err)?;
        upsert(
            &tx,
            "INSERT INTO machines (user, logins, hosts) VALUES (?1, ?2, ?3)
             ON CONFLICT(user) DO UPDATE SET logins = excluded.logins, hosts = excluded.hosts",
            step.machines.iter().map(|(user, logins, hosts)| {
                vec![
                    user.clone().into(),
                    i64::from(*logins).into(),
                    serde_json::to_string(hosts).unwrap_or_default().into(),
                ]
            }),
        )
        .map_err(&err)?;
        if let Some(seq) = step.checkpoint {
            outbox::set_meta(&tx, "rules_wal_seq", &seq.to_string()).map_err(&err)?;
        }
        if let Some(seq) = step.read {
            outbox::set_meta(&tx, "rules_read_seq", &seq.to_string()).map_err(&err)?;
        }
        if let Some(seq) = step.state_saved_at {
            outbox::set_meta(&tx, "rules_state_seq", &seq.to_string()).map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
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
        self.record_step(&Step {
            activity: changed,
            ..Step::default()
        })
        .map(drop)
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
        self.record_step(&Step {
            machines: changed,
            ..Step::default()
        })
        .map(drop)
    }

    /// The event-log position the rules have processed (0: none).
    pub fn checkpoint(&self) -> Result<u64, AlertDbError> {
        let v = outbox::meta(&self.conn, "rules_wal_seq").map_err(self.err())?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The last event the live rules had read when they last stored alerts (0: none): their
    /// arrival checks are stored up to there.
    pub fn read_position(&self) -> Result<u64, AlertDbError> {
        let v = outbox::meta(&self.conn, "rules_read_seq").map_err(self.err())?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// The rules' position when their learned state was last stored whole, if known.
    pub fn state_position(&self) -> Result<Option<u64>, AlertDbError> {
        let v = outbox::meta(&self.conn, "rules_state_seq").map_err(self.err())?;
        Ok(v.and_then(|v| v.parse().ok()))
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
