//! The review's alerts: those of the period and those still open from any period, oldest
//! first, each with its triage (state, judgement, assignee, reason), counted whole and listed
//! at most [`MAX_LISTED`] each.

use alerting::db::{AlertDb, AlertFilter, AlertStatus, StoredAlert};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::weekly::MAX_LISTED;

/// How many alerts: of the period, of those still open (or acknowledged), and of all still open.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct AlertCounts {
    pub in_period: u64,
    pub open_in_period: u64,
    pub open: u64,
}

/// One alert of the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertLine {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub user: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub status: String,
    pub resolution: Option<String>,
    pub assignee: Option<String>,
    pub reason: Option<String>,
    /// Days since it was first seen (for those still open).
    pub age_days: i64,
}

/// The period's alerts, those still open, and their counts.
pub fn lines(
    db: &AlertDb,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
) -> Result<(Vec<AlertLine>, Vec<AlertLine>, AlertCounts), ReportError> {
    let mut counts = AlertCounts::default();
    let line = |a: StoredAlert| AlertLine {
        id: a.id,
        rule: a.alert.rule.clone(),
        severity: a.alert.severity.as_str().to_owned(),
        user: a.alert.user.clone(),
        first_seen: a.alert.first_seen,
        status: a.status.as_str().to_owned(),
        resolution: a.resolution.map(|r| r.as_str().to_owned()),
        assignee: a.assignee.clone(),
        reason: a.status_reason.clone(),
        age_days: (now - a.alert.first_seen).num_days(),
    };
    let in_period = AlertFilter {
        since: Some(from),
        until: Some(to),
        limit: MAX_LISTED,
        oldest_first: true,
        ..AlertFilter::default()
    };
    counts.in_period = db.count(&in_period)?;
    let listed: Vec<AlertLine> = db.list(&in_period)?.into_iter().map(line).collect();
    let mut open = Vec::new();
    for status in [AlertStatus::Open, AlertStatus::Acknowledged] {
        let still = AlertFilter {
            status: Some(status),
            until: Some(to),
            limit: MAX_LISTED,
            oldest_first: true,
            ..AlertFilter::default()
        };
        counts.open += db.count(&still)?;
        counts.open_in_period += db.count(&AlertFilter {
            since: Some(from),
            ..still.clone()
        })?;
        open.extend(db.list(&still)?.into_iter().map(line));
    }
    open.sort_by_key(|a| (a.first_seen, a.id));
    open.truncate(MAX_LISTED);
    Ok((listed, open, counts))
}
