//! Dormant accounts: people on the roster, employed through the week, whose account has left
//! no event for `[report] dormant_days` up to the week's end. An account nobody uses is one
//! nobody would notice being misused: the review lists it to be disabled or explained.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use rules::clinic::Clinic;
use serde::{Deserialize, Serialize};
use store::{EventIndex, SearchRequest};

use crate::ReportError;
use crate::period::local_instant;
use crate::weekly::quoted;

/// A dormant account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dormant {
    pub user: String,
    pub name: Option<String>,
    /// Its last event within the year before the week's end, if any.
    pub last_seen: Option<DateTime<Utc>>,
}

/// The most dormant accounts listed (a roster of thousands with no logs yet would list them
/// all otherwise); the count says how many there are.
pub const MAX_DORMANT_LISTED: usize = 100;

/// The roster's dormant accounts at `to` (the end of the week), longest silent first, at
/// most [`MAX_DORMANT_LISTED`], and how many there are.
pub fn dormant(
    index: &EventIndex,
    clinic: &Clinic,
    to: DateTime<Utc>,
    days: i64,
) -> Result<(Vec<Dormant>, usize), ReportError> {
    if days <= 0 {
        return Ok((Vec::new(), 0));
    }
    let since = to - Duration::days(days);
    let last_day = (to - Duration::seconds(1))
        .with_timezone(&clinic.zone)
        .date_naive();
    let mut found = Vec::new();
    for staff in clinic.staff.values() {
        // Gone before the week ended, or hired within the span: not dormant.
        if staff.end.is_some_and(|end| end < last_day) {
            continue;
        }
        if staff
            .start
            .is_some_and(|start| local_instant(clinic.zone, start, NaiveTime::MIN) > since)
        {
            continue;
        }
        let seen = |from: DateTime<Utc>| -> Result<Option<DateTime<Utc>>, ReportError> {
            let found = index.search(
                &SearchRequest::newest(format!("user.name:{}", quoted(&staff.id)), 1)
                    .between(from, to),
            )?;
            Ok(found.events.first().map(|e| e.timestamp))
        };
        if seen(since)?.is_some() {
            continue;
        }
        found.push(Dormant {
            user: staff.id.clone(),
            name: Some(staff.name.clone()).filter(|n| !n.is_empty()),
            last_seen: seen(to - Duration::days(366))?,
        });
    }
    // Never seen first, then the longest silent.
    found.sort_by(|a, b| a.last_seen.cmp(&b.last_seen).then(a.user.cmp(&b.user)));
    let total = found.len();
    found.truncate(MAX_DORMANT_LISTED);
    Ok((found, total))
}
