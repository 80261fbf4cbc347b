//! Activity by local weekday and hour: the clinic's, and each person's whose week was unusual
//! (use outside opening hours, or far more than their own usual), as 7 × 24 counts that the
//! report draws as coloured table cells (email clients show them; no image, no script).

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use store::{EventIndex, FacetRequest};

use crate::ReportError;
use crate::weekly::{OffHours, StaffWeek, quoted};

/// People whose own map is drawn, at most.
pub const MAX_PEOPLE: usize = 5;
/// A person's week is unusual when it is at least this many percent above their usual...
pub const SURGE_PERCENT: i64 = 100;
/// ...and holds at least this many events.
pub const SURGE_MIN_EVENTS: u64 = 20;

/// One person's map and why it is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonHeat {
    pub user: String,
    pub name: Option<String>,
    /// `off_hours` (use outside opening hours or on closed days) or `surge` (far above usual).
    pub why: String,
    pub heat: Vec<Vec<u64>>,
}

/// Events of `query` in `[from, to)` per local weekday (Monday first) and hour in `zone`,
/// counted hour by hour (a week at a time: a month is never coarser).
pub fn heat(
    index: &EventIndex,
    query: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: Tz,
) -> Result<Vec<Vec<u64>>, ReportError> {
    let mut heat = vec![vec![0u64; 24]; 7];
    let mut at = from;
    while at < to {
        let end = (at + Duration::days(7)).min(to);
        let counts = index.facets(&FacetRequest {
            query: query.to_owned(),
            from: at,
            to: end,
            fields: Vec::new(),
            size: 1,
            bucket_secs: 3600,
        })?;
        for (start, n) in counts.histogram {
            let local = start.with_timezone(&zone);
            heat[local.weekday().num_days_from_monday() as usize][local.hour() as usize] += n;
        }
        at = end;
    }
    Ok(heat)
}

/// The maps of the people whose period was unusual: those with use outside hours (most
/// first), then those far above their usual, at most [`MAX_PEOPLE`].
pub fn unusual_people(
    index: &EventIndex,
    staff: &[StaffWeek],
    off_hours: &[OffHours],
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    zone: Tz,
) -> Result<Vec<PersonHeat>, ReportError> {
    let mut off: Vec<&OffHours> = off_hours.iter().collect();
    off.sort_by_key(|o| std::cmp::Reverse(o.outside_hours + o.closed_days));
    let mut chosen: Vec<(String, Option<String>, &str)> = off
        .iter()
        .map(|o| (o.user.clone(), o.name.clone(), "off_hours"))
        .collect();
    for p in staff {
        if p.events >= SURGE_MIN_EVENTS
            && p.change_percent.is_some_and(|c| c >= SURGE_PERCENT)
            && !chosen.iter().any(|(u, _, _)| *u == p.user)
        {
            chosen.push((p.user.clone(), p.name.clone(), "surge"));
        }
    }
    chosen.truncate(MAX_PEOPLE);
    chosen
        .into_iter()
        .map(|(user, name, why)| {
            Ok(PersonHeat {
                heat: heat(
                    index,
                    &format!("user.name:{}", quoted(&user)),
                    from,
                    to,
                    zone,
                )?,
                user,
                name,
                why: why.to_owned(),
            })
        })
        .collect()
}
