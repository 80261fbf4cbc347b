//! Watching the watchers: every sign-in (and failed one), search, report, export, alert change,
//! account change and refusal made through the UI or the API is an event in the store
//! (`event.dataset: mimamori.audit`), with the actor, what they did and which patient, so it is
//! searched and reported like any other access.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use store::{Batch, Event, Outcome};

use crate::AppState;
use crate::ui::session::Viewer;

/// The dataset of audit events.
pub const DATASET: &str = store::AUDIT_DATASET;

/// One thing someone did.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `login`, `login_failed`, `logout`, `search`, `export`, `report.patient`,
    /// `report.staff`, `event.view`, `alert.change`, `user.add`, `settings.view`,
    /// `access_denied`.
    pub action: &'static str,
    pub outcome: Outcome,
    pub patient: Option<String>,
    /// What, for a person reading the trail (a query, an alert id and its change).
    pub message: String,
    /// The account acted on (a sign-in's name before anyone is signed in).
    pub user: Option<String>,
}

impl Entry {
    pub fn new(action: &'static str, message: impl Into<String>) -> Entry {
        Entry {
            action,
            outcome: Outcome::Success,
            patient: None,
            message: message.into(),
            user: None,
        }
    }

    pub fn patient(mut self, patient: Option<&str>) -> Entry {
        self.patient = patient.map(str::to_owned);
        self
    }

    pub fn failed(mut self) -> Entry {
        self.outcome = Outcome::Failure;
        self
    }

    pub fn user(mut self, user: &str) -> Entry {
        self.user = Some(user.to_owned());
        self
    }

    pub fn denied(what: &str) -> Entry {
        Entry::new("access_denied", what).failed()
    }
}

/// Who did it: an account (with its role), an API token, or nobody yet; and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub name: Option<String>,
    pub role: Option<String>,
    pub client: Option<std::net::IpAddr>,
}

/// Anything that acts: a signed-in person, an API caller.
pub trait AsActor {
    fn actor(&self) -> Actor;
}

impl AsActor for Actor {
    fn actor(&self) -> Actor {
        self.clone()
    }
}

impl AsActor for Viewer {
    fn actor(&self) -> Actor {
        Actor {
            name: self.account.as_ref().map(|a| a.name.clone()),
            role: self.account.as_ref().map(|a| a.role.as_str().to_owned()),
            client: self.client,
        }
    }
}

impl AsActor for crate::auth::Caller {
    fn actor(&self) -> Actor {
        crate::auth::Caller::actor(self)
    }
}

/// Audit events of requests by nobody known (failed sign-ins, refused tokens) stored per
/// minute at most; the rest are counted in `/metrics` only, so a flood of guesses cannot fill
/// the disk through the trail.
pub const UNAUTHENTICATED_PER_MINUTE: u64 = 60;
static UNAUTHENTICATED: AtomicU64 = AtomicU64::new(0);

/// Whether one more unauthenticated audit event may be stored this minute.
pub fn unauthenticated_budget() -> bool {
    let minute = (Utc::now().timestamp() / 60) as u64;
    let result = UNAUTHENTICATED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
        let (at, n) = (packed >> 16, packed & 0xffff);
        let n = if at == minute { n + 1 } else { 1 };
        Some((minute << 16) | n.min(0xffff))
    });
    let packed = result.unwrap_or(0);
    let (at, n) = (packed >> 16, packed & 0xffff);
    (if at == minute { n + 1 } else { 1 }) <= UNAUTHENTICATED_PER_MINUTE
}

/// Tells events apart that are otherwise alike (the same search twice in one instant).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The audit event of `entry` by `who`.
pub fn event(who: &Actor, entry: Entry, appliance: &str) -> Event {
    let now = Utc::now();
    let actor = entry.user.clone().or_else(|| who.name.clone());
    let original = serde_json::json!({
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "n": SEQUENCE.fetch_add(1, Ordering::Relaxed),
        "actor": actor,
        "action": entry.action,
        "outcome": entry.outcome.as_str(),
        "patient": entry.patient,
        "client": who.client.map(|c| c.to_string()),
        "what": entry.message,
    })
    .to_string();
    let mut event = Event::new("mimamori.audit", DATASET, original, now);
    event.action = entry.action.to_owned();
    event.outcome = entry.outcome;
    event.user = actor;
    event.roles = who.role.iter().cloned().collect();
    event.patient = entry.patient;
    event.source_ip = who.client.map(|c| c.to_string());
    event.host = Some(appliance.to_owned());
    event.process = Some("mimamori".into());
    event.message = entry.message;
    event
}

/// Writes `entry` to the store and waits until it is durable (a refused or closing store is
/// counted in `ui_audit_events_lost_total` and logged, without the entry's text). Whether it
/// was stored (true where there is no store to write: a read-only server).
pub async fn record(state: &Arc<AppState>, who: &impl AsActor, entry: Entry) -> bool {
    let Some(store) = &state.store else {
        return true;
    };
    let action = entry.action;
    let event = event(&who.actor(), entry, &state.origin.appliance);
    // A store that refuses data (a full disk) keeps no trail: nothing is shown. One that takes
    // it is waited for a moment; a slow disk's event is queued like any other, not refused.
    let (batch, ack) = Batch::with_ack(vec![event]);
    let taken = store.refusing().is_none()
        && store.sender().send(batch).await.is_ok()
        && !matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), ack).await,
            Ok(Ok(Err(_)) | Err(_))
        );
    let metrics = state.ui.as_deref().map(|ui| &ui.metrics);
    if taken {
        metrics.inspect(|m| m.audit_events.inc());
    } else {
        metrics.inspect(|m| m.audit_lost.inc());
        tracing::warn!(
            action,
            "an audit event was not stored (the store refuses data)"
        );
    }
    taken
}

/// Records `entry`, or refuses the page: patient data is shown only when the trail of its
/// showing is kept (a full disk stops the showing, not the keeping).
pub async fn require(
    state: &Arc<AppState>,
    who: &impl AsActor,
    entry: Entry,
) -> Result<(), crate::ui::PageError> {
    if record(state, who, entry).await {
        Ok(())
    } else {
        Err(crate::ui::PageError::AuditDown)
    }
}

/// Whether the account `name` is the person `user` of a log, written bare, as `DOMAIN\\name`
/// or as `name@realm` (case aside): an alert about them is not theirs to judge.
pub fn same_person(user: &str, name: &str) -> bool {
    let bare = |s: &str| {
        let s = s.rsplit('\\').next().unwrap_or(s);
        s.split('@').next().unwrap_or(s).trim().to_lowercase()
    };
    !name.trim().is_empty() && bare(user) == bare(name)
}

/// Refuses a change whose record could not be kept now (the store refuses data: a full
/// disk): account, token and two-step changes are made only while the trail is written.
pub fn writable(state: &AppState) -> Result<(), crate::ui::PageError> {
    match &state.store {
        Some(store) if store.refusing().is_some() => Err(crate::ui::PageError::AuditDown),
        _ => Ok(()),
    }
}

/// Records what an API caller did, when it is identified by a token (anonymous reads on
/// loopback are like the command line: the appliance's own shell).
/// Whether it was stored (or needed no storing).
pub async fn api(state: &Arc<AppState>, caller: &crate::auth::Caller, entry: Entry) -> bool {
    caller.name == "anonymous" || record(state, caller, entry).await
}

#[cfg(test)]
mod person_tests {
    use super::same_person;

    #[test]
    fn a_person_is_the_same_with_a_domain_or_realm() {
        for user in ["nurse7", "NURSE7", "CLINIC\\nurse7", "nurse7@clinic.local"] {
            assert!(same_person(user, "nurse7"), "{user}");
        }
        assert!(!same_person("nurse70", "nurse7"));
        assert!(!same_person("nurse7", ""));
    }
}
