//! `password_spray`: failed logins for many different accounts from one address within a
//! window (a dozen 4771s against the domain controller, each for another account), which the
//! per-account `login_failures` never sees.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use store::{Event, EventId, Outcome};

use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.password_spray]`
    SprayConfig, High {
        /// Distinct accounts that failed from one address within the window.
        accounts: usize = 10,
        window_minutes: u32 = 10,
    }
}

/// Addresses followed at once; the quietest are dropped beyond it.
const MAX_ADDRESSES: usize = 10_000;
/// Failures remembered per address, at most.
const MAX_ATTEMPTS: usize = 1_000;

#[derive(Default)]
struct Attempts {
    /// (time, account, event), oldest first, within the window.
    seen: VecDeque<(DateTime<Utc>, String, EventId)>,
    alerted_until: Option<DateTime<Utc>>,
}

/// What a spray that fired looked like.
pub struct Spray {
    pub address: String,
    pub accounts: Vec<String>,
    pub first: DateTime<Utc>,
    pub evidence: Vec<EventId>,
}

/// Failed logins per source address.
#[derive(Default)]
pub struct Sprays {
    by_address: HashMap<String, Attempts>,
}

impl Sprays {
    /// Notes a failed login; a spray when its address has now failed for `accounts` accounts
    /// within the window (once per window).
    pub fn observe(&mut self, config: &SprayConfig, event: &Event) -> Option<Spray> {
        let failed = event.action == "login_failed"
            || (event.action == "login" && event.outcome == Outcome::Failure);
        // Where the attempts come from: the client address, or for NTLM validation on the
        // domain controller (4776, no address) the workstation it names.
        let workstation = event
            .labels
            .get("winlog.event_data.Workstation")
            .or_else(|| event.labels.get("winlog.event_data.WorkstationName"))
            .map(|w| format!("workstation {w}"));
        let (Some(address), Some(user)) = (
            event.source_ip.as_deref().or(workstation.as_deref()),
            event.user.as_deref(),
        ) else {
            return None;
        };
        if !failed || matches!(address, "127.0.0.1" | "::1" | "-") {
            return None;
        }
        let t = event.timestamp;
        let window = Duration::minutes(i64::from(config.window_minutes));
        if self.by_address.len() >= MAX_ADDRESSES && !self.by_address.contains_key(address) {
            self.by_address
                .retain(|_, a| a.seen.back().is_some_and(|(last, _, _)| *last > t - window));
            if self.by_address.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        let attempts = self.by_address.entry(address.to_owned()).or_default();
        while attempts
            .seen
            .front()
            .is_some_and(|(f, _, _)| *f < t - window)
        {
            attempts.seen.pop_front();
        }
        if attempts.seen.len() >= MAX_ATTEMPTS {
            attempts.seen.pop_front();
        }
        attempts
            .seen
            .push_back((t, user.to_lowercase(), event.id.clone()));
        let mut accounts: Vec<String> = attempts.seen.iter().map(|(_, u, _)| u.clone()).collect();
        accounts.sort();
        accounts.dedup();
        if accounts.len() < config.accounts.max(2)
            || attempts.alerted_until.is_some_and(|until| t < until)
        {
            return None;
        }
        attempts.alerted_until = Some(t + window);
        Some(Spray {
            address: address.to_owned(),
            accounts,
            first: attempts.seen.front().map_or(t, |(f, _, _)| *f),
            evidence: attempts.seen.iter().map(|(_, _, id)| id.clone()).collect(),
        })
    }
}

impl crate::engine::Engine {
    /// Failed logins for many accounts from one address: the alert names the address, not a
    /// person.
    pub(crate) fn spray(&mut self, event: &Event) -> Option<Alert> {
        let config = self.config.password_spray.clone();
        let spray = self.sprays.observe(&config, event)?;
        let shown: Vec<&str> = spray.accounts.iter().take(10).map(String::as_str).collect();
        let more = spray.accounts.len().saturating_sub(shown.len());
        let mut a = self.alert(RuleId::PasswordSpray,
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
}
