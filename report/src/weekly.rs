//! The weekly access review, built from counts: every number is a count over the index's
//! columns (`EventIndex::facets`) or a search over the week (the same a person would get searching), or read from the alert
//! database; no event is read into memory to be counted.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use store::{EventIndex, FacetRequest, MAX_COUNTED_VALUES, SearchRequest};

use alerting::db::AlertDb;
use rules::clinic::Clinic;

use crate::ReportError;
pub use crate::alerts::{AlertCounts, AlertLine};
use crate::period::{Period, local_instant};

/// Rows listed at most in a list section (the counts stay whole).
pub const MAX_LISTED: usize = 200;
/// People listed at most in the staff table (the busiest).
pub const MAX_STAFF_LISTED: usize = 500;
/// Patients listed by how many staff opened them.
pub const TOP_PATIENTS: usize = 10;
/// Windows events about accounts: created (4720), enabled (4722), added to a global (4728) or
/// local (4732) security group; and the security log cleared (1102).
pub const ACCOUNT_CODES: [&str; 4] = ["4720", "4722", "4728", "4732"];
pub const LOG_CLEARED_CODE: &str = "1102";

/// A value and its count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

/// One person's week against their usual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaffWeek {
    pub user: String,
    /// The roster's name, if known.
    pub name: Option<String>,
    pub events: u64,
    /// Their average per period over the periods before ([`Period::baseline`]: four weeks, or
    /// three months; those holding events).
    pub usual: f64,
    /// Percent change against `usual`; none when they had no activity before.
    pub change_percent: Option<i64>,
}

/// One person's activity when the clinic was closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffHours {
    pub user: String,
    pub name: Option<String>,
    /// Outside the opening hours (with the grace margin) of a day the clinic was open.
    pub outside_hours: u64,
    /// On a day it was closed (weekly closed day, holiday, configured closure).
    pub closed_days: u64,
}

/// A day the clinic was closed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedDay {
    pub day: NaiveDate,
    /// The holiday's name, or empty for a weekly or configured closed day.
    pub why: String,
}

/// An account change or a cleared log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountChange {
    pub at: DateTime<Utc>,
    /// `4720`, `1102`, `roster.change`, `user.add`.
    pub what: String,
    pub user: Option<String>,
    pub host: Option<String>,
    pub message: String,
}

/// A patient and how many staff opened their record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientSpread {
    pub patient: String,
    pub staff: u64,
    pub accesses: u64,
}

/// Record-number gaps of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapLine {
    pub source: String,
    pub gaps: u64,
    pub missing: u64,
}

impl GapLine {
    /// Adds a gap event (`event.action:sequence_gap`): its holes (one event lists all an
    /// import found) and its missing records; the sums saturate.
    pub fn count(&mut self, e: &store::Event) {
        let holes = e
            .labels
            .get("gap.holes")
            .and_then(|h| h.parse().ok())
            .unwrap_or(1u64);
        self.gaps = self.gaps.saturating_add(holes);
        self.missing = self.missing.saturating_add(e.record_count.unwrap_or(0));
    }
}

/// The week's review.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WeeklyReport {
    /// The period's name: `2026-W48`, or `2026-11` for a monthly review.
    pub week: String,
    /// A week or a month.
    #[serde(default)]
    pub span: crate::period::Span,
    pub clinic: String,
    pub zone: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    /// Events of the week (mimamori's own audit trail not included).
    pub events: u64,
    /// By kind of log (`event.dataset`): the sources present.
    pub sources: Vec<Count>,
    pub staff: Vec<StaffWeek>,
    /// People with events in the period (the table lists the [`MAX_STAFF_LISTED`] busiest).
    #[serde(default)]
    pub staff_total: usize,
    pub off_hours: Vec<OffHours>,
    pub outside_hours_total: u64,
    pub closed_day_total: u64,
    pub closed_days: Vec<ClosedDay>,
    pub alerts: Vec<AlertLine>,
    /// Alerts of any week still open or acknowledged, oldest first.
    pub open_alerts: Vec<AlertLine>,
    /// The alerts counted whole (the lists above hold at most [`MAX_LISTED`] each).
    #[serde(default)]
    pub alert_counts: AlertCounts,
    pub account_changes: Vec<AccountChange>,
    pub log_cleared: u64,
    /// Staff whose roster end date had passed, yet their account was used this week.
    pub left_but_used: Vec<Count>,
    /// Roster accounts with no event for `dormant_days` up to the week's end (at most
    /// [`crate::dormant::MAX_DORMANT_LISTED`]; `dormant_total` says how many).
    #[serde(default)]
    pub dormant: Vec<crate::dormant::Dormant>,
    #[serde(default)]
    pub dormant_total: usize,
    /// 0: not looked for.
    #[serde(default)]
    pub dormant_days: i64,
    pub patients: Vec<PatientSpread>,
    /// Accesses with no explanation in the clinic's schedule, from a sample of the week's.
    #[serde(default)]
    pub spot_checks: crate::spot::SpotChecks,
    pub gaps: Vec<GapLine>,
    /// Sources silent longer than in the periods before.
    #[serde(default)]
    pub silences: Vec<crate::silence::Silence>,
    /// Events per local weekday (Monday first) and hour.
    pub heat: Vec<Vec<u64>>,
    /// The same for each person whose period was unusual ([`crate::heat::unusual_people`]).
    #[serde(default)]
    pub people_heat: Vec<crate::heat::PersonHeat>,
    /// Earlier weeks whose report is still not signed off after the allowed days.
    #[serde(default)]
    pub overdue_signoffs: Vec<String>,
    /// SHA-256 of what the week's events say ([`WeeklyReport::digest`]), to match a printed
    /// copy to the system.
    pub checksum: String,
    /// Patient IDs replaced by ranks (a copy for a channel not allowed patient data).
    #[serde(default)]
    pub patient_data_withheld: bool,
}

/// What a report is built from.
pub struct Sources<'a> {
    pub index: &'a EventIndex,
    pub alerts: Option<&'a AlertDb>,
    pub clinic: &'a Clinic,
    /// The kept reports, to name those left unsigned longer than `signoff_days`.
    pub archive: Option<&'a crate::archive::ReportDb>,
    pub signoff_days: i64,
    /// Days without an event that make a roster account dormant (0: not looked for).
    pub dormant_days: i64,
    /// The clinic's schedule, which explains accesses (none: they are not spot-checked).
    pub appointments: Option<&'a rules::detections::records::Appointments>,
}

fn counts(
    index: &EventIndex,
    query: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    field: &str,
) -> Result<(u64, Vec<Count>), ReportError> {
    let facets = index.facets(&FacetRequest {
        query: query.to_owned(),
        from,
        to,
        fields: vec![field.to_owned()],
        size: MAX_COUNTED_VALUES,
        bucket_secs: 0,
    })?;
    let values = facets
        .fields
        .into_iter()
        .next()
        .map(|(_, v)| v)
        .unwrap_or_default()
        .into_iter()
        .map(|v| Count {
            value: v.value,
            count: v.count,
        })
        .collect();
    Ok((facets.total, merge_case(values)))
}

/// Values that differ only in case (`n003`, `N003`: one account, as searches find it) made
/// one, under the spelling seen most; most frequent first.
fn merge_case(values: Vec<Count>) -> Vec<Count> {
    let mut merged: Vec<Count> = Vec::with_capacity(values.len());
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for v in values {
        match at.get(&v.value.to_lowercase()) {
            Some(&i) => merged[i].count += v.count,
            None => {
                at.insert(v.value.to_lowercase(), merged.len());
                merged.push(v);
            }
        }
    }
    merged.sort_by_key(|c| std::cmp::Reverse(c.count));
    merged
}

/// `value` quoted for the query language.
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A span of time: start (inclusive) and end (exclusive).
type Span = (DateTime<Utc>, DateTime<Utc>);

/// The local intervals of `day` when the clinic is closed, in UTC, and whether the whole day is.
fn closed_spans(clinic: &Clinic, day: NaiveDate) -> (Vec<Span>, bool) {
    let zone = clinic.zone;
    let start = local_instant(zone, day, NaiveTime::MIN);
    let end = local_instant(zone, day + Duration::days(1), NaiveTime::MIN);
    let hours = clinic.hours_on(day);
    if clinic.closed_date(day).is_some() || hours.is_empty() {
        return (vec![(start, end)], true);
    }
    // Open spans widened by the grace margin, as the off-hours detection reads them.
    let mut open: Vec<Span> = hours
        .iter()
        .map(|(a, b)| {
            (
                (local_instant(zone, day, *a) - clinic.grace).max(start),
                (local_instant(zone, day, *b) + clinic.grace).min(end),
            )
        })
        .collect();
    open.sort();
    let mut closed = Vec::new();
    let mut at = start;
    for (a, b) in open {
        if a > at {
            closed.push((at, a));
        }
        at = at.max(b);
    }
    if at < end {
        closed.push((at, end));
    }
    (closed, false)
}

impl WeeklyReport {
    pub fn build(
        sources: &Sources<'_>,
        week: Period,
        now: DateTime<Utc>,
    ) -> Result<WeeklyReport, ReportError> {
        let Sources {
            index,
            alerts,
            clinic,
            archive,
            signoff_days,
            dormant_days,
            appointments,
        } = *sources;
        let (from, to) = week.range();
        let name_of = |user: &str| {
            clinic
                .staff
                .get(&user.to_lowercase())
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty())
        };

        let (events, sources_present) = counts(index, "*", from, to, "event.dataset")?;
        let (_, by_user) = counts(index, "*", from, to, "user.name")?;

        // Each person against their own usual.
        // (Over the periods before that hold events: a store younger than four weeks averages
        // what it has.)
        // A period with a small share of the busiest one's events (a few stray events before
        // the store began collecting) is not a period of usual work: it is left out.
        let mut earlier = Vec::new();
        for n in 1..=week.baseline() {
            let (a, b) = week.back(n).range();
            earlier.push(counts(index, "*", a, b, "user.name")?);
        }
        let busiest = earlier.iter().map(|(total, _)| *total).max().unwrap_or(0);
        let mut before: BTreeMap<String, u64> = BTreeMap::new();
        let mut baseline_weeks = 0;
        for (total, users) in earlier {
            if total == 0 || total * 4 < busiest {
                continue;
            }
            baseline_weeks += 1;
            for c in users {
                *before.entry(c.value.to_lowercase()).or_default() += c.count;
            }
        }
        let staff: Vec<StaffWeek> = by_user
            .iter()
            .map(|c| {
                let usual = *before.get(&c.value.to_lowercase()).unwrap_or(&0) as f64
                    / baseline_weeks.max(1) as f64;
                StaffWeek {
                    user: c.value.clone(),
                    name: name_of(&c.value),
                    events: c.count,
                    usual,
                    change_percent: (usual > 0.0)
                        .then(|| ((c.count as f64 - usual) / usual * 100.0).round() as i64),
                }
            })
            .collect();

        // Outside opening hours, and on closed days.
        let mut off: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut closed_days = Vec::new();
        for day in week.days() {
            let (spans, whole) = closed_spans(clinic, day);
            if whole {
                closed_days.push(ClosedDay {
                    day,
                    why: match clinic.closed_date(day) {
                        Some(rules::clinic::Closed::Holiday(name)) => name.to_owned(),
                        _ => String::new(),
                    },
                });
            }
            for (a, b) in spans {
                for c in counts(index, "*", a, b, "user.name")?.1 {
                    let entry = off.entry(c.value.to_lowercase()).or_default();
                    if whole {
                        entry.1 += c.count;
                    } else {
                        entry.0 += c.count;
                    }
                }
            }
        }
        // Each person under the spelling of their account seen most this period.
        let spelled: BTreeMap<String, &str> = by_user
            .iter()
            .map(|c| (c.value.to_lowercase(), c.value.as_str()))
            .collect();
        let mut off_hours: Vec<OffHours> = off
            .into_iter()
            .map(|(key, (outside_hours, closed))| {
                let user = spelled.get(&key).map_or(key, |s| (*s).to_owned());
                (user, (outside_hours, closed))
            })
            .map(|(user, (outside_hours, closed))| OffHours {
                name: name_of(&user),
                user,
                outside_hours,
                closed_days: closed,
            })
            .collect();
        off_hours.sort_by(|a, b| {
            (b.outside_hours + b.closed_days)
                .cmp(&(a.outside_hours + a.closed_days))
                .then(a.user.cmp(&b.user))
        });
        let outside_hours_total = off_hours.iter().map(|o| o.outside_hours).sum();
        let closed_day_total = off_hours.iter().map(|o| o.closed_days).sum();

        // Alerts: the week's, and those still open from any week.
        let (alerts, open_alerts, alert_counts) = match alerts {
            Some(db) => crate::alerts::lines(db, (from, to), now)?,
            None => (Vec::new(), Vec::new(), AlertCounts::default()),
        };

        // Accounts created, enabled or given rights; the log cleared; roster and UI accounts.
        let codes: Vec<String> = ACCOUNT_CODES
            .iter()
            .chain([&LOG_CLEARED_CODE])
            .map(|c| format!("event.code:{c}"))
            .collect();
        let query = format!(
            "({}) OR (event.dataset:mimamori.audit AND (event.action:roster.change OR event.action:user.add))",
            codes.join(" OR ")
        );
        let found = index.search(&SearchRequest::newest(query, MAX_LISTED).between(from, to))?;
        let account_changes: Vec<AccountChange> = found
            .events
            .into_iter()
            .rev()
            .map(|e| AccountChange {
                at: e.timestamp,
                what: e.code.clone().unwrap_or_else(|| e.action.clone()),
                user: e.user.clone(),
                host: e.host.clone(),
                message: e.message.chars().take(200).collect(),
            })
            .collect();
        let log_cleared = index
            .search(
                &SearchRequest::newest(format!("event.code:{LOG_CLEARED_CODE}"), 1)
                    .between(from, to),
            )?
            .total;

        // Staff whose end date had passed, yet their account was used.
        let mut left_but_used = Vec::new();
        for c in &by_user {
            let Some(end) = clinic
                .staff
                .get(&c.value.to_lowercase())
                .and_then(|s| s.end)
            else {
                continue;
            };
            let after = local_instant(clinic.zone, end + Duration::days(1), NaiveTime::MIN);
            if after >= to {
                continue;
            }
            let (n, _) = counts(
                index,
                &format!("user.name:{}", quoted(&c.value)),
                after.max(from),
                to,
                "user.name",
            )?;
            if n > 0 {
                left_but_used.push(Count {
                    value: c.value.clone(),
                    count: n,
                });
            }
        }

        // Patients opened by the most staff.
        let (_, top) = counts(index, "*", from, to, "patient.id")?;
        let mut patients = Vec::new();
        for p in top.into_iter().take(MAX_LISTED) {
            let (accesses, users) = counts(
                index,
                &format!("patient.id:{}", quoted(&p.value)),
                from,
                to,
                "user.name",
            )?;
            patients.push(PatientSpread {
                patient: p.value,
                staff: users.len() as u64,
                accesses,
            });
        }
        patients.sort_by(|a, b| {
            b.staff
                .cmp(&a.staff)
                .then(b.accesses.cmp(&a.accesses))
                .then(a.patient.cmp(&b.patient))
        });
        patients.truncate(TOP_PATIENTS);

        // Holes in the record numbering.
        let found = index.search(
            &SearchRequest::newest("event.action:sequence_gap", MAX_LISTED).between(from, to),
        )?;
        let mut gap_map: BTreeMap<String, GapLine> = BTreeMap::new();
        for e in found.events {
            let source = e.labels.get("gap.source").cloned().unwrap_or_default();
            gap_map
                .entry(source.clone())
                .or_insert(GapLine {
                    source,
                    gaps: 0,
                    missing: 0,
                })
                .count(&e);
        }

        // The clinic's activity by local weekday and hour, and the unusual people's.
        let heat = crate::heat::heat(index, "*", from, to, clinic.zone)?;
        let people_heat =
            crate::heat::unusual_people(index, &staff, &off_hours, (from, to), clinic.zone)?;

        let (dormant, dormant_total) = crate::dormant::dormant(index, clinic, to, dormant_days)?;

        let spot_checks = crate::spot::spot_checks(index, clinic, appointments, week)?;
        let silences = crate::silence::silences(index, week)?;

        let mut report = WeeklyReport {
            week: week.name(),
            span: week.span,
            clinic: clinic.name.clone(),
            zone: clinic.zone.name().to_owned(),
            from,
            to,
            generated_at: now,
            events,
            sources: sources_present,
            staff,
            staff_total: 0,
            off_hours,
            outside_hours_total,
            closed_day_total,
            closed_days,
            alerts,
            open_alerts,
            alert_counts,
            account_changes,
            log_cleared,
            left_but_used,
            dormant,
            dormant_total,
            dormant_days,
            patients,
            spot_checks,
            gaps: gap_map.into_values().collect(),
            silences,
            heat,
            people_heat,
            overdue_signoffs: match archive {
                Some(db) => db
                    .overdue(signoff_days, now)?
                    .into_iter()
                    .filter(|w| *w != week.name())
                    .collect(),
                None => Vec::new(),
            },
            checksum: String::new(),
            patient_data_withheld: false,
        };
        report.checksum = report.digest();
        report.bound();
        Ok(report)
    }

    /// SHA-256 of what the week's events say (period, counts, people, patients, gaps, heat
    /// map): the same week made again gives the same checksum unless its events changed.
    /// Alerts and their triage, which change as people work, are not part of it.
    pub fn digest(&self) -> String {
        let covered = serde_json::json!([
            self.week,
            self.zone,
            self.from,
            self.to,
            self.events,
            self.sources,
            self.staff,
            self.off_hours,
            self.closed_days,
            self.account_changes,
            self.left_but_used,
            self.patients,
            self.gaps,
            self.heat,
        ]);
        sha2::Sha256::digest(covered.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
