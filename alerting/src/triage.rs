//! The investigation of an alert: acknowledge, assign to a reviewer, comment, close as a true
//! positive, a false positive or an allowed access, or open again. Every step is kept with who
//! and when (the alert's history, the same through the UI, the API and the CLI); a status
//! change is written to the outbox in the same transaction, so the channels hear of it.

use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::{AlertDb, AlertDbError, AlertStatus, MAX_NOTE_CHARS, StatusChange, StoredAlert};
use crate::outbox::{self, Change};

/// How a closed alert was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It was what the rule said: an access that should not have happened.
    TruePositive,
    /// The rule was wrong about it.
    FalsePositive,
    /// It happened, and it was allowed (an emergency, a covered shift).
    Allowed,
}

/// Every resolution, in the order a form lists them.
pub const RESOLUTIONS: [Resolution; 3] = [
    Resolution::TruePositive,
    Resolution::FalsePositive,
    Resolution::Allowed,
];

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::TruePositive => "true_positive",
            Resolution::FalsePositive => "false_positive",
            Resolution::Allowed => "allowed",
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = AlertDbError;

    fn from_str(s: &str) -> Result<Resolution, AlertDbError> {
        RESOLUTIONS
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AlertDbError::Invalid(format!(
                    "resolution must be true_positive, false_positive or allowed, not {s:?}"
                ))
            })
    }
}

/// What one step of the history did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Status,
    Assigned,
    Comment,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Status => "status",
            ChangeKind::Assigned => "assigned",
            ChangeKind::Comment => "comment",
        }
    }
}

macro_rules! sql_text {
    ($($ty:ty),*) => {$(
        impl rusqlite::types::FromSql for $ty {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                serde_json::from_value(serde_json::Value::String(text.to_owned()))
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }

        impl rusqlite::ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }
    )*};
}

sql_text!(Resolution, ChangeKind);

/// One step of an investigation.
#[derive(Debug, Clone)]
pub enum Step<'a> {
    /// To a status; closing needs a reason, and may say how it was judged.
    Status {
        status: AlertStatus,
        resolution: Option<Resolution>,
        reason: Option<&'a str>,
    },
    /// To a reviewer (empty: nobody).
    Assign(&'a str),
    Comment(&'a str),
}

/// A step as the audit trail says it: `closed as false_positive: reason`, `assigned to x`,
/// `comment: text`.
impl std::fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Status {
                status,
                resolution,
                reason,
            } => {
                write!(f, "{}", status.as_str())?;
                if let Some(r) = resolution {
                    write!(f, " as {}", r.as_str())?;
                }
                if let Some(reason) = reason {
                    write!(f, ": {reason}")?;
                }
                Ok(())
            }
            Step::Assign("") => write!(f, "unassigned"),
            Step::Assign(who) => write!(f, "assigned to {who}"),
            Step::Comment(text) => write!(f, "comment: {text}"),
        }
    }
}

fn checked(text: Option<&str>, what: &str) -> Result<Option<String>, AlertDbError> {
    let text = text.map(str::trim).filter(|r| !r.is_empty());
    if text.is_some_and(|r| r.chars().count() > MAX_NOTE_CHARS) {
        return Err(AlertDbError::Invalid(format!(
            "{what} is at most {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(text.map(str::to_owned))
}

impl AlertDb {
    /// Acknowledges or closes an alert (`closed` needs a reason), or opens it again; `by` says
    /// who (kept with the time in the alert's history).
    pub fn set_status(
        &mut self,
        id: i64,
        status: AlertStatus,
        reason: Option<&str>,
        by: &str,
    ) -> Result<StoredAlert, AlertDbError> {
        self.investigate(
            id,
            Step::Status {
                status,
                resolution: None,
                reason,
            },
            by,
        )
    }

    /// Takes one step of an alert's investigation, recorded with `by` and the time.
    pub fn investigate(
        &mut self,
        id: i64,
        step: Step<'_>,
        by: &str,
    ) -> Result<StoredAlert, AlertDbError> {
        checked(Some(by), "a name")?;
        let err = self.err();
        let tx = self.transaction().map_err(&err)?;
        let current: Option<(AlertStatus, Option<String>)> = tx
            .query_row(
                "SELECT status, assignee FROM alerts WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        let Some((current, assignee)) = current else {
            return Err(AlertDbError::NotFound(id));
        };
        let now = Utc::now().to_rfc3339();
        // One step of the history, with who and when.
        let history = |tx: &rusqlite::Transaction<'_>,
                       status: AlertStatus,
                       reason: Option<&str>,
                       kind: ChangeKind,
                       resolution: Option<Resolution>,
                       assignee: Option<&str>| {
            tx.execute(
                "INSERT INTO status_changes (alert_id, at, status, reason, by, kind, resolution, assignee) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, now, status, reason, by, kind, resolution, assignee],
            )
        };
        match step {
            Step::Status {
                status,
                resolution,
                reason,
            } => {
                let reason = checked(reason, "a reason")?;
                if status == AlertStatus::Closed && reason.is_none() {
                    return Err(AlertDbError::Invalid(
                        "closing an alert needs a reason (what was found)".into(),
                    ));
                }
                if status != AlertStatus::Closed && resolution.is_some() {
                    return Err(AlertDbError::Invalid(
                        "only a closed alert has a resolution".into(),
                    ));
                }
                // Nothing would change: nothing is recorded or told.
                if current == status {
                    return Err(AlertDbError::Invalid(format!(
                        "alert {id} is already {status}"
                    )));
                }
                tx.execute(
                    "UPDATE alerts SET status = ?2, status_reason = ?3, resolution = ?4 WHERE id = ?1",
                    params![id, status, reason, resolution],
                )
                .map_err(&err)?;
                history(
                    &tx,
                    status,
                    reason.as_deref(),
                    ChangeKind::Status,
                    resolution,
                    None,
                )
                .map_err(&err)?;
                // The notice to the channels is written with the change, never apart from it.
                outbox::note(&tx, id, Change::from(status), Some(by)).map_err(&err)?;
            }
            Step::Assign(to) => {
                let to = checked(Some(to), "a reviewer's name")?;
                if to == assignee {
                    return Err(AlertDbError::Invalid(format!(
                        "alert {id} is already assigned so"
                    )));
                }
                tx.execute(
                    "UPDATE alerts SET assignee = ?2 WHERE id = ?1",
                    params![id, to],
                )
                .map_err(&err)?;
                history(
                    &tx,
                    current,
                    None,
                    ChangeKind::Assigned,
                    None,
                    to.as_deref(),
                )
                .map_err(&err)?;
            }
            Step::Comment(text) => {
                let Some(text) = checked(Some(text), "a comment")? else {
                    return Err(AlertDbError::Invalid("a comment cannot be empty".into()));
                };
                history(&tx, current, Some(&text), ChangeKind::Comment, None, None)
                    .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        self.get(id)
    }

    /// One alert with its history.
    pub fn get(&self, id: i64) -> Result<StoredAlert, AlertDbError> {
        let err = self.err();
        let conn = self.conn();
        let mut found = conn
            .query_row(
                &format!("SELECT {} FROM alerts WHERE id = ?1", AlertDb::COLUMNS),
                params![id],
                AlertDb::row,
            )
            .optional()
            .map_err(&err)?
            .ok_or(AlertDbError::NotFound(id))?;
        let mut stmt = conn
            .prepare(
                "SELECT at, status, reason, by, kind, resolution, assignee FROM status_changes WHERE alert_id = ?1 ORDER BY rowid",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map(params![id], |r| {
                Ok(StatusChange {
                    at: crate::db::parse_time(r.get(0)?),
                    status: r.get(1)?,
                    reason: r.get(2)?,
                    by: r.get(3)?,
                    kind: r.get(4)?,
                    resolution: r.get(5)?,
                    assignee: r.get(6)?,
                })
            })
            .map_err(&err)?;
        found.history = rows.collect::<Result<_, _>>().map_err(&err)?;
        Ok(found)
    }

    /// How many alerts are in each status (for the alert list's counts).
    pub fn counts(&self) -> Result<Vec<(AlertStatus, u64)>, AlertDbError> {
        let err = self.err();
        let mut stmt = self
            .conn()
            .prepare("SELECT status, count(*) FROM alerts GROUP BY status")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }
}
