//! `off_hours_login`: an interactive, RDP, EHR or VPN login outside opening hours or on a closed
//! day; roster flags and roles can exempt people (on call, night shift).

use store::{Event, Outcome};

use crate::clinic::Closed;
use crate::engine::{Engine, note_miss};
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.off_hours_login]`
    OffHoursConfig, Medium {
        /// Roster flags that make a login at any hour expected.
        exempt_flags: Vec<String> = vec!["on_call".into(), "night_shift".into()],
        exempt_roles: Vec<String> = Vec::new(),
    }
}

/// Windows logon types that mean a person at a keyboard or a remote desktop.
const INTERACTIVE_LOGONS: &[&str] = &["2", "7", "10", "11", "12", "13"];

detection! {
    /// The check of `OffHours`.
    OffHours, on: off_hours_login, check: off_hours
}

impl Engine {
    pub(crate) fn is_person_login(event: &Event) -> bool {
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

    pub(crate) fn off_hours(
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
            RuleId::OffHoursLogin,
            cfg.severity,
            event,
            site,
            format!("{who} logged in{place} at {when}; {why}"),
        ))
    }
}
