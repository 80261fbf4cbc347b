//! The detections, evaluated on each event as it is accepted, on event time. State is per user
//! and bounded: sessions per site, and the patients viewed within the window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use store::{Event, Outcome};

use crate::clinic::{Clinic, Closed, Invalid};
use crate::filter::{FIELDS, Filter};
use crate::spray::{SprayConfig, Sprays};
use crate::zones::ZoneGuesses;
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
    /// Activity of an account idle for at least this many days (0: off).
    pub dormant_days: u32,
}

impl Default for RoleCheckConfig {
    fn default() -> Self {
        RoleCheckConfig {
            enabled: true,
            severity: Severity::High,
            unknown_accounts: true,
            ended_staff: true,
            dormant_days: 90,
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
    /// A day's record accesses above this many times the person's own daily average over
    /// the previous `baseline_days` (0: off) ...
    pub baseline_factor: f64,
    pub baseline_days: u32,
    /// ... and above this many, so quiet people do not fire.
    pub baseline_floor: u64,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            enabled: true,
            severity: Severity::High,
            max_records: 100,
            distinct_patients: 50,
            window_minutes: 60,
            baseline_factor: 4.0,
            baseline_days: 14,
            baseline_floor: 200,
        }
    }
}

/// `[detections.login_failures]`: a successful login after repeated failures.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailuresConfig {
    pub enabled: bool,
    pub severity: Severity,
    pub failures: usize,
    pub window_minutes: u32,
}

impl Default for FailuresConfig {
    fn default() -> Self {
        FailuresConfig {
            enabled: true,
            severity: Severity::Medium,
            failures: 5,
            window_minutes: 10,
        }
    }
}

/// `[detections.new_workstation]`: a login from a machine that person has never used, once
/// they have an established pattern.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewWorkstationConfig {
    pub enabled: bool,
    pub severity: Severity,
    /// Logins seen before a new machine is worth saying something about.
    pub learning_logins: u32,
}

impl Default for NewWorkstationConfig {
    fn default() -> Self {
        NewWorkstationConfig {
            enabled: true,
            severity: Severity::Low,
            learning_logins: 20,
        }
    }
}

/// `[detections.sensitive_records]`: any access to a record flagged VIP, or to a staff
/// member's own record (the roster's `patient_id`) by someone else.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    pub enabled: bool,
    pub severity: Severity,
    pub vip_patients: Vec<String>,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            enabled: true,
            severity: Severity::High,
            vip_patients: Vec::new(),
        }
    }
}

/// `[detections.treatment_relationship]`: a chart opened for a patient with no appointment or
/// visit at that site within `days` (needs the clinic's schedule: a CSV of
/// `patient_id,date,site,doctor`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TreatmentConfig {
    pub enabled: bool,
    pub severity: Severity,
    pub appointments_file: Option<std::path::PathBuf>,
    pub days: u32,
}

impl Default for TreatmentConfig {
    fn default() -> Self {
        TreatmentConfig {
            enabled: true,
            severity: Severity::Medium,
            appointments_file: None,
            days: 30,
        }
    }
}

/// `[detections]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionsConfig {
    /// How long a live event is held so that events arriving out of order are evaluated in
    /// event-time order (see [`crate::reorder`]); alerts come this much later. Read at start.
    pub lateness_seconds: u32,
    pub off_hours_login: OffHoursConfig,
    pub access_outside_role: RoleCheckConfig,
    pub concurrent_sessions: ConcurrentConfig,
    pub bulk_export: BulkConfig,
    pub login_failures: FailuresConfig,
    pub password_spray: SprayConfig,
    pub new_workstation: NewWorkstationConfig,
    pub sensitive_records: SensitiveConfig,
    pub treatment_relationship: TreatmentConfig,
}

/// The clinic's schedule: patient -> (date, site) of appointments and visits.
#[derive(Debug, Clone, Default)]
pub struct Appointments {
    by_patient: HashMap<String, Vec<(chrono::NaiveDate, String)>>,
}

impl Appointments {
    /// Reads `patient_id,date,site[,doctor]` with a header row; dates 2026-11-24 or 2026/11/24.
    pub fn load(path: &std::path::Path) -> Result<Appointments, Invalid> {
        let key = "detections.treatment_relationship.appointments_file".to_owned();
        let mut reader = crate::clinic::open_csv(&key, path)?;
        let mut by_patient: HashMap<String, Vec<(chrono::NaiveDate, String)>> = HashMap::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + 2;
            let row =
                row.map_err(|e| (key.clone(), format!("{} line {line}: {e}", path.display())))?;
            let (Some(patient), Some(date)) = (row.get(0), row.get(1)) else {
                return Err((
                    key,
                    format!(
                        "{} line {line}: patient_id,date,site columns",
                        path.display()
                    ),
                ));
            };
            let date = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
                .or_else(|_| chrono::NaiveDate::parse_from_str(date.trim(), "%Y/%m/%d"))
                .map_err(|_| {
                    (
                        key.clone(),
                        format!(
                            "{} line {line}: a date like 2026-11-24, not {date:?}",
                            path.display()
                        ),
                    )
                })?;
            let site = row.get(2).unwrap_or("").trim().to_owned();
            by_patient
                .entry(patient.trim().to_lowercase())
                .or_default()
                .push((date, site));
        }
        Ok(Appointments { by_patient })
    }

    /// Is there an appointment or visit for the patient at the site (any site when the event
    /// has none) within `days` of `day`?
    fn related(
        &self,
        patient: &str,
        site: Option<&str>,
        day: chrono::NaiveDate,
        days: i64,
    ) -> bool {
        self.by_patient
            .get(&patient.to_lowercase())
            .is_some_and(|list| {
                list.iter().any(|(d, s)| {
                    (*d - day).num_days().abs() <= days
                        && (site.is_none() || s.is_empty() || Some(s.as_str()) == site)
                })
            })
    }
}

impl Default for DetectionsConfig {
    fn default() -> Self {
        DetectionsConfig {
            lateness_seconds: 10,
            off_hours_login: OffHoursConfig::default(),
            access_outside_role: RoleCheckConfig::default(),
            concurrent_sessions: ConcurrentConfig::default(),
            bulk_export: BulkConfig::default(),
            login_failures: FailuresConfig::default(),
            password_spray: SprayConfig::default(),
            new_workstation: NewWorkstationConfig::default(),
            sensitive_records: SensitiveConfig::default(),
            treatment_relationship: TreatmentConfig::default(),
        }
    }
}

/// Longest `detections.lateness_seconds`: alerts come this much later, and events are held in
/// memory meanwhile.
pub const MAX_LATENESS_SECONDS: u32 = 3600;

impl DetectionsConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.lateness_seconds > MAX_LATENESS_SECONDS {
            return Err((
                "detections.lateness_seconds".into(),
                format!("at most {MAX_LATENESS_SECONDS} (alerts are held this long)"),
            ));
        }
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
        if self.password_spray.accounts < 2 || self.password_spray.window_minutes == 0 {
            return Err((
                "detections.password_spray.accounts".into(),
                "at least 2, with window_minutes at least 1".into(),
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

/// `[[custom_rules]]`: rules admins write without code — a filter in the search query
/// language, counted (or distinct values counted) over a sliding window per group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleConfig {
    pub name: String,
    pub filter: String,
    /// Fields whose values make a group (`user.name`, `host.name`, ...); none: one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Count distinct values of this field instead of events (`patient.id`).
    #[serde(default)]
    pub distinct: Option<String>,
    pub threshold: usize,
    pub window_minutes: u32,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// What the alert says; `{count}`, `{group}` and `{window}` are filled in.
    #[serde(default)]
    pub explanation: Option<String>,
}

fn medium() -> Severity {
    Severity::Medium
}

/// A custom rule, checked.
#[derive(Debug, Clone)]
pub struct CustomRule {
    pub config: CustomRuleConfig,
    filter: Filter,
}

impl CustomRule {
    pub fn new(i: usize, config: &CustomRuleConfig) -> Result<CustomRule, Invalid> {
        let key = |k: &str| format!("custom_rules[{i}].{k}");
        let filter = Filter::parse(&config.filter).map_err(|e| {
            (
                key("filter"),
                format!("a query in the search language: {e}"),
            )
        })?;
        for f in config.group_by.iter().chain(config.distinct.iter()) {
            if !FIELDS.contains(&f.as_str()) && !f.starts_with("labels.") {
                return Err((
                    key("group_by"),
                    format!("fields among {}; {f:?} is not one", FIELDS.join(", ")),
                ));
            }
        }
        if config.threshold == 0 {
            return Err((key("threshold"), "at least 1".into()));
        }
        if config.window_minutes == 0 {
            return Err((key("window_minutes"), "at least 1".into()));
        }
        Ok(CustomRule {
            config: config.clone(),
            filter,
        })
    }
}

#[derive(Default)]
struct Window {
    /// (time, distinct value or "", event id)
    seen: VecDeque<(DateTime<Utc>, String, store::EventId)>,
    alerted_until: Option<DateTime<Utc>>,
}

/// Groups followed per custom rule, at most.
const MAX_GROUPS: usize = 50_000;

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
    /// Failed logins within the window, oldest first.
    failures: VecDeque<DateTime<Utc>>,
    /// Machines logged in from, and how many logins were seen.
    hosts: Vec<String>,
    logins: u32,
    /// (time, patient) viewed, oldest first, within the window.
    views: VecDeque<(DateTime<Utc>, String)>,
    bulk_alerted_until: Option<DateTime<Utc>>,
    /// Record accesses per local day, oldest first (the baseline), and the day already alerted.
    daily: VecDeque<(chrono::NaiveDate, u64)>,
    baseline_alerted: Option<chrono::NaiveDate>,
}

/// Most machines remembered per account.
const MAX_HOSTS: usize = 256;

/// Most users followed at once; the least recently seen are dropped beyond it.
const MAX_USERS: usize = 100_000;

/// The detections with their state.
pub struct Engine {
    pub clinic: Clinic,
    pub config: DetectionsConfig,
    pub appointments: Option<Appointments>,
    users: HashMap<String, UserState>,
    sprays: Sprays,
    zones: ZoneGuesses,
    custom: Vec<(CustomRule, HashMap<String, Window>)>,
    /// When each account was last active (event time), for dormant accounts; saved by the
    /// caller across restarts (`last_active` / `remember_active`).
    last_active: HashMap<String, DateTime<Utc>>,
    /// Accounts whose last activity changed since `take_changed_activity`.
    changed_activity: Vec<String>,
    /// Accounts whose machines (or learning count) changed since `take_changed_machines`.
    changed_machines: Vec<String>,
    /// The latest arrival time seen, to notice the appliance's clock going back.
    last_ingested: Option<DateTime<Utc>>,
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
fn note_miss(
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
fn note_near_miss(
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

fn human(d: Duration) -> String {
    if d >= Duration::days(2) {
        format!("{} days", d.num_days())
    } else if d >= Duration::hours(2) {
        format!("{} hours", d.num_hours())
    } else {
        format!("{} minutes", d.num_minutes())
    }
}

/// Windows logon types that mean a person at a keyboard or a remote desktop.
const INTERACTIVE_LOGONS: &[&str] = &["2", "7", "10", "11", "12", "13"];

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

    /// An account idle for `dormant_days` that acts again.
    fn dormant(&mut self, event: &Event, user: &str, site: Option<&str>) -> Option<Alert> {
        if event.outcome == Outcome::Failure {
            return None;
        }
        let t = event.timestamp;
        let previous = self.last_active.get(user).copied();
        if previous.is_none_or(|p| t > p)
            && (previous.is_some() || self.last_active.len() < MAX_USERS)
        {
            self.last_active.insert(user.to_owned(), t);
            self.changed_activity.push(user.to_owned());
        }
        let cfg = &self.config.access_outside_role;
        let previous = previous?;
        let idle = t - previous;
        if !cfg.enabled
            || cfg.dormant_days == 0
            || idle < Duration::days(i64::from(cfg.dormant_days))
        {
            return None;
        }
        Some(self.alert(
            "access_outside_role",
            cfg.severity,
            event,
            site,
            format!(
                "{} was last active on {} and is active again after {} days (dormant accounts are flagged after {})",
                self.who(user, event),
                self.clinic.local(previous).format("%Y-%m-%d"),
                idle.num_days(),
                cfg.dormant_days
            ),
        ))
    }

    pub fn with_appointments(mut self, appointments: Option<Appointments>) -> Engine {
        self.appointments = appointments;
        self
    }

    pub fn with_custom_rules(mut self, rules: Vec<CustomRule>) -> Engine {
        self.custom = rules.into_iter().map(|r| (r, HashMap::new())).collect();
        self
    }

    fn custom_rules(&mut self, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        for (rule, groups) in &mut self.custom {
            if !rule.filter.matches(event) {
                continue;
            }
            let c = &rule.config;
            let field = |f: &str| crate::filter::field_text(event, f).unwrap_or_else(|| "-".into());
            let group = c
                .group_by
                .iter()
                .map(|f| format!("{f}={}", field(f)))
                .collect::<Vec<_>>()
                .join(" ");
            if !groups.contains_key(&group) && groups.len() >= MAX_GROUPS {
                continue;
            }
            let w = groups.entry(group.clone()).or_default();
            let t = event.timestamp;
            let window = Duration::minutes(i64::from(c.window_minutes));
            let value = c.distinct.as_deref().map(field).unwrap_or_default();
            w.seen.push_back((t, value, event.id.clone()));
            while w.seen.front().is_some_and(|(x, _, _)| *x < t - window) {
                w.seen.pop_front();
            }
            while w.seen.len() > c.threshold * 20 {
                w.seen.pop_front();
            }
            if w.alerted_until.is_some_and(|u| t < u) {
                continue;
            }
            let count = if c.distinct.is_some() {
                w.seen
                    .iter()
                    .map(|(_, v, _)| v)
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            } else {
                w.seen.len()
            };
            if count < c.threshold {
                note_near_miss(
                    &mut self.near_misses,
                    &c.name,
                    count as u64,
                    c.threshold as u64,
                    || {
                        if group.is_empty() {
                            "all events".to_owned()
                        } else {
                            group.clone()
                        }
                    },
                );
                continue;
            }
            w.alerted_until = Some(t + window);
            let what = match &c.distinct {
                Some(f) => format!("{count} different {f}"),
                None => format!("{count} events"),
            };
            let explanation = match &c.explanation {
                Some(text) => text
                    .replace("{count}", &count.to_string())
                    .replace("{group}", &group)
                    .replace("{window}", &c.window_minutes.to_string()),
                None => format!(
                    "{what} matching `{}` within {} minutes{} (the threshold is {})",
                    c.filter,
                    c.window_minutes,
                    if group.is_empty() {
                        String::new()
                    } else {
                        format!(" for {group}")
                    },
                    c.threshold
                ),
            };
            let first = w.seen.front().map_or(t, |(x, _, _)| *x);
            out.push(Alert {
                rule: c.name.clone(),
                severity: c.severity,
                user: event.user.clone(),
                site: event.site.clone(),
                first_seen: first,
                last_seen: t,
                count: 1,
                explanation,
                evidence: w
                    .seen
                    .iter()
                    .rev()
                    .take(20)
                    .map(|(_, _, id)| id.clone())
                    .collect(),
                // Each group its own alert.
                subject: (!group.is_empty()).then(|| group.clone()),
            });
        }
        out
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
        let who = self.who(&user, event);
        if self.config.off_hours_login.enabled {
            alerts.extend(self.off_hours(event, &user, &who, site.as_deref()));
        }
        let role_alert = if self.config.access_outside_role.enabled {
            self.outside_role(event, &user, &who, site.as_deref())
        } else {
            None
        };
        let dormant = self.dormant(event, &user, site.as_deref());
        // One access_outside_role alert per event: the role reason first.
        alerts.extend(role_alert.or(dormant));
        if self.config.concurrent_sessions.enabled {
            alerts.extend(self.concurrent(event, &user, &who, site.as_deref()));
        }
        if self.config.bulk_export.enabled {
            alerts.extend(self.bulk(event, &user, &who, site.as_deref()));
        }
        alerts.extend(self.logins(event, &user, &who, site.as_deref()));
        alerts.extend(self.records(event, &user, &who, site.as_deref()));
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
            subject: None,
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

    /// Clocks that are wrong: a live sender whose times are far from when its events arrive,
    /// and the appliance's own clock going back.
    fn clocks(&mut self, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        let live = event.log_source.as_deref().is_some_and(|s| {
            s.starts_with("udp://") || s.starts_with("tcp://") || s.starts_with("tls://")
        });
        let skew = event.timestamp - event.ingested;
        let sender = event
            .host
            .as_deref()
            .or(event.log_source.as_deref())
            .unwrap_or("-");
        let wrong_zone = live
            .then(|| {
                self.zones
                    .observe(sender, event.timestamp, event.ingested, self.clinic.zone)
            })
            .flatten();
        if let Some(w) = wrong_zone {
            let how = if w.hours < 0 { "behind" } else { "ahead of" };
            let mut a = self.alert("clock_check", Severity::Low, event, self.clinic.site_of(event).as_deref(), format!(
                "{sender} の時刻は受信時刻よりちょうど {} 時間{}; タイムゾーンの指定がない時刻を {} で書いている可能性があります。[[syslog.sources]] の timezone を設定してください。 / {sender} sends times exactly {} hours {how} when they arrive: it probably writes times without a zone in {}; set its timezone under [[syslog.sources]]",
                w.hours.abs(),
                if w.hours < 0 { "遅れています" } else { "進んでいます" },
                w.zone,
                w.hours.abs(),
                w.zone,
            ));
            a.user = None;
            a.subject = Some(sender.to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        } else if live && (skew > Duration::minutes(10) || skew < -Duration::days(1)) {
            let host = event.host.as_deref().unwrap_or("an unnamed sender");
            let how = if skew > Duration::zero() {
                format!("{} ahead", human(skew))
            } else {
                format!("{} behind", human(-skew))
            };
            let mut a = self.alert("clock_check", Severity::Low, event, self.clinic.site_of(event).as_deref(), format!(
                "{host} sends times {how} of when its events arrive (event dated {}, received {}); its clock needs setting, and its events' times cannot be trusted",
                self.clinic.local(event.timestamp).format("%Y-%m-%d %H:%M"),
                self.clinic.local(event.ingested).format("%Y-%m-%d %H:%M"),
            ));
            a.user = None;
            a.subject = Some(host.to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        }
        if let Some(last) = self.last_ingested
            && event.ingested < last - Duration::minutes(5)
        {
            let mut a = self.alert("clock_check", Severity::Medium, event, None, format!(
                "this appliance's clock went back {} (from {} to {}); check its time source (NTP)",
                human(last - event.ingested),
                self.clinic.local(last).format("%Y-%m-%d %H:%M"),
                self.clinic.local(event.ingested).format("%Y-%m-%d %H:%M"),
            ));
            a.user = None;
            a.subject = Some("this appliance".to_owned());
            a.first_seen = event.ingested;
            a.last_seen = event.ingested;
            out.push(a);
        }
        self.last_ingested = Some(
            self.last_ingested
                .map_or(event.ingested, |l| l.max(event.ingested)),
        );
        out
    }

    /// Failed logins for many accounts from one address: the alert names the address, not a
    /// person.
    fn spray(&mut self, event: &Event) -> Option<Alert> {
        let config = self.config.password_spray.clone();
        let spray = self.sprays.observe(&config, event)?;
        let shown: Vec<&str> = spray.accounts.iter().take(10).map(String::as_str).collect();
        let more = spray.accounts.len().saturating_sub(shown.len());
        let mut a = self.alert(
            "password_spray",
            config.severity,
            event,
            self.clinic.site_of(event).as_deref(),
            format!(
                "{} failed to log in as {} different accounts between {} and {} ({}{}): someone may be trying passwords across accounts",
                spray.address,
                spray.accounts.len(),
                self.clinic.local(spray.first).format("%H:%M"),
                self.clinic.local(event.timestamp).format("%H:%M on %Y-%m-%d"),
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() },
            ),
        );
        a.user = None;
        a.subject = Some(spray.address.clone());
        a.first_seen = spray.first;
        a.evidence = spray.evidence;
        Some(a)
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

    fn off_hours(
        &mut self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Option<Alert> {
        if !Self::is_person_login(event) {
            return None;
        }
        let local = self.clinic.local(event.timestamp);
        let when = || {
            format!(
                "{} on {}",
                local.format("%H:%M"),
                local.format("%A %Y-%m-%d")
            )
        };
        let Some(closed) = self.clinic.closed_at(event.timestamp) else {
            if let Some(outside) = self.clinic.minutes_outside_hours(event.timestamp) {
                let grace = self.clinic.grace.num_minutes();
                note_miss(
                    &mut self.near_misses,
                    "off_hours_login (grace margin)",
                    outside as f64 / (grace + 1) as f64,
                    || {
                        format!(
                            "{who} logged in at {}, {outside} minute(s) outside opening hours, within the {grace}-minute grace margin",
                            when()
                        )
                    },
                );
            }
            return None;
        };
        let when = when();
        let cfg = &self.config.off_hours_login;
        if let Some(staff) = self.clinic.staff.get(user) {
            let exempt: Vec<&String> = staff
                .flags
                .iter()
                .filter(|f| cfg.exempt_flags.contains(f))
                .chain(staff.roles.iter().filter(|r| cfg.exempt_roles.contains(r)))
                .collect();
            if let Some(why) = exempt.first() {
                let what = format!(
                    "{who} logged in at {when}, outside opening hours, but is exempt as {why}"
                );
                note_miss(
                    &mut self.near_misses,
                    "off_hours_login (exempt)",
                    1.0,
                    || what,
                );
                return None;
            }
        }
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
            format!("{who} logged in{place} at {when}; {why}"),
        ))
    }

    fn outside_role(
        &self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Option<Alert> {
        let cfg = &self.config.access_outside_role;
        let staff = self.clinic.staff.get(user);
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

    fn concurrent(
        &mut self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Option<Alert> {
        let site = site?;
        let cfg = self.config.concurrent_sessions.clone();
        let idle = Duration::minutes(i64::from(cfg.session_idle_minutes));
        let travel = Duration::minutes(i64::from(cfg.travel_minutes));
        let t = event.timestamp;
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

    fn bulk(&mut self, event: &Event, user: &str, who: &str, site: Option<&str>) -> Option<Alert> {
        let cfg = self.config.bulk_export.clone();
        if matches!(event.action.as_str(), "record.export" | "record.print")
            && event.outcome != Outcome::Failure
            && let Some(n) = event.record_count
        {
            if n < cfg.max_records {
                note_near_miss(
                    &mut self.near_misses,
                    "bulk_export (records at once)",
                    n,
                    cfg.max_records,
                    || who.to_owned(),
                );
                return None;
            }
            // One bulk alert a day is enough: the day's volume is explained by this export.
            let day = self.clinic.local(event.timestamp).date_naive();
            self.users
                .entry(user.to_owned())
                .or_default()
                .baseline_alerted = Some(day);
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
        if let Some(alert) = self.baseline(event, user, site, &cfg, who) {
            return Some(alert);
        }
        if event.action != "record.view" {
            return None;
        }
        let patient = event.patient.clone()?;
        let window = Duration::minutes(i64::from(cfg.window_minutes));
        let t = event.timestamp;
        let state = self.users.entry(user.to_owned()).or_default();
        // An event from well before the window (an older file read after a newer one) starts
        // the window again rather than counting against days it has nothing to do with.
        if state
            .views
            .back()
            .is_some_and(|(last, _)| t < *last - window)
        {
            state.views.clear();
            state.bulk_alerted_until = None;
        }
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
            let n = distinct.len() as u64;
            note_near_miss(
                &mut self.near_misses,
                "bulk_export (patients in window)",
                n,
                cfg.distinct_patients as u64,
                || who.to_owned(),
            );
            return None;
        }
        let n = distinct.len();
        state.bulk_alerted_until = Some(t + window);
        state.baseline_alerted = Some(self.clinic.local(t).date_naive());
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

    /// Repeated failures then a success; a machine the person has never used.
    fn logins(&mut self, event: &Event, user: &str, who: &str, site: Option<&str>) -> Vec<Alert> {
        let mut out = Vec::new();
        let failures_cfg = self.config.login_failures.clone();
        let new_cfg = self.config.new_workstation.clone();
        let t = event.timestamp;
        let state = self.users.entry(user.to_owned()).or_default();
        let window = Duration::minutes(i64::from(failures_cfg.window_minutes));
        while state.failures.front().is_some_and(|f| *f < t - window) {
            state.failures.pop_front();
        }
        if event.action == "login_failed"
            || (event.action == "login" && event.outcome == Outcome::Failure)
        {
            state.failures.push_back(t);
            if state.failures.len() > failures_cfg.failures * 10 {
                state.failures.pop_front();
            }
            return out;
        }
        if !Self::is_person_login(event) {
            return out;
        }
        let failed = state.failures.len();
        let first_failure = state.failures.front().copied();
        state.failures.clear();
        let host = event.host.as_deref().map(str::to_lowercase);
        let known = host.as_ref().is_none_or(|h| state.hosts.contains(h));
        let experienced = state.logins >= new_cfg.learning_logins;
        state.logins = state.logins.saturating_add(1);
        let mut changed = !experienced;
        if let Some(h) = &host
            && !known
            && state.hosts.len() < MAX_HOSTS
        {
            state.hosts.push(h.clone());
            changed = true;
        }
        if changed {
            self.changed_machines.push(user.to_owned());
        }
        if failures_cfg.enabled && failed >= failures_cfg.failures {
            let since = first_failure
                .map(|f| self.clinic.local(f).format("%H:%M").to_string())
                .unwrap_or_default();
            out.push(self.alert(
                "login_failures",
                failures_cfg.severity,
                event,
                site,
                format!(
                    "{who} logged in at {} after {failed} failed attempts since {since}",
                    self.clinic.local(t).format("%H:%M on %Y-%m-%d")
                ),
            ));
        }
        if new_cfg.enabled && !known && experienced {
            out.push(self.alert(
                "new_workstation",
                new_cfg.severity,
                event,
                site,
                format!(
                    "{who} logged in on {}, a machine they have not used before (after {} logins elsewhere)",
                    event.host.as_deref().unwrap_or("-"),
                    new_cfg.learning_logins
                ),
            ));
        }
        out
    }

    /// A VIP's or a staff member's own record; a chart with no treatment relationship.
    fn records(&self, event: &Event, user: &str, who: &str, site: Option<&str>) -> Vec<Alert> {
        let mut out = Vec::new();
        if !event.action.starts_with("record.") || event.outcome == Outcome::Failure {
            return out;
        }
        let Some(patient) = event.patient.as_deref() else {
            return out;
        };
        let sensitive = &self.config.sensitive_records;
        if sensitive.enabled {
            if sensitive
                .vip_patients
                .iter()
                .any(|v| v.eq_ignore_ascii_case(patient))
            {
                out.push(self.alert(
                    "sensitive_records",
                    sensitive.severity,
                    event,
                    site,
                    format!(
                        "{who} did {} on the record of patient {patient}, who is flagged VIP",
                        event.action
                    ),
                ));
            } else if let Some(staff) = self.clinic.staff.values().find(|s| {
                s.patient_id
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(patient))
            }) && staff.id.to_lowercase() != user
            {
                let name = if staff.name.is_empty() {
                    &staff.id
                } else {
                    &staff.name
                };
                out.push(self.alert(
                    "sensitive_records",
                    sensitive.severity,
                    event,
                    site,
                    format!("{who} did {} on the record of patient {patient}, who is staff member {name}", event.action),
                ));
            }
        }
        let treatment = &self.config.treatment_relationship;
        if treatment.enabled
            && event.action == "record.view"
            && let Some(appointments) = &self.appointments
        {
            let day = self.clinic.local(event.timestamp).date_naive();
            if !appointments.related(patient, site, day, i64::from(treatment.days)) {
                let place = site.map(|s| format!(" at {s}")).unwrap_or_default();
                out.push(self.alert(
                    "treatment_relationship",
                    treatment.severity,
                    event,
                    site,
                    format!(
                        "{who} opened the chart of patient {patient}, who has no appointment or visit{place} within {} days",
                        treatment.days
                    ),
                ));
            }
        }
        out
    }

    /// A day's volume far above the person's own recent days.
    fn baseline(
        &mut self,
        event: &Event,
        user: &str,
        site: Option<&str>,
        cfg: &BulkConfig,
        who: &str,
    ) -> Option<Alert> {
        if cfg.baseline_days == 0
            || !event.action.starts_with("record.")
            || event.outcome == Outcome::Failure
        {
            return None;
        }
        let day = self.clinic.local(event.timestamp).date_naive();
        let state = self.users.entry(user.to_owned()).or_default();
        let n = event.record_count.unwrap_or(1).max(1);
        match state.daily.back_mut() {
            Some((d, count)) if *d == day => *count += n,
            Some((d, _)) if *d > day => return None, // an older day read late: not counted
            _ => state.daily.push_back((day, n)),
        }
        let horizon = day - Duration::days(i64::from(cfg.baseline_days));
        while state.daily.front().is_some_and(|(d, _)| *d < horizon) {
            state.daily.pop_front();
        }
        let today = state.daily.back().map_or(0, |(_, c)| *c);
        let previous: Vec<u64> = state.daily.iter().rev().skip(1).map(|(_, c)| *c).collect();
        // A baseline needs a few days behind it.
        if previous.len() < 5 || state.baseline_alerted == Some(day) || today < cfg.baseline_floor {
            return None;
        }
        let average = previous.iter().sum::<u64>() as f64 / previous.len() as f64;
        if (today as f64) < average * cfg.baseline_factor {
            return None;
        }
        state.baseline_alerted = Some(day);
        Some(self.alert(
            "bulk_export",
            cfg.severity,
            event,
            site,
            format!(
                "{who} has accessed {today} records today, {:.0} times their daily average of {average:.0} over the previous {} working days",
                today as f64 / average.max(1.0),
                previous.len()
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
