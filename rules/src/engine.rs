//! The engine: every detection (one file each under [`crate::detections`]) evaluated on each
//! event as it is accepted, on event time, over per-user state that is bounded: sessions per
//! site, failures, machines, and the patients viewed within the window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use store::Event;

use crate::clinic::Clinic;
use crate::detections::Detection;
use crate::detections::bulk::Bulk;
use crate::detections::concurrent::Concurrent;
use crate::detections::custom::Window;
use crate::detections::logins::Logins;
use crate::detections::off_hours::OffHours;
use crate::detections::outside_role::OutsideRole;
use crate::detections::records::Records;
use crate::detections::spray::Sprays;
use crate::detections::zones::ZoneGuesses;
pub use crate::detections::{
    Appointments, BulkConfig, ConcurrentConfig, CustomRule, CustomRuleConfig, DetectionsConfig,
    FailuresConfig, MAX_LATENESS_SECONDS, NewWorkstationConfig, OffHoursConfig, RoleCheckConfig,
    SensitiveConfig, TreatmentConfig,
};
use crate::{Alert, RuleId, Severity};

/// Who an event is about, as the detections name them.
pub(crate) struct Who<'a> {
    /// The account, lower case.
    pub user: &'a str,
    /// The account with the roster's name, as alerts say it: `n002 (山田花子)`.
    pub name: &'a str,
    pub site: Option<&'a str>,
}

/// Where a user was last seen at one site.
#[derive(Debug, Clone)]
pub(crate) struct Presence {
    pub last: DateTime<Utc>,
    pub logged_in: Option<DateTime<Utc>>,
    pub logged_out: bool,
    pub event: store::EventId,
}

/// What the detections follow per account.
#[derive(Default)]
pub(crate) struct UserState {
    pub sites: BTreeMap<String, Presence>,
    /// Failed logins within the window, oldest first.
    pub failures: VecDeque<DateTime<Utc>>,
    /// Machines logged in from, and how many logins were seen.
    pub hosts: Vec<String>,
    pub logins: u32,
    /// (time, patient) viewed, oldest first, within the window.
    pub views: VecDeque<(DateTime<Utc>, String)>,
    pub bulk_alerted_until: Option<DateTime<Utc>>,
    /// Record accesses per local day, oldest first (the baseline), and the day already alerted.
    pub daily: VecDeque<(chrono::NaiveDate, u64)>,
    pub baseline_alerted: Option<chrono::NaiveDate>,
}

/// Most machines remembered per account.
pub(crate) const MAX_HOSTS: usize = 256;

/// Most users followed at once; the least recently seen are dropped beyond it.
pub(crate) const MAX_USERS: usize = 100_000;

/// The detections with their state.
pub struct Engine {
    pub clinic: Clinic,
    pub config: DetectionsConfig,
    pub appointments: Option<Appointments>,
    pub(crate) users: HashMap<String, UserState>,
    pub(crate) sprays: Sprays,
    pub(crate) zones: ZoneGuesses,
    pub(crate) custom: Vec<(CustomRule, HashMap<String, Window>)>,
    /// When each account was last active (event time), for dormant accounts; saved by the
    /// caller across restarts (`last_active` / `remember_active`).
    pub(crate) last_active: HashMap<String, DateTime<Utc>>,
    /// Accounts whose last activity changed since `take_changed_activity`.
    pub(crate) changed_activity: Vec<String>,
    /// Accounts whose machines (or learning count) changed since `take_changed_machines`.
    pub(crate) changed_machines: Vec<String>,
    /// The latest arrival time seen, to notice the appliance's clock going back.
    pub(crate) last_ingested: Option<DateTime<Utc>>,
    /// What came closest to firing without firing, per rule (for `rules test` and backtests).
    pub near_misses: BTreeMap<String, NearMiss>,
}

/// The closest a rule came to firing.
#[derive(Debug, Clone, PartialEq)]
pub struct NearMiss {
    /// How close, from 0 (nowhere near) to 1 (firing).
    pub closeness: f64,
    /// What happened, with the numbers.
    pub what: String,
}

/// Keeps the closest miss per rule; `what` is only written when it is the closest yet.
pub(crate) fn note_miss(
    map: &mut BTreeMap<String, NearMiss>,
    rule: &str,
    closeness: f64,
    what: impl FnOnce() -> String,
) {
    match map.get_mut(rule) {
        Some(m) if m.closeness >= closeness => {}
        Some(m) => {
            *m = NearMiss {
                closeness,
                what: what(),
            }
        }
        None => {
            map.insert(
                rule.to_owned(),
                NearMiss {
                    closeness,
                    what: what(),
                },
            );
        }
    }
}

/// A threshold rule that reached `value` of `threshold`.
pub(crate) fn note_near_miss(
    map: &mut BTreeMap<String, NearMiss>,
    rule: &str,
    value: u64,
    threshold: u64,
    who: impl FnOnce() -> String,
) {
    if value == 0 || value >= threshold {
        return;
    }
    let closeness = value as f64 / threshold as f64;
    note_miss(map, rule, closeness, || {
        format!("reached {value} of {threshold} ({})", who())
    });
}

pub(crate) fn human(d: Duration) -> String {
    if d >= Duration::days(2) {
        format!("{} days", d.num_days())
    } else if d >= Duration::hours(2) {
        format!("{} hours", d.num_hours())
    } else {
        format!("{} minutes", d.num_minutes())
    }
}

impl Engine {
    pub fn new(clinic: Clinic, config: DetectionsConfig) -> Engine {
        Engine {
            clinic,
            config,
            appointments: None,
            users: HashMap::new(),
            sprays: Sprays::default(),
            zones: ZoneGuesses::default(),
            custom: Vec::new(),
            last_active: HashMap::new(),
            changed_activity: Vec::new(),
            changed_machines: Vec::new(),
            last_ingested: None,
            near_misses: BTreeMap::new(),
        }
    }

    /// Takes the model and rules of `new`, keeping what has been learnt (sessions, windows of
    /// custom rules whose definition did not change).
    pub fn reconfigure(&mut self, new: Engine) {
        self.clinic = new.clinic;
        self.config = new.config;
        self.appointments = new.appointments;
        let mut old: Vec<(CustomRule, HashMap<String, Window>)> = std::mem::take(&mut self.custom);
        self.custom = new
            .custom
            .into_iter()
            .map(
                |(rule, fresh)| match old.iter().position(|(r, _)| r.config == rule.config) {
                    Some(i) => old.swap_remove(i),
                    None => (rule, fresh),
                },
            )
            .collect();
    }

    /// Last activity known from before (the alert database keeps it across restarts).
    pub fn remember_active(&mut self, user: &str, at: DateTime<Utc>) {
        let e = self.last_active.entry(user.to_lowercase()).or_insert(at);
        *e = (*e).max(at);
    }

    /// Accounts whose last activity moved since the last call, with it.
    pub fn take_changed_activity(&mut self) -> Vec<(String, DateTime<Utc>)> {
        let mut users = std::mem::take(&mut self.changed_activity);
        users.sort();
        users.dedup();
        users
            .into_iter()
            .filter_map(|u| self.last_active.get(&u).map(|t| (u, *t)))
            .collect()
    }

    /// Machines an account logged in from before, and how many logins were seen (up to the
    /// learning count), kept across restarts by the caller.
    pub fn remember_machines(&mut self, user: &str, logins: u32, hosts: Vec<String>) {
        let state = self.users.entry(user.to_lowercase()).or_default();
        state.logins = state.logins.max(logins);
        for h in hosts {
            if !state.hosts.contains(&h) && state.hosts.len() < MAX_HOSTS {
                state.hosts.push(h);
            }
        }
    }

    /// Accounts whose machines or learning count moved since the last call, with them.
    pub fn take_changed_machines(&mut self) -> Vec<(String, u32, Vec<String>)> {
        let mut users = std::mem::take(&mut self.changed_machines);
        users.sort();
        users.dedup();
        let learning = self.config.new_workstation.learning_logins;
        users
            .into_iter()
            .filter_map(|u| {
                let state = self.users.get(&u)?;
                Some((u, state.logins.min(learning), state.hosts.clone()))
            })
            .collect()
    }

    pub fn with_appointments(mut self, appointments: Option<Appointments>) -> Engine {
        self.appointments = appointments;
        self
    }

    pub fn with_custom_rules(mut self, rules: Vec<CustomRule>) -> Engine {
        self.custom = rules.into_iter().map(|r| (r, HashMap::new())).collect();
        self
    }

    /// The alerts this event raises (often none): [`Engine::arrived`] then
    /// [`Engine::evaluate`], for a caller that takes events in arrival order.
    pub fn process(&mut self, event: &Event) -> Vec<Alert> {
        let mut alerts = self.arrived(event);
        alerts.extend(self.evaluate(event));
        alerts
    }

    /// The checks on arrival, in arrival order: senders' clocks and the appliance's own.
    pub fn arrived(&mut self, event: &Event) -> Vec<Alert> {
        if event.dataset == store::AUDIT_DATASET {
            return Vec::new();
        }
        self.clocks(event)
    }

    /// The detections on event time; a caller that reorders events calls this in event-time
    /// order, after [`Engine::arrived`] in arrival order.
    pub fn evaluate(&mut self, event: &Event) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if event.timestamp > event.ingested + Duration::days(1) {
            // A date from the future would poison every window; the clock alert says so.
            return alerts;
        }
        alerts.extend(self.custom_rules(event));
        // mimamori's own audit trail (who used the UI and the API) is searched and reported,
        // and custom rules may watch it; the built-in detections are tuned for the clinic's
        // systems and would take API tokens and admins' sign-ins for staff.
        if event.dataset == store::AUDIT_DATASET {
            return alerts;
        }
        if self.config.password_spray.enabled {
            alerts.extend(self.spray(event));
        }
        let Some(user) = event.user.as_deref().map(str::to_lowercase) else {
            return alerts;
        };
        if event.dataset == "mimamori.gap" {
            return alerts;
        }
        let site = self.clinic.site_of(event);
        // How alerts name the person: once per event.
        let name = self.who(&user, event);
        let who = Who {
            user: &user,
            name: &name,
            site: site.as_deref(),
        };
        self.run::<OffHours>(event, &who, &mut alerts);
        self.run::<OutsideRole>(event, &who, &mut alerts);
        self.run::<Concurrent>(event, &who, &mut alerts);
        self.run::<Bulk>(event, &who, &mut alerts);
        self.run::<Logins>(event, &who, &mut alerts);
        self.run::<Records>(event, &who, &mut alerts);
        if self.users.len() > MAX_USERS {
            self.prune(event.timestamp);
        }
        alerts
    }

    /// One detection on one event, when the config has it on.
    fn run<D: Detection>(&mut self, event: &Event, who: &Who<'_>, alerts: &mut Vec<Alert>) {
        if D::enabled(&self.config) {
            alerts.extend(D::check(self, event, who));
        }
    }

    pub(crate) fn alert(
        &self,
        rule: RuleId,
        severity: Severity,
        event: &Event,
        site: Option<&str>,
        explanation: String,
    ) -> Alert {
        Alert {
            rule: rule.to_string(),
            severity,
            user: event.user.clone(),
            site: site.map(str::to_owned),
            first_seen: event.timestamp,
            last_seen: event.timestamp,
            count: 1,
            explanation,
            evidence: vec![event.id.clone()],
            subject: None,
            private: event.patient.iter().cloned().collect(),
        }
    }

    pub(crate) fn who(&self, user: &str, event: &Event) -> String {
        match self.clinic.staff.get(user) {
            Some(s) if !s.name.is_empty() => {
                format!("{} ({})", event.user.as_deref().unwrap_or(user), s.name)
            }
            _ => event.user.clone().unwrap_or_default(),
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::hours(24);
        self.users.retain(|_, s| {
            s.sites.values().any(|p| p.last > horizon)
                || s.views.back().is_some_and(|(t, _)| *t > horizon)
        });
    }
}
