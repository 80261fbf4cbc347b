//! The detections, evaluated on each event as it is accepted, on event time. State is per user
//! and bounded: sessions per site, and the patients viewed within the window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use store::{Event, Outcome};

use crate::clinic::{Clinic, Closed, Invalid};
use crate::{Alert, Severity};

/// `[detections.off_hours_login]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Roster flags that make a login at any hour expected.
    pub exempt_flags: Vec<String>,
    pub exempt_roles: Vec<String>,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        OffHoursConfig {
            enabled: true,
            severity: Severity::Medium,
            exempt_flags: vec!["on_call".into(), "night_shift".into()],
            exempt_roles: Vec::new(),
        }
    }
}

/// `[detections.access_outside_role]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleCheckConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Activity of accounts not on the roster (only when a roster is configured).
    pub unknown_accounts: bool,
    /// Activity after a staff member's employment end date.
    pub ended_staff: bool,
}

impl Default for RoleCheckConfig {
    fn default() -> Self {
        RoleCheckConfig {
            enabled: true,
            severity: Severity::High,
            unknown_accounts: true,
            ended_staff: true,
        }
    }
}

/// `[detections.concurrent_sessions]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrentConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// A session without a logout ends this long after its last activity.
    pub session_idle_minutes: u32,
    /// The quickest anyone gets from one site to another.
    pub travel_minutes: u32,
}

impl Default for ConcurrentConfig {
    fn default() -> Self {
        ConcurrentConfig {
            enabled: true,
            severity: Severity::High,
            session_idle_minutes: 30,
            travel_minutes: 20,
        }
    }
}

/// `[detections.bulk_export]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// One export or print of at least this many records.
    pub max_records: u64,
    /// At least this many distinct patients viewed by one user within `window_minutes`.
    pub distinct_patients: usize,
    pub window_minutes: u32,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            enabled: true,
            severity: Severity::High,
            max_records: 100,
            distinct_patients: 50,
            window_minutes: 60,
        }
    }
}

/// `[detections]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionsConfig {
    pub off_hours_login: OffHoursConfig,
    pub access_outside_role: RoleCheckConfig,
    pub concurrent_sessions: ConcurrentConfig,
    pub bulk_export: BulkConfig,
}

impl DetectionsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.bulk_export.max_records == 0 {
            return Err((
                "detections.bulk_export.max_records".into(),
                "at least 1".into(),
            ));
        }
        if self.bulk_export.distinct_patients == 0 || self.bulk_export.window_minutes == 0 {
            return Err((
                "detections.bulk_export.distinct_patients".into(),
                "at least 1, with window_minutes at least 1".into(),
            ));
        }
        if self.concurrent_sessions.session_idle_minutes == 0 {
            return Err((
                "detections.concurrent_sessions.session_idle_minutes".into(),
                "at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Where a user was last seen at one site.
#[derive(Debug, Clone)]
struct Presence {
    last: DateTime<Utc>,
    logged_in: Option<DateTime<Utc>>,
    logged_out: bool,
    event: store::EventId,
}

#[derive(Default)]
struct UserState {
    sites: BTreeMap<String, Presence>,
    /// (time, patient) viewed, oldest first, within the window.
    views: VecDeque<(DateTime<Utc>, String)>,
    bulk_alerted_until: Option<DateTime<Utc>>,
}

/// Most users followed at once; the least recently seen are dropped beyond it.
const MAX_USERS: usize = 100_000;

/// The detections with their state.
pub struct Engine {
    pub clinic: Clinic,
    pub config: DetectionsConfig,
    users: HashMap<String, UserState>,
}

/// Windows logon types that mean a person at a keyboard or a remote desktop.
const INTERACTIVE_LOGONS: &[&str] = &["2", "7", "10", "11", "12", "13"];

impl Engine {
    pub fn new(clinic: Clinic, config: DetectionsConfig) -> Engine {
        Engine {
            clinic,
            config,
            users: HashMap::new(),
        }
    }

    /// The alerts this event raises (often none).
    pub fn process(&mut self, event: &Event) -> Vec<Alert> {
        let Some(user) = event.user.as_deref().map(str::to_lowercase) else {
            return Vec::new();
        };
        if event.dataset == "mimamori.gap" {
            return Vec::new();
        }
        let site = self.clinic.site_of(event);
        let mut alerts = Vec::new();
        if self.config.off_hours_login.enabled {
            alerts.extend(self.off_hours(event, &user, site.as_deref()));
        }
        if self.config.access_outside_role.enabled {
            alerts.extend(self.outside_role(event, &user, site.as_deref()));
        }
        if self.config.concurrent_sessions.enabled {
            alerts.extend(self.concurrent(event, &user, site.as_deref()));
        }
        if self.config.bulk_export.enabled {
            alerts.extend(self.bulk(event, &user, site.as_deref()));
        }
        if self.users.len() > MAX_USERS {
            self.prune(event.timestamp);
        }
        alerts
    }

    fn alert(
        &self,
        rule: &str,
        severity: Severity,
        event: &Event,
        site: Option<&str>,
        explanation: String,
    ) -> Alert {
        Alert {
            rule: rule.to_owned(),
            severity,
            user: event.user.clone(),
            site: site.map(str::to_owned),
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            count: 1,
            explanation,
            evidence: vec![event.id.clone()],
        }
    }

    fn who(&self, user: &str, event: &Event) -> String {
        match self.clinic.staff.get(user) {
            Some(s) if !s.name.is_empty() => {
                format!("{} ({})", event.user.as_deref().unwrap_or(user), s.name)
            }
            _ => event.user.clone().unwrap_or_default(),
        }
    }

    fn is_person_login(event: &Event) -> bool {
        if event.action != "login" || event.outcome == Outcome::Failure {
            return false;
        }
        if event.dataset.starts_with("windows") {
            return match event.labels.get("winlog.logon.type") {
                Some(t) => INTERACTIVE_LOGONS.contains(&t.as_str()),
                None => true, // RDP session events carry no logon type
            };
        }
        true
    }

    fn off_hours(&self, event: &Event, user: &str, site: Option<&str>) -> Option<Alert> {
        if !Self::is_person_login(event) {
            return None;
        }
        let closed = self.clinic.closed_at(event.timestamp)?;
        let cfg = &self.config.off_hours_login;
        if let Some(staff) = self.clinic.staff.get(user)
            && (staff.flags.iter().any(|f| cfg.exempt_flags.contains(f))
                || staff.roles.iter().any(|r| cfg.exempt_roles.contains(r)))
        {
            return None;
        }
        let local = self.clinic.local(event.timestamp);
        let when = format!(
            "{} on {}",
            local.format("%H:%M"),
            local.format("%A %Y-%m-%d")
        );
        let why = match closed {
            Closed::Holiday(name) => format!("it is a national holiday ({name})"),
            Closed::ClosedDate => "the clinic is closed that day".to_owned(),
            Closed::ClosedDay => format!("the clinic is closed on {}s", local.format("%A")),
            Closed::OutsideHours(hours) => format!("the clinic is open {hours} that day"),
        };
        let place = site.map(|s| format!(" at {s}")).unwrap_or_default();
        Some(self.alert(
            "off_hours_login",
            cfg.severity,
            event,
            site,
            format!(
                "{} logged in{place} at {when}; {why}",
                self.who(user, event)
            ),
        ))
    }

    fn outside_role(&self, event: &Event, user: &str, site: Option<&str>) -> Option<Alert> {
        let cfg = &self.config.access_outside_role;
        let staff = self.clinic.staff.get(user);
        let who = self.who(user, event);
        if staff.is_none()
            && cfg.unknown_accounts
            && !self.clinic.staff.is_empty()
            && event.outcome != Outcome::Failure
        {
            return Some(self.alert(
                "access_outside_role",
                cfg.severity,
                event,
                site,
                format!(
                    "{who} is not on the staff roster but did {} ({})",
                    event.action, event.dataset
                ),
            ));
        }
        if let Some(s) = staff
            && cfg.ended_staff
            && let Some(end) = s.end
            && self.clinic.local(event.timestamp).date_naive() > end
            && event.outcome != Outcome::Failure
        {
            return Some(self.alert(
                "access_outside_role",
                cfg.severity,
                event,
                site,
                format!(
                    "{who} left on {end} but did {} on {}",
                    event.action,
                    self.clinic.local(event.timestamp).format("%Y-%m-%d")
                ),
            ));
        }
        if !event.action.starts_with("record.") || event.outcome == Outcome::Failure {
            return None;
        }
        let roles: Vec<&String> = match staff {
            Some(s) if !s.roles.is_empty() => s.roles.iter().collect(),
            _ => event
                .roles
                .iter()
                .filter(|r| self.clinic.roles.contains_key(*r))
                .collect(),
        };
        if roles.is_empty() {
            return None; // nothing known of what this account may do
        }
        let category = event.category.as_deref();
        let allowed = roles.iter().any(|r| {
            let role = &self.clinic.roles[*r];
            role.allow
                .iter()
                .any(|p| p.matches(&event.action, category))
                && !role.deny.iter().any(|p| p.matches(&event.action, category))
        });
        if allowed {
            return None;
        }
        let what = match category {
            Some(c) => format!("{} of {c}", event.action),
            None => event.action.clone(),
        };
        let roles_text: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Some(self.alert(
            "access_outside_role",
            cfg.severity,
            event,
            site,
            format!(
                "{who} ({}) did {what}, which that role does not allow",
                roles_text.join(", ")
            ),
        ))
    }

    fn concurrent(&mut self, event: &Event, user: &str, site: Option<&str>) -> Option<Alert> {
        let site = site?;
        let cfg = self.config.concurrent_sessions.clone();
        let idle = Duration::minutes(i64::from(cfg.session_idle_minutes));
        let travel = Duration::minutes(i64::from(cfg.travel_minutes));
        let t = event.timestamp;
        let who = self.who(user, event);
        let state = self.users.entry(user.to_owned()).or_default();
        let mut found = None;
        if event.action == "login" && event.outcome != Outcome::Failure {
            for (other, p) in &state.sites {
                if other == site || p.logged_out || p.last > t + travel {
                    continue;
                }
                let gap = t - p.last;
                if gap <= idle && p.logged_in.is_some() {
                    found = Some((
                        other.clone(),
                        p.clone(),
                        format!(
                            "still logged in at {other} (since {}, last activity {})",
                            self.clinic
                                .local(p.logged_in.unwrap_or(p.last))
                                .format("%H:%M"),
                            self.clinic.local(p.last).format("%H:%M")
                        ),
                    ));
                    break;
                }
                if gap < travel {
                    found = Some((
                        other.clone(),
                        p.clone(),
                        format!(
                            "active at {other} only {} min earlier; the sites are {} min apart",
                            gap.num_minutes(),
                            cfg.travel_minutes
                        ),
                    ));
                    break;
                }
            }
        }
        let presence = state.sites.entry(site.to_owned()).or_insert(Presence {
            last: t,
            logged_in: None,
            logged_out: false,
            event: event.id.clone(),
        });
        if t >= presence.last {
            presence.last = t;
            presence.event = event.id.clone();
        }
        match event.action.as_str() {
            "login" if event.outcome != Outcome::Failure => {
                presence.logged_in = Some(t);
                presence.logged_out = false;
            }
            "logout" => presence.logged_out = true,
            _ => {}
        }
        let (other, p, why) = found?;
        let mut alert = self.alert(
            "concurrent_sessions",
            cfg.severity,
            event,
            Some(site),
            format!(
                "{who} logged in at {site} at {} while {why}",
                self.clinic.local(t).format("%H:%M on %Y-%m-%d")
            ),
        );
        alert.evidence.insert(0, p.event);
        alert.first_seen = alert.first_seen.min(p.last);
        let _ = other;
        Some(alert)
    }

    fn bulk(&mut self, event: &Event, user: &str, site: Option<&str>) -> Option<Alert> {
        let cfg = self.config.bulk_export.clone();
        let who = self.who(user, event);
        if matches!(event.action.as_str(), "record.export" | "record.print")
            && event.outcome != Outcome::Failure
            && let Some(n) = event.record_count
            && n >= cfg.max_records
        {
            let verb = if event.action == "record.export" {
                "exported"
            } else {
                "printed"
            };
            return Some(self.alert(
                "bulk_export",
                cfg.severity,
                event,
                site,
                format!(
                    "{who} {verb} {n} records at once (the limit is {})",
                    cfg.max_records
                ),
            ));
        }
        if event.action != "record.view" {
            return None;
        }
        let patient = event.patient.clone()?;
        let window = Duration::minutes(i64::from(cfg.window_minutes));
        let t = event.timestamp;
        let state = self.users.entry(user.to_owned()).or_default();
        state.views.push_back((t, patient));
        while state.views.front().is_some_and(|(v, _)| *v < t - window) {
            state.views.pop_front();
        }
        // Bounded: far more views than the threshold adds nothing.
        while state.views.len() > cfg.distinct_patients * 20 {
            state.views.pop_front();
        }
        if state.bulk_alerted_until.is_some_and(|u| t < u) {
            return None;
        }
        let distinct: std::collections::HashSet<&String> =
            state.views.iter().map(|(_, p)| p).collect();
        if distinct.len() < cfg.distinct_patients {
            return None;
        }
        let n = distinct.len();
        state.bulk_alerted_until = Some(t + window);
        Some(self.alert(
            "bulk_export",
            cfg.severity,
            event,
            site,
            format!(
                "{who} opened the records of {n} different patients within {} minutes (the limit is {})",
                cfg.window_minutes, cfg.distinct_patients
            ),
        ))
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::hours(24);
        self.users.retain(|_, s| {
            s.sites.values().any(|p| p.last > horizon)
                || s.views.back().is_some_and(|(t, _)| *t > horizon)
        });
    }
}
