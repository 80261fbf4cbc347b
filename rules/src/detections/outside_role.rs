//! `access_outside_role`: an action or record kind the person's roles do not allow; any activity
//! of an account not on the roster, after its end date, or after `dormant_days` idle.

use chrono::Duration;
use store::{Event, Outcome};

use crate::engine::{Engine, MAX_USERS};
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.access_outside_role]`
    RoleCheckConfig, High {
        /// Activity of accounts not on the roster (only when a roster is configured).
        unknown_accounts: bool = true,
        /// Activity after a staff member's employment end date.
        ended_staff: bool = true,
        /// Activity of an account idle for at least this many days (0: off).
        dormant_days: u32 = 90,
    }
}

detection! {
    /// The check of `OutsideRole`.
    OutsideRole,
    enabled: |config| {
        // Always: last activity is followed even while the check is off.
        let _ = config;
        true
    },
    check: |engine, event, who| {
        // One alert per event: the role reason first.
        let role = if engine.config.access_outside_role.enabled {
            engine.outside_role(event, who.user, who.name, who.site)
        } else {
            None
        };
        let dormant = engine.dormant(event, who.user, who.site);
        role.or(dormant).into_iter().collect()
    },
}

impl Engine {
    pub(crate) fn outside_role(
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
                RuleId::AccessOutsideRole,
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
                RuleId::AccessOutsideRole,
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
            RuleId::AccessOutsideRole,
            cfg.severity,
            event,
            site,
            format!(
                "{who} ({}) did {what}, which that role does not allow",
                roles_text.join(", ")
            ),
        ))
    }

    /// An account idle for `dormant_days` that acts again.
    pub(crate) fn dormant(
        &mut self,
        event: &Event,
        user: &str,
        site: Option<&str>,
    ) -> Option<Alert> {
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
        Some(self.alert(RuleId::AccessOutsideRole,
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
}
