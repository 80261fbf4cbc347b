//! The reports made, and their sign-offs, in `<data_dir>/reports.db` (SQLite): a report is
//! kept as it was made (the numbers the reviewer read), and its sign-off (who, when, findings,
//! actions, comments) is kept with it, every one of them; a report left unsigned too long is
//! named on the next report and in the UI.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::weekly::WeeklyReport;

/// The schema's version (`PRAGMA user_version`); a newer file is refused.
const VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    week TEXT PRIMARY KEY,
    from_utc TEXT NOT NULL,
    to_utc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    checksum TEXT NOT NULL,
    events INTEGER NOT NULL,
    alerts INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signoffs (
    id INTEGER PRIMARY KEY,
    week TEXT NOT NULL REFERENCES reports(week),
    reviewer TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    findings TEXT NOT NULL,
    actions TEXT NOT NULL,
    comments TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signoffs_week ON signoffs(week);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// Longest text of a sign-off field (three of them in Japanese fit the UI's 64 KiB form).
pub const MAX_SIGNOFF_CHARS: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("report database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "report database {path} is format {found}, newer than this mimamori ({VERSION}): install the newer mimamori again"
    )]
    Newer { path: String, found: i64 },
    #[error("no report for {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// A reviewer's sign-off of one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignOff {
    pub reviewer: String,
    pub signed_at: DateTime<Utc>,
    pub findings: String,
    pub actions: String,
    pub comments: String,
}

impl SignOff {
    /// What is wrong with it, if anything (a field too long).
    pub fn check(&self) -> Result<(), ArchiveError> {
        for (name, text) in [
            ("findings", &self.findings),
            ("actions", &self.actions),
            ("comments", &self.comments),
        ] {
            if text.chars().count() > MAX_SIGNOFF_CHARS {
                return Err(ArchiveError::Invalid(format!(
                    "{name}: {MAX_SIGNOFF_CHARS} 文字以内 / at most {MAX_SIGNOFF_CHARS} characters"
                )));
            }
        }
        Ok(())
    }
}

/// One kept report, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kept {
    pub week: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub checksum: String,
    pub events: u64,
    pub alerts: u64,
    /// The latest sign-off, if any.
    pub signed: Option<SignOff>,
}

pub struct ReportDb {
    conn: Mutex<Connection>,
    path: String,
}

pub fn reports_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("reports.db")
}

fn time(text: String) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl ReportDb {
    pub fn open(path: &Path) -> Result<ReportDb, ArchiveError> {
        let shown = path.display().to_string();
        let err = |source| ArchiveError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if found > VERSION {
            return Err(ArchiveError::Newer { path: shown, found });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('watching_since', ?1)",
            params![Utc::now().to_rfc3339()],
        )
        .map_err(err)?;
        conn.execute_batch(&format!("PRAGMA user_version = {VERSION}"))
            .map_err(err)?;
        Ok(ReportDb {
            conn: Mutex::new(conn),
            path: shown,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When this appliance began keeping reviews (the database was made): weeks that ended
    /// before it are not sent by the schedule (an install does not mail reviews of the past).
    pub fn watching_since(&self) -> Result<DateTime<Utc>, ArchiveError> {
        let text: String = self
            .conn()
            .query_row(
                "SELECT value FROM meta WHERE key = 'watching_since'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(time(text))
    }

    /// Keeps `report` unless its week is kept already (a report stays as it was read).
    /// Whether it was kept now.
    pub fn keep(&self, report: &WeeklyReport) -> Result<bool, ArchiveError> {
        let body = serde_json::to_string(report)
            .map_err(|e| ArchiveError::Invalid(format!("report: {e}")))?;
        let added = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO reports (week, from_utc, to_utc, created_at, checksum, events, alerts, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    report.week,
                    report.from.to_rfc3339(),
                    report.to.to_rfc3339(),
                    report.generated_at.to_rfc3339(),
                    report.checksum,
                    report.events as i64,
                    report.alert_counts().in_period as i64,
                    body,
                ],
            )
            .map_err(self.err())?;
        Ok(added > 0)
    }

    /// Whether a report of `week` is kept.
    pub fn has(&self, week: &str) -> Result<bool, ArchiveError> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM reports WHERE week = ?1",
                params![week],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// The report kept for `week` (as JSON, the way it was made) and its sign-offs, oldest first.
    pub fn get(&self, week: &str) -> Result<(WeeklyReport, Vec<SignOff>), ArchiveError> {
        let conn = self.conn();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM reports WHERE week = ?1",
                params![week],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        let body = body.ok_or_else(|| ArchiveError::NotFound(week.to_owned()))?;
        let report: WeeklyReport = serde_json::from_str(&body)
            .map_err(|e| ArchiveError::Invalid(format!("the report of {week}: {e}")))?;
        let mut statement = conn
            .prepare(
                "SELECT reviewer, signed_at, findings, actions, comments FROM signoffs
                 WHERE week = ?1 ORDER BY id",
            )
            .map_err(self.err())?;
        let signoffs = statement
            .query_map(params![week], |r| {
                Ok(SignOff {
                    reviewer: r.get(0)?,
                    signed_at: time(r.get(1)?),
                    findings: r.get(2)?,
                    actions: r.get(3)?,
                    comments: r.get(4)?,
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok((report, signoffs))
    }

    /// Every kept report, newest week first, with its latest sign-off.
    pub fn list(&self) -> Result<Vec<Kept>, ArchiveError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT r.week, r.from_utc, r.to_utc, r.created_at, r.checksum, r.events, r.alerts,
                        s.reviewer, s.signed_at, s.findings, s.actions, s.comments
                 FROM reports r LEFT JOIN signoffs s
                   ON s.id = (SELECT max(id) FROM signoffs WHERE week = r.week)
                 ORDER BY r.from_utc DESC",
            )
            .map_err(self.err())?;
        let rows = statement
            .query_map([], |r| {
                let reviewer: Option<String> = r.get(7)?;
                Ok(Kept {
                    week: r.get(0)?,
                    from: time(r.get(1)?),
                    to: time(r.get(2)?),
                    created_at: time(r.get(3)?),
                    checksum: r.get(4)?,
                    events: r.get::<_, i64>(5)? as u64,
                    alerts: r.get::<_, i64>(6)? as u64,
                    signed: match reviewer {
                        Some(reviewer) => Some(SignOff {
                            reviewer,
                            signed_at: time(r.get(8)?),
                            findings: r.get(9)?,
                            actions: r.get(10)?,
                            comments: r.get(11)?,
                        }),
                        None => None,
                    },
                })
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Records `signoff` of the report of `week` (a later one adds to the record).
    pub fn sign(&self, week: &str, signoff: &SignOff) -> Result<(), ArchiveError> {
        signoff.check()?;
        let conn = self.conn();
        let exists: bool = conn
            .query_row(
                "SELECT count(*) FROM reports WHERE week = ?1",
                params![week],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.err())?
            > 0;
        if !exists {
            return Err(ArchiveError::NotFound(week.to_owned()));
        }
        conn.execute(
            "INSERT INTO signoffs (week, reviewer, signed_at, findings, actions, comments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                week,
                signoff.reviewer,
                signoff.signed_at.to_rfc3339(),
                signoff.findings,
                signoff.actions,
                signoff.comments,
            ],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Weeks whose report was made more than `days` before `now` and is not signed.
    pub fn overdue(&self, days: i64, now: DateTime<Utc>) -> Result<Vec<String>, ArchiveError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.signed.is_none() && now - k.created_at > Duration::days(days))
            .map(|k| k.week)
            .rev()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(week: &str, made: DateTime<Utc>) -> WeeklyReport {
        WeeklyReport {
            week: week.into(),
            clinic: "c".into(),
            zone: "Asia/Tokyo".into(),
            from: made - Duration::days(8),
            to: made - Duration::days(1),
            generated_at: made,
            events: 10,
            heat: vec![vec![0; 24]; 7],
            checksum: "abc".into(),
            ..WeeklyReport::default()
        }
    }

    #[test]
    fn kept_as_made_signed_and_overdue_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = ReportDb::open(&dir.path().join("reports.db")).unwrap();
        let now = Utc::now();
        assert!(
            db.keep(&report("2026-W47", now - Duration::days(10)))
                .unwrap()
        );
        assert!(
            db.keep(&report("2026-W48", now - Duration::days(3)))
                .unwrap()
        );
        let mut again = report("2026-W48", now);
        again.events = 99;
        assert!(!db.keep(&again).unwrap(), "a kept report is not replaced");
        assert_eq!(db.get("2026-W48").unwrap().0.events, 10);
        assert_eq!(db.overdue(7, now).unwrap(), ["2026-W47"]);
        let signoff = SignOff {
            reviewer: "director".into(),
            signed_at: now,
            findings: "夜間の閲覧1件を確認".into(),
            actions: "本人に確認".into(),
            comments: String::new(),
        };
        db.sign("2026-W47", &signoff).unwrap();
        assert!(db.overdue(7, now).unwrap().is_empty());
        let list = db.list().unwrap();
        assert_eq!(list[0].week, "2026-W48");
        assert_eq!(list[1].signed.as_ref().unwrap().reviewer, "director");
        assert!(matches!(
            db.sign("2026-W01", &signoff),
            Err(ArchiveError::NotFound(_))
        ));
        let long = SignOff {
            comments: "x".repeat(MAX_SIGNOFF_CHARS + 1),
            ..signoff
        };
        assert!(matches!(
            db.sign("2026-W48", &long),
            Err(ArchiveError::Invalid(_))
        ));
    }
}
