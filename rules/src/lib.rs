//! Evaluates the clinic's rules on accepted events and emits [`Alert`]s. Does no network I/O.
//!
//! [`clinic::Clinic`] is the clinic model (hours, holidays, sites, roles, roster);
//! [`engine::Engine`] runs the detections (off-hours logins, access outside role, concurrent
//! multi-site sessions, bulk exports) on each event, on event time.

pub mod clinic;
pub mod engine;
pub mod filter;
pub mod holidays;
pub mod reorder;
pub mod spray;
#[cfg(test)]
mod tests;
pub mod zones;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::EventId;

/// The built-in detections' names, as alerts carry them (custom rules add their own).
pub const RULE_NAMES: &[&str] = &[
    "off_hours_login",
    "access_outside_role",
    "concurrent_sessions",
    "bulk_export",
    "login_failures",
    "password_spray",
    "new_workstation",
    "sensitive_records",
    "treatment_relationship",
    "clock_check",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// A detection: what fired, for whom, when, why, and the events that show it. Carries no patient
/// data beyond evidence event ids, so it can leave the appliance as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub severity: Severity,
    pub user: Option<String>,
    pub site: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    /// Why it fired, in words a clinic director understands.
    pub explanation: String,
    pub evidence: Vec<EventId>,
    /// What an alert without a person is about (the address of a password spray, the sender of
    /// a wrong clock): alerts about different subjects are never continued as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}
