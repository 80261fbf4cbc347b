//! Spot checks: accesses to patient records with no explanation. A sample of the week's
//! accesses, spread over its days and hours (all of a quiet 4-hour slice, 20 drawn at random
//! from a busy one), is held against the clinic's schedule
//! (`[detections.treatment_relationship] appointments_file`): an access is explained by an
//! appointment or visit of that patient on that day (at that site, when both say one). The
//! review lists the unexplained ones for someone to ask about; it needs the schedule, and says
//! so when there is none.

use chrono::{DateTime, Duration, Utc};
use rules::clinic::Clinic;
use rules::detections::records::Appointments;
use serde::{Deserialize, Serialize};
use store::{EventIndex, SearchRequest};

use crate::ReportError;
use crate::period::Period;

/// Accesses taken from each of the [`SLICES_PER_DAY`] slices of each day.
pub const PER_SLICE: usize = 20;
/// Each day is sampled in this many equal slices (4 hours each), so night and day both count.
pub const SLICES_PER_DAY: i64 = 6;
/// The most unexplained accesses listed.
pub const MAX_LISTED: usize = 20;

/// Accesses to a patient's record.
const QUERY: &str = "patient.id:*";

/// [`PER_SLICE`] accesses of a busy slice `[from, to)`, drawn at random: for each of as many
/// random instants (from the system's random source, so nobody can tell beforehand which
/// moments are looked at), the last access before it. An access hidden among many others is
/// as likely to be drawn as any.
fn sample(
    index: &EventIndex,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<store::Event>, ReportError> {
    let span = (to - from).num_microseconds().unwrap_or(1).max(1) as u64;
    let random = ring::rand::SystemRandom::new();
    let mut drawn: Vec<store::Event> = Vec::new();
    for _ in 0..PER_SLICE {
        let mut bytes = [0u8; 8];
        ring::rand::SecureRandom::fill(&random, &mut bytes)
            .map_err(|_| ReportError::Render("no randomness for the spot check".into()))?;
        let offset = u64::from_le_bytes(bytes) % span;
        let instant = from + Duration::microseconds(offset as i64 + 1);
        let found = index.search(&SearchRequest::newest(QUERY, 1).between(from, instant))?;
        for e in found.events {
            if !drawn.iter().any(|d| d.id == e.id) {
                drawn.push(e);
            }
        }
    }
    Ok(drawn)
}

/// What the spot check found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpotChecks {
    /// The clinic's schedule was there to check against.
    pub schedule: bool,
    /// Accesses looked at.
    pub sampled: u64,
    /// Of those, with no appointment or visit that day.
    pub unexplained: u64,
    /// Unexplained accesses, oldest first, at most [`MAX_LISTED`].
    pub listed: Vec<Unexplained>,
}

/// One access with no explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unexplained {
    pub at: DateTime<Utc>,
    pub user: Option<String>,
    pub name: Option<String>,
    pub patient: String,
    pub site: Option<String>,
    pub action: String,
}

/// The spot check of `week`'s accesses against `schedule`.
pub fn spot_checks(
    index: &EventIndex,
    clinic: &Clinic,
    schedule: Option<&Appointments>,
    week: Period,
) -> Result<SpotChecks, ReportError> {
    let Some(schedule) = schedule else {
        return Ok(SpotChecks::default());
    };
    let (from, to) = week.range();
    let slice = Duration::hours(24 / SLICES_PER_DAY);
    let mut out = SpotChecks {
        schedule: true,
        ..SpotChecks::default()
    };
    let mut at = from;
    while at < to {
        let end = (at + slice).min(to);
        // (mimamori's own audit trail, views in its UI, is not searched unless asked for.)
        let newest = index.search(&SearchRequest::newest(QUERY, PER_SLICE).between(at, end))?;
        let events = if newest.total as usize <= PER_SLICE {
            newest.events
        } else {
            sample(index, at, end)?
        };
        for e in events {
            let Some(patient) = e.patient.clone() else {
                continue;
            };
            out.sampled += 1;
            let site = e.site.clone().or_else(|| clinic.site_of(&e));
            let day = e.timestamp.with_timezone(&clinic.zone).date_naive();
            if schedule.related(&patient, site.as_deref(), day, 0) {
                continue;
            }
            out.unexplained += 1;
            let name = e
                .user
                .as_deref()
                .and_then(|u| clinic.staff.get(&u.to_lowercase()))
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty());
            out.listed.push(Unexplained {
                at: e.timestamp,
                user: e.user.clone(),
                name,
                patient,
                site,
                action: e.action.clone(),
            });
        }
        at = end;
    }
    out.listed.sort_by_key(|u| u.at);
    // Spread over the week rather than its first day: every k-th.
    let step = out.listed.len().div_ceil(MAX_LISTED).max(1);
    out.listed = out.listed.into_iter().step_by(step).collect();
    Ok(out)
}
