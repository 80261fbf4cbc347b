//! `concurrent_sessions`: a login at one site while a session at another is still alive, or
//! sooner than the travel time between them; a logout then a login elsewhere is fine.

use chrono::Duration;
use store::{Event, Outcome};

use crate::engine::{Engine, Presence};
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.concurrent_sessions]`
    ConcurrentConfig, High {
        /// A session without a logout ends this long after its last activity.
        session_idle_minutes: u32 = 30,
        /// The quickest anyone gets from one site to another.
        travel_minutes: u32 = 20,
    }
}

detection! {
    /// The check of `Concurrent`.
    Concurrent, on: concurrent_sessions, check: concurrent
}

impl Engine {
    pub(crate) fn concurrent(
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
            RuleId::ConcurrentSessions,
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
}
