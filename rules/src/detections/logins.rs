//! `login_failures` (a login after repeated failures) and `new_workstation` (a login from a
//! machine the person has not used, once they have a pattern): both follow each account's logins.

use chrono::Duration;
use store::{Event, Outcome};

use crate::engine::{Engine, MAX_HOSTS};
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.login_failures]`: a successful login after repeated failures.
    FailuresConfig, Medium {
        failures: usize = 5,
        window_minutes: u32 = 10,
    }
}

detection_config! {
    /// `[detections.new_workstation]`: a login from a machine that person has never used, once
    /// they have an established pattern.
    NewWorkstationConfig, Low {
        /// Logins seen before a new machine is worth saying something about.
        learning_logins: u32 = 20,
    }
}

detection! {
    /// Failures and machines are followed even while the checks are off.
    Logins, always, check: logins
}

impl Engine {
    /// Repeated failures then a success; a machine the person has never used.
    pub(crate) fn logins(
        &mut self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Vec<Alert> {
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
                RuleId::LoginFailures,
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
            out.push(self.alert(RuleId::NewWorkstation,
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
}
