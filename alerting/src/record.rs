//! Recording the rules' alerts: a new condition becomes an alert; the same rule, account and site
//! (and subject) within the dedup window continues the open one; evidence already held (a
//! replay after a restart) changes nothing.
//!
//! A batch's alerts are written in one transaction, and an alert continued several times in it
//! is changed in memory and written once at the end, with one `updated` notice: a rule that
//! fires on every event (a sender whose clock is wrong) costs one row update per batch, not one
//! per event, and the outbox does not grow by a row per event.

use std::collections::HashMap;

use chrono::Duration;
use rules::Alert;
use rusqlite::{OptionalExtension, Transaction, params};
use store::EventId;

use crate::db::{AlertDbError, Recorded};
use crate::outbox::{self, Change};

/// Evidence event ids kept per alert, at most (and as many patient references).
pub(crate) const MAX_EVIDENCE: usize = 100;

/// An open alert as this transaction has it (read from the database or inserted by it).
struct Open {
    id: i64,
    evidence: Vec<String>,
    first: String,
    last: String,
    count: i64,
    private: Vec<String>,
    explanation: Option<String>,
    /// Inserted by this transaction: its `raised` notice tells of the continuations too.
    raised: bool,
    /// Continued since it was read: written (and noticed) when the transaction ends.
    changed: bool,
}

/// One transaction's recording.
pub(crate) struct Recorder<'t, 'c> {
    tx: &'t Transaction<'c>,
    path: &'t str,
    dedup_window: Duration,
    /// Per dedup key, the alert this transaction last continued or raised.
    open: HashMap<String, Open>,
    /// Per dedup key, the evidence its alerts hold (event id -> alert), read once per
    /// transaction and kept up to date by it.
    held: HashMap<String, HashMap<String, i64>>,
}

impl<'t, 'c> Recorder<'t, 'c> {
    pub(crate) fn new(tx: &'t Transaction<'c>, path: &'t str, dedup_window: Duration) -> Self {
        Recorder {
            tx,
            path,
            dedup_window,
            open: HashMap::new(),
            held: HashMap::new(),
        }
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AlertDbError + use<> {
        crate::db::sql_err(self.path)
    }

    /// Records one alert (in memory where it continues one this transaction holds). A `fresh`
    /// alert (from an event never read before) is never taken for a replay.
    pub(crate) fn record(
        &mut self,
        alert: &Alert,
        fresh: bool,
    ) -> Result<(i64, Recorded), AlertDbError> {
        let key = dedup_key(alert);
        if !self.held.contains_key(&key) {
            let held = self.read_held(&key)?;
            self.held.insert(key.clone(), held);
        }
        if !fresh && let Some(id) = self.known(&key, alert) {
            return Ok((id, Recorded::Known));
        }
        let since = (alert.first_seen - self.dedup_window).to_rfc3339();
        // The alert held in memory is the one the database would give (the most recently seen
        // open one), as long as it is still within the window; otherwise it is written first
        // and the database asked.
        if self.open.get(&key).is_some_and(|o| o.last < since) {
            let stale = self.open.remove(&key).expect("just seen");
            self.write(stale)?;
        }
        if !self.open.contains_key(&key)
            && let Some(open) = self.read_open(&key, &since)?
        {
            self.open.insert(key.clone(), open);
        }
        if let Some(open) = self.open.get_mut(&key) {
            let before = open.evidence.len();
            let recorded = continue_with(open, alert, fresh);
            let held = self.held.entry(key).or_default();
            for e in &open.evidence[before..] {
                held.insert(e.clone(), open.id);
            }
            return Ok((open.id, recorded));
        }
        let id = self.insert(&key, alert)?;
        let held = self.held.entry(key.clone()).or_default();
        for e in &alert.evidence {
            held.insert(e.as_str().to_owned(), id);
        }
        self.open.insert(
            key,
            Open {
                id,
                evidence: alert
                    .evidence
                    .iter()
                    .map(|e| e.as_str().to_owned())
                    .collect(),
                first: alert.first_seen.to_rfc3339(),
                last: alert.last_seen.to_rfc3339(),
                count: alert.count as i64,
                private: alert.private.clone(),
                explanation: Some(alert.explanation.clone()),
                raised: true,
                changed: false,
            },
        );
        Ok((id, Recorded::New))
    }

    /// Writes every alert continued in memory; the transaction can then commit.
    pub(crate) fn finish(mut self) -> Result<(), AlertDbError> {
        let mut open: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        // Notices in the order the alerts were made.
        open.sort_by_key(|o| o.id);
        for o in open {
            self.write(o)?;
        }
        Ok(())
    }

    /// The alert with this key already holding all of `alert`'s evidence (a replay), if any:
    /// the one holding its last.
    fn known(&self, key: &str, alert: &Alert) -> Option<i64> {
        let held = self.held.get(key)?;
        let mut known = None;
        for e in &alert.evidence {
            known = held.get(e.as_str()).copied();
            known?;
        }
        known
    }

    /// The evidence every alert with this key holds.
    fn read_held(&self, key: &str) -> Result<HashMap<String, i64>, AlertDbError> {
        let mut held = HashMap::new();
        let mut statement = self
            .tx
            .prepare_cached("SELECT id, evidence FROM alerts WHERE dedup_key = ?1")
            .map_err(self.err())?;
        let mut rows = statement.query(params![key]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let id: i64 = row.get(0).map_err(self.err())?;
            let evidence: String = row.get(1).map_err(self.err())?;
            for e in serde_json::from_str::<Vec<String>>(&evidence).unwrap_or_default() {
                held.insert(e, id);
            }
        }
        Ok(held)
    }

    /// The most recently seen open alert with this key, seen at or after `since`.
    fn read_open(&self, key: &str, since: &str) -> Result<Option<Open>, AlertDbError> {
        let row: Option<(i64, String, String, String, i64, String)> = self
            .tx
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
            .map_err(self.err())?;
        Ok(row.map(|(id, evidence, first, last, count, private)| Open {
            id,
            evidence: serde_json::from_str(&evidence).unwrap_or_default(),
            first,
            last,
            count,
            private: serde_json::from_str(&private).unwrap_or_default(),
            explanation: None,
            raised: false,
            changed: false,
        }))
    }

    fn insert(&self, key: &str, alert: &Alert) -> Result<i64, AlertDbError> {
        let evidence: Vec<&str> = alert.evidence.iter().map(EventId::as_str).collect();
        self.tx
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
                let id = self.tx.last_insert_rowid();
                outbox::note(self.tx, id, Change::Raised, None).map(|()| id)
            })
            .map_err(self.err())
    }

    /// Writes an alert continued in memory, with its notice (none for one raised in this
    /// transaction: the `raised` notice is read after the commit and tells all of it).
    fn write(&self, open: Open) -> Result<(), AlertDbError> {
        if !open.changed {
            return Ok(());
        }
        self.tx
            .prepare_cached(
                "UPDATE alerts SET evidence = ?2, first_seen = ?3, last_seen = ?4, count = ?5,
                     explanation = coalesce(?6, explanation), private = ?7 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    open.id,
                    serde_json::to_string(&open.evidence).unwrap_or_default(),
                    open.first,
                    open.last,
                    open.count,
                    open.explanation,
                    serde_json::to_string(&open.private).unwrap_or_default()
                ])
            })
            .and_then(|_| {
                if open.raised {
                    Ok(())
                } else {
                    outbox::note(self.tx, open.id, Change::Updated, None)
                }
            })
            .map_err(self.err())
    }
}

/// Same rule, account and site continue one alert; an alert about an address or a sender
/// continues only alerts about the same one.
fn dedup_key(alert: &Alert) -> String {
    let mut key = format!(
        "{}|{}|{}",
        alert.rule,
        alert.user.as_deref().unwrap_or("").to_lowercase(),
        alert.site.as_deref().unwrap_or("")
    );
    if let Some(subject) = &alert.subject {
        key.push('|');
        key.push_str(&subject.to_lowercase());
    }
    key
}

/// Adds `alert` to the open alert: its new evidence (up to [`MAX_EVIDENCE`]), its times, one
/// more to the count and its explanation. Nothing new in its evidence: a replay, unless
/// `fresh`.
fn continue_with(open: &mut Open, alert: &Alert, fresh: bool) -> Recorded {
    let new: Vec<&str> = alert
        .evidence
        .iter()
        .map(EventId::as_str)
        .filter(|e| !open.evidence.iter().any(|held| held == e))
        .collect();
    if new.is_empty() && !fresh {
        return Recorded::Known;
    }
    for e in new {
        if open.evidence.len() < MAX_EVIDENCE {
            open.evidence.push(e.to_owned());
        }
    }
    let (first, last) = (alert.first_seen.to_rfc3339(), alert.last_seen.to_rfc3339());
    if first < open.first {
        open.first = first;
    }
    if last > open.last {
        open.last = last;
    }
    for p in &alert.private {
        if !open.private.contains(p) && open.private.len() < MAX_EVIDENCE {
            open.private.push(p.clone());
        }
    }
    open.count += 1;
    open.explanation = Some(alert.explanation.clone());
    open.changed = true;
    Recorded::Continued
}
