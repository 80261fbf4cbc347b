//! The clinic model: its time zone, opening hours and closed days, its sites, what each role may
//! do, and who works there. Read from the config file (`[clinic]`, `[[sites]]`, `[roles.*]`,
//! `[roster]`) and checked into [`Clinic`], with errors that name the key and what is expected.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;
use store::Event;
use store::pattern::{Cidr, Glob};

use crate::holidays;
pub use crate::roster::{RosterConfig, StaffConfig};

/// A bad value: the key (from the top of the file) and what is expected.
pub type Invalid = (String, String);

pub(crate) fn invalid<T>(
    key: impl Into<String>,
    expected: impl Into<String>,
) -> Result<T, Invalid> {
    Err((key.into(), expected.into()))
}

/// `[clinic]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClinicConfig {
    pub name: String,
    pub timezone: String,
    /// Opening hours per weekday (`mon` .. `sun`): intervals `"08:30-12:30"`; none = closed.
    pub hours: BTreeMap<String, Vec<String>>,
    /// Minutes before opening and after closing that still count as open.
    pub grace_minutes: u32,
    /// Japan's national holidays are closed days (turn off for a clinic elsewhere).
    pub national_holidays: bool,
    /// Closed: `MM-DD` every year (`12-29`), or `YYYY-MM-DD` once.
    pub closed_dates: Vec<String>,
    /// Open although a holiday or closed day (a holiday clinic rota), `YYYY-MM-DD` or `MM-DD`.
    pub open_dates: Vec<String>,
}

impl Default for ClinicConfig {
    fn default() -> Self {
        let day = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let full = day(&["08:30-12:30", "14:00-18:30"]);
        let morning = day(&["08:30-12:30"]);
        ClinicConfig {
            name: "Demo Clinic".into(),
            timezone: "Asia/Tokyo".into(),
            hours: BTreeMap::from([
                ("mon".into(), full.clone()),
                ("tue".into(), full.clone()),
                ("wed".into(), full.clone()),
                ("thu".into(), morning.clone()),
                ("fri".into(), full),
                ("sat".into(), morning),
                ("sun".into(), Vec::new()),
            ]),
            grace_minutes: 30,
            national_holidays: true,
            closed_dates: day(&[
                "12-29", "12-30", "12-31", "01-02", "01-03", "08-14", "08-15",
            ]),
            open_dates: Vec::new(),
        }
    }
}

/// `[[sites]]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

pub fn default_sites() -> Vec<SiteConfig> {
    vec![
        SiteConfig {
            name: "main".into(),
            networks: vec!["10.10.1.0/24".into()],
            hosts: vec!["MAIN-*".into()],
        },
        SiteConfig {
            name: "annex".into(),
            networks: vec!["10.10.2.0/24".into()],
            hosts: vec!["ANNEX-*".into()],
        },
    ]
}

/// `[roles.NAME]`: `action[:category]` patterns, `*` allowed (`record.view:*`,
/// `record.*:appointments`). Deny wins over allow; what no pattern allows is outside the role.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

pub fn default_roles() -> BTreeMap<String, RoleConfig> {
    let role = |allow: &[&str], deny: &[&str]| RoleConfig {
        allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        deny: deny.iter().map(|s| (*s).to_owned()).collect(),
    };
    fn with(extra: &[&'static str]) -> Vec<&'static str> {
        ["login", "logout", "login_failed"]
            .iter()
            .chain(extra.iter())
            .copied()
            .collect()
    }
    BTreeMap::from([
        (
            "doctor".into(),
            role(&with(&["record.*"]), &["record.delete"]),
        ),
        (
            "nurse".into(),
            role(
                &with(&[
                    "record.view",
                    "record.update",
                    "record.print",
                    "record.emergency_access",
                ]),
                &["record.*:billing"],
            ),
        ),
        (
            "reception".into(),
            role(
                &with(&[
                    "record.view:demographics",
                    "record.view:appointments",
                    "record.update:demographics",
                    "record.update:appointments",
                    "record.print:appointments",
                    "record.*:billing",
                ]),
                &[
                    "record.export",
                    "record.*:clinical_notes",
                    "record.*:prescriptions",
                ],
            ),
        ),
        (
            "clerk".into(),
            role(
                &with(&["record.view:*", "record.*:billing"]),
                &["record.*:clinical_notes"],
            ),
        ),
        ("admin".into(), role(&with(&["*"]), &[])),
    ])
}

/// One person on the roster, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Staff {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub site: Option<String>,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub flags: Vec<String>,
    pub patient_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub networks: Vec<Cidr>,
    pub hosts: Vec<Glob>,
}

/// `action[:category]` with globs.
#[derive(Debug, Clone)]
pub struct Permission {
    action: Glob,
    category: Option<Glob>,
    pub text: String,
}

impl Permission {
    fn parse(text: &str) -> Permission {
        let (action, category) = match text.split_once(':') {
            Some((a, c)) => (a, Some(Glob::new(c))),
            None => (text, None),
        };
        Permission {
            action: Glob::new(action),
            category,
            text: text.to_owned(),
        }
    }

    pub fn matches(&self, action: &str, category: Option<&str>) -> bool {
        self.action.matches(action)
            && match (&self.category, category) {
                (None, _) => true,
                (Some(c), Some(cat)) => c.matches(cat),
                // A category-bound permission says nothing of actions with no category, except
                // that `x:*` covers them too.
                (Some(c), None) => c.as_str() == "*",
            }
    }
}

#[derive(Debug, Clone)]
pub struct Role {
    pub allow: Vec<Permission>,
    pub deny: Vec<Permission>,
}

/// Actions a role pattern can name: the normalized vocabulary.
pub use store::ACTIONS;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    open: NaiveTime,
    close: NaiveTime,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

#[derive(Debug, Clone, PartialEq)]
enum DateRule {
    Yearly(u32, u32),
    Once(NaiveDate),
}

impl DateRule {
    fn parse(key: &str, s: &str) -> Result<DateRule, Invalid> {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(DateRule::Once(d));
        }
        if let Some((m, d)) = s.split_once('-')
            && let (Ok(m), Ok(d)) = (m.parse::<u32>(), d.parse::<u32>())
            && NaiveDate::from_ymd_opt(2024, m, d).is_some()
        {
            return Ok(DateRule::Yearly(m, d));
        }
        invalid(
            key,
            format!("dates as \"MM-DD\" (every year) or \"YYYY-MM-DD\", not {s:?}"),
        )
    }

    fn matches(&self, d: NaiveDate) -> bool {
        match self {
            DateRule::Yearly(m, day) => d.month() == *m && d.day() == *day,
            DateRule::Once(x) => *x == d,
        }
    }
}

/// The checked clinic model.
#[derive(Debug, Clone)]
pub struct Clinic {
    pub name: String,
    pub zone: Tz,
    hours: [Vec<Interval>; 7],
    pub grace: chrono::Duration,
    national_holidays: bool,
    closed: Vec<DateRule>,
    open: Vec<DateRule>,
    pub sites: Vec<Site>,
    pub roles: BTreeMap<String, Role>,
    pub staff: BTreeMap<String, Staff>,
}

/// Why a moment is outside opening hours, in words.
#[derive(Debug, Clone, PartialEq)]
pub enum Closed {
    Holiday(&'static str),
    ClosedDate,
    ClosedDay,
    /// Outside hours; the day's hours as text (`08:30-12:30, 14:00-18:30`).
    OutsideHours(String),
}

impl Clinic {
    pub fn new(
        clinic: &ClinicConfig,
        sites: &[SiteConfig],
        roles: &BTreeMap<String, RoleConfig>,
        roster: &RosterConfig,
    ) -> Result<Clinic, Invalid> {
        let zone: Tz = clinic.timezone.parse().or_else(|_| {
            invalid(
                "clinic.timezone",
                format!(
                    "an IANA time zone such as \"Asia/Tokyo\", not {:?}",
                    clinic.timezone
                ),
            )
        })?;
        let mut hours: [Vec<Interval>; 7] = Default::default();
        for (day, spans) in &clinic.hours {
            let Some((_, weekday)) = DAYS.iter().find(|(d, _)| d == day) else {
                return invalid(
                    format!("clinic.hours.{day}"),
                    "a day: mon, tue, wed, thu, fri, sat, sun",
                );
            };
            let key = format!("clinic.hours.{day}");
            let mut list = Vec::new();
            for span in spans {
                let parsed = span.split_once('-').and_then(|(a, b)| {
                    Some(Interval {
                        open: NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?,
                        close: NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?,
                    })
                });
                let Some(iv) = parsed else {
                    return invalid(key, format!("intervals like \"08:30-12:30\", not {span:?}"));
                };
                if iv.close <= iv.open {
                    return invalid(
                        key,
                        format!("intervals that close after they open; {span:?} is inverted"),
                    );
                }
                list.push(iv);
            }
            list.sort_by_key(|i| i.open);
            if let Some(w) = list.windows(2).find(|w| w[1].open < w[0].close) {
                return invalid(
                    key,
                    format!(
                        "intervals that do not overlap; {}-{} overlaps {}-{}",
                        w[0].open.format("%H:%M"),
                        w[0].close.format("%H:%M"),
                        w[1].open.format("%H:%M"),
                        w[1].close.format("%H:%M")
                    ),
                );
            }
            hours[weekday.num_days_from_monday() as usize] = list;
        }
        let closed = clinic
            .closed_dates
            .iter()
            .map(|d| DateRule::parse("clinic.closed_dates", d))
            .collect::<Result<_, _>>()?;
        let open = clinic
            .open_dates
            .iter()
            .map(|d| DateRule::parse("clinic.open_dates", d))
            .collect::<Result<_, _>>()?;
        let mut checked_sites = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let networks = s
                .networks
                .iter()
                .map(|n| {
                    n.parse::<Cidr>()
                        .map_err(|e| (format!("sites[{i}].networks"), e.0))
                })
                .collect::<Result<_, _>>()?;
            checked_sites.push(Site {
                name: s.name.clone(),
                networks,
                hosts: s.hosts.iter().map(|h| Glob::new(h)).collect(),
            });
        }
        let mut checked_roles = BTreeMap::new();
        for (name, role) in roles {
            for (list, kind) in [(&role.allow, "allow"), (&role.deny, "deny")] {
                for p in list {
                    let perm = Permission::parse(p);
                    if !ACTIONS.iter().any(|a| perm.action.matches(a)) {
                        return invalid(
                            format!("roles.{name}.{kind}"),
                            format!(
                                "patterns that match an action ({}); {p:?} matches none",
                                ACTIONS.join(", ")
                            ),
                        );
                    }
                }
            }
            checked_roles.insert(
                name.clone(),
                Role {
                    allow: role.allow.iter().map(|p| Permission::parse(p)).collect(),
                    deny: role.deny.iter().map(|p| Permission::parse(p)).collect(),
                },
            );
        }
        let mut staff = BTreeMap::new();
        let mut rows: Vec<(String, StaffConfig)> = roster
            .staff
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("roster.staff[{i}]"), s.clone()))
            .collect();
        if let Some(file) = &roster.file {
            rows.extend(crate::roster::read(file)?);
        }
        for (key, s) in rows {
            let date = |v: &Option<String>, field: &str| -> Result<Option<NaiveDate>, Invalid> {
                match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                        .or_else(|_| NaiveDate::parse_from_str(v, "%Y/%m/%d"))
                        .map(Some)
                        .or_else(|_| {
                            invalid(
                                format!("{key}.{field}"),
                                format!("a date like 2026-04-01, not {v:?}"),
                            )
                        }),
                }
            };
            for r in &s.roles {
                if !checked_roles.contains_key(r) {
                    let known: Vec<&String> = checked_roles.keys().collect();
                    return invalid(
                        format!("{key}.roles"),
                        format!("roles defined under [roles] ({known:?}); {r:?} is not"),
                    );
                }
            }
            if let Some(site) = &s.site
                && !checked_sites.iter().any(|x| &x.name == site)
            {
                return invalid(
                    format!("{key}.site"),
                    format!("a site named under [[sites]]; {site:?} is not"),
                );
            }
            if staff.contains_key(&s.id.to_lowercase()) {
                return invalid(
                    format!("{key}.id"),
                    format!(
                        "an account given once on the roster; {:?} is given twice ([[roster.staff]] and the roster file together)",
                        s.id
                    ),
                );
            }
            staff.insert(
                s.id.to_lowercase(),
                Staff {
                    start: date(&s.start, "start")?,
                    end: date(&s.end, "end")?,
                    id: s.id,
                    name: s.name,
                    roles: s.roles,
                    site: s.site,
                    flags: s.flags,
                    patient_id: s.patient_id,
                },
            );
        }
        Ok(Clinic {
            name: clinic.name.clone(),
            zone,
            hours,
            grace: chrono::Duration::minutes(i64::from(clinic.grace_minutes)),
            national_holidays: clinic.national_holidays,
            closed,
            open,
            sites: checked_sites,
            roles: checked_roles,
            staff,
        })
    }

    /// `None` when the clinic is open at `t` (grace margins included), else why not.
    pub fn closed_at(&self, t: DateTime<Utc>) -> Option<Closed> {
        let local = t.with_timezone(&self.zone);
        if let Some(closed) = self.closed_date(local.date_naive()) {
            return Some(closed);
        }
        let spans = &self.hours[local.weekday().num_days_from_monday() as usize];
        if spans.is_empty() {
            return Some(Closed::ClosedDay);
        }
        let time = local.time();
        let open = spans.iter().any(|iv| {
            let from = iv.open - self.grace;
            let to = iv.close + self.grace;
            // Grace that runs past midnight wraps; keep it within the day.
            (from > iv.open || time >= from) && (to < iv.close || time <= to)
        });
        if open {
            None
        } else {
            Some(Closed::OutsideHours(self.hours_text(local.weekday())))
        }
    }

    /// The opening hours of a local date, as (open, close) local times: none on a closed day,
    /// a closed date or a national holiday (when those count).
    pub fn hours_on(&self, day: NaiveDate) -> Vec<(NaiveTime, NaiveTime)> {
        if !self.open.iter().any(|r| r.matches(day))
            && ((self.national_holidays && holidays::holiday_name(day).is_some())
                || self.closed.iter().any(|r| r.matches(day)))
        {
            return Vec::new();
        }
        self.hours[day.weekday().num_days_from_monday() as usize]
            .iter()
            .map(|iv| (iv.open, iv.close))
            .collect()
    }

    /// Why a local date is closed: a national holiday (its name) or a closed date; `None` on a
    /// normal day.
    pub fn closed_date(&self, day: NaiveDate) -> Option<Closed> {
        if self.open.iter().any(|r| r.matches(day)) {
            return None;
        }
        if self.national_holidays
            && let Some(name) = holidays::holiday_name(day)
        {
            return Some(Closed::Holiday(name));
        }
        self.closed
            .iter()
            .any(|r| r.matches(day))
            .then_some(Closed::ClosedDate)
    }

    /// On an open day, how many minutes `t` lies outside the opening hours proper (before the
    /// nearest opening or after the nearest closing); `None` within them or on a day with none.
    pub fn minutes_outside_hours(&self, t: DateTime<Utc>) -> Option<i64> {
        let local = t.with_timezone(&self.zone);
        let time = local.time();
        let spans = &self.hours[local.weekday().num_days_from_monday() as usize];
        spans
            .iter()
            .map(|iv| {
                if time < iv.open {
                    (iv.open - time).num_minutes()
                } else if time > iv.close {
                    (time - iv.close).num_minutes()
                } else {
                    0
                }
            })
            .min()
            .filter(|&m| m > 0)
    }

    pub fn hours_text(&self, day: Weekday) -> String {
        self.hours[day.num_days_from_monday() as usize]
            .iter()
            .map(|i| format!("{}-{}", i.open.format("%H:%M"), i.close.format("%H:%M")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The site an event happened at: its own `site`, else by address, else by host name.
    pub fn site_of(&self, event: &Event) -> Option<String> {
        if let Some(s) = &event.site {
            return Some(s.clone());
        }
        if let Some(ip) = event.source_ip.as_deref().and_then(|i| i.parse().ok())
            && let Some(s) = self
                .sites
                .iter()
                .find(|s| s.networks.iter().any(|n| n.contains(ip)))
        {
            return Some(s.name.clone());
        }
        let host = event.host.as_deref()?;
        self.sites
            .iter()
            .find(|s| s.hosts.iter().any(|g| g.matches(host)))
            .map(|s| s.name.clone())
    }

    pub fn local(&self, t: DateTime<Utc>) -> chrono::DateTime<Tz> {
        self.zone.from_utc_datetime(&t.naive_utc())
    }
}

/// Largest roster or schedule file read (it is held in memory).
const MAX_TABLE_BYTES: u64 = 256 << 20;

/// Opens a CSV file the config names at `key`, with a header row; rows may differ in length.
pub fn open_csv(key: &str, path: &std::path::Path) -> Result<csv::Reader<std::fs::File>, Invalid> {
    let unreadable = |e: &dyn std::fmt::Display| {
        (
            key.to_owned(),
            format!("a readable CSV file; {}: {e}", path.display()),
        )
    };
    let size = std::fs::metadata(path).map_err(|e| unreadable(&e))?.len();
    if size > MAX_TABLE_BYTES {
        return Err((
            key.to_owned(),
            format!(
                "a CSV file of at most {} MiB; {} has {} MiB",
                MAX_TABLE_BYTES >> 20,
                path.display(),
                size >> 20
            ),
        ));
    }
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| unreadable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clinic() -> Clinic {
        Clinic::new(
            &ClinicConfig::default(),
            &default_sites(),
            &default_roles(),
            &RosterConfig::default(),
        )
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn opening_hours_with_lunch_half_days_grace_and_holidays() {
        let c = clinic();
        assert_eq!(
            c.closed_at(at("2026-11-24T10:00:00+09:00")),
            None,
            "Tuesday morning"
        );
        assert!(
            matches!(
                c.closed_at(at("2026-11-24T13:15:00+09:00")),
                Some(Closed::OutsideHours(_))
            ),
            "lunch"
        );
        assert_eq!(
            c.closed_at(at("2026-11-24T18:55:00+09:00")),
            None,
            "in the 30 min grace"
        );
        assert!(c.closed_at(at("2026-11-24T19:05:00+09:00")).is_some());
        assert!(
            c.closed_at(at("2026-11-26T15:00:00+09:00")).is_some(),
            "Thursday afternoon closed"
        );
        assert_eq!(
            c.closed_at(at("2026-11-23T10:00:00+09:00")),
            Some(Closed::Holiday("勤労感謝の日"))
        );
        assert_eq!(
            c.closed_at(at("2026-12-30T10:00:00+09:00")),
            Some(Closed::ClosedDate)
        );
        assert_eq!(
            c.closed_at(at("2026-11-22T10:00:00+09:00")),
            Some(Closed::ClosedDay),
            "Sunday"
        );
    }

    #[test]
    fn bad_models_are_named() {
        let mut config = ClinicConfig::default();
        config
            .hours
            .insert("mon".into(), vec!["12:00-09:00".into()]);
        let e = Clinic::new(&config, &[], &BTreeMap::new(), &RosterConfig::default()).unwrap_err();
        assert_eq!(e.0, "clinic.hours.mon");
        assert!(e.1.contains("inverted"), "{}", e.1);
        config.hours.insert(
            "mon".into(),
            vec!["08:00-12:00".into(), "11:00-13:00".into()],
        );
        let e = Clinic::new(&config, &[], &BTreeMap::new(), &RosterConfig::default()).unwrap_err();
        assert!(e.1.contains("overlaps"), "{}", e.1);
        config.timezone = "Asia/Tokio".into();
        assert_eq!(
            Clinic::new(&config, &[], &BTreeMap::new(), &RosterConfig::default())
                .unwrap_err()
                .0,
            "clinic.timezone"
        );
        let mut roles = default_roles();
        roles.insert(
            "x".into(),
            RoleConfig {
                allow: vec!["recrd.view".into()],
                deny: vec![],
            },
        );
        let e = Clinic::new(
            &ClinicConfig::default(),
            &[],
            &roles,
            &RosterConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.0, "roles.x.allow");
        let roster = RosterConfig {
            file: None,
            staff: vec![StaffConfig {
                id: "n1".into(),
                name: String::new(),
                roles: vec!["janitor".into()],
                site: None,
                start: None,
                end: None,
                flags: vec![],
                patient_id: None,
            }],
        };
        let e = Clinic::new(&ClinicConfig::default(), &[], &default_roles(), &roster).unwrap_err();
        assert_eq!(e.0, "roster.staff[0].roles");
    }

    #[test]
    fn an_account_given_twice_is_refused() {
        let person = |id: &str| StaffConfig {
            id: id.into(),
            ..StaffConfig::default()
        };
        let roster = RosterConfig {
            file: None,
            staff: vec![person("x001"), person("X001")],
        };
        let e = Clinic::new(&ClinicConfig::default(), &[], &default_roles(), &roster).unwrap_err();
        assert_eq!(e.0, "roster.staff[1].id");
    }

    #[test]
    fn sites_by_address_then_host() {
        let c = clinic();
        let mut e = Event::new("k", "x", String::new(), Utc::now());
        e.host = Some("ANNEX-PC02".into());
        assert_eq!(c.site_of(&e).as_deref(), Some("annex"));
        e.source_ip = Some("10.10.1.7".into());
        assert_eq!(c.site_of(&e).as_deref(), Some("main"));
    }

    #[test]
    fn a_roster_file_that_is_missing_or_huge_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.csv");
        let (key, why) = open_csv("roster.file", &missing).unwrap_err();
        assert_eq!(key, "roster.file");
        assert!(
            why.contains("a readable CSV file") && why.contains("nope.csv"),
            "{why}"
        );
        let huge = dir.path().join("huge.csv");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_TABLE_BYTES + 1)
            .unwrap(); // sparse: no disk used
        let (_, why) = open_csv("roster.file", &huge).unwrap_err();
        assert!(
            why.contains("at most 256 MiB") && why.contains("huge.csv"),
            "{why}"
        );
    }
}
