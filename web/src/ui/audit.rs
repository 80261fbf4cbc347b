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
pub const DATASET: &str = "mimamori.audit";

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

/// Tells events apart that are otherwise alike (the same search twice in one instant).
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The audit event of `entry` by `viewer`.
pub fn event(viewer: &Viewer, entry: Entry, appliance: &str) -> Event {
    let now = Utc::now();
    let actor = entry
        .user
        .clone()
        .or_else(|| viewer.account.as_ref().map(|a| a.name.clone()));
    let original = serde_json::json!({
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "n": SEQUENCE.fetch_add(1, Ordering::Relaxed),
        "actor": actor,
        "action": entry.action,
        "outcome": entry.outcome.as_str(),
        "patient": entry.patient,
        "client": viewer.client.map(|c| c.to_string()),
        "what": entry.message,
    })
    .to_string();
    let mut event = Event::new("mimamori.audit", DATASET, original, now);
    event.action = entry.action.to_owned();
    event.outcome = entry.outcome;
    event.user = actor;
    if let Some(account) = &viewer.account {
        event.roles = vec![account.role.as_str().to_owned()];
    }
    event.patient = entry.patient;
    event.source_ip = viewer.client.map(|c| c.to_string());
    event.host = Some(appliance.to_owned());
    event.process = Some("mimamori".into());
    event.message = entry.message;
    event
}

/// Writes `entry` to the store and waits until it is durable (a refused or closing store is
/// counted in `ui_audit_events_lost_total` and logged, without the entry's text).
pub async fn record(state: &Arc<AppState>, viewer: &Viewer, entry: Entry) {
    let Some(ui) = state.ui.as_deref() else {
        return;
    };
    let Some(store) = &state.store else {
        return;
    };
    let action = entry.action;
    let event = event(viewer, entry, &state.origin.appliance);
    let (batch, ack) = Batch::with_ack(vec![event]);
    let taken = store.sender().send(batch).await.is_ok()
        && matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), ack).await,
            Ok(Ok(Ok(_)))
        );
    if taken {
        ui.metrics.audit_events.inc();
    } else {
        ui.metrics.audit_lost.inc();
        tracing::warn!(
            action,
            "an audit event was not stored (the store refuses data)"
        );
    }
}
