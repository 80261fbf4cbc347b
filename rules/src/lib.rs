//! Evaluates the clinic's rules on accepted events and emits [`Alert`]s. Does no network I/O.
//!
//! [`clinic::Clinic`] is the clinic model (hours, holidays, sites, roles, roster);
//! [`engine::Engine`] runs the detections ([`detections`], one file each: off-hours logins,
//! access outside role, concurrent multi-site sessions, bulk exports, ...) on each event, on
//! event time.

pub mod clinic;
pub mod detections;
pub mod engine;
pub mod filter;
pub mod holidays;
pub mod reorder;
pub mod roster;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::EventId;

/// The rules mimamori raises by itself (custom rules add their own names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    OffHoursLogin,
    AccessOutsideRole,
    ConcurrentSessions,
    BulkExport,
    LoginFailures,
    PasswordSpray,
    NewWorkstation,
    SensitiveRecords,
    TreatmentRelationship,
    ClockCheck,
    /// The log refuses new data (a full disk): raised by the runner, not a detection.
    Storage,
    /// The scheduled backup failed: raised by the backup schedule, not a detection.
    Backup,
}

impl RuleId {
    /// Alerts about the appliance itself, raised outside the rules.
    pub const SYSTEM: [RuleId; 2] = [RuleId::Storage, RuleId::Backup];

    /// The detections, as `rules backtest --rule` and the config name them.
    pub const DETECTIONS: [RuleId; 10] = [
        RuleId::OffHoursLogin,
        RuleId::AccessOutsideRole,
        RuleId::ConcurrentSessions,
        RuleId::BulkExport,
        RuleId::LoginFailures,
        RuleId::PasswordSpray,
        RuleId::NewWorkstation,
        RuleId::SensitiveRecords,
        RuleId::TreatmentRelationship,
        RuleId::ClockCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::OffHoursLogin => "off_hours_login",
            RuleId::AccessOutsideRole => "access_outside_role",
            RuleId::ConcurrentSessions => "concurrent_sessions",
            RuleId::BulkExport => "bulk_export",
            RuleId::LoginFailures => "login_failures",
            RuleId::PasswordSpray => "password_spray",
            RuleId::NewWorkstation => "new_workstation",
            RuleId::SensitiveRecords => "sensitive_records",
            RuleId::TreatmentRelationship => "treatment_relationship",
            RuleId::ClockCheck => "clock_check",
            RuleId::Storage => "storage",
            RuleId::Backup => "backup",
        }
    }

    /// What the rule watches, in Japanese and English, for messages to people.
    pub fn title(self) -> &'static str {
        match self {
            RuleId::OffHoursLogin => "時間外のログイン / Off-hours login",
            RuleId::AccessOutsideRole => "職務外のアクセス / Access outside role",
            RuleId::ConcurrentSessions => "同時ログイン / Concurrent sessions",
            RuleId::BulkExport => "大量閲覧・持ち出し / Bulk access or export",
            RuleId::LoginFailures => "ログイン失敗の多発 / Repeated login failures",
            RuleId::PasswordSpray => "パスワードスプレー / Password spray",
            RuleId::NewWorkstation => "初めての端末 / New workstation",
            RuleId::SensitiveRecords => "特別なカルテへのアクセス / Sensitive record access",
            RuleId::TreatmentRelationship => {
                "診療関係のない閲覧 / Access without treatment relationship"
            }
            RuleId::ClockCheck => "時刻のずれ / Clock check",
            RuleId::Storage => "記録の保存停止 / Storage refusing data",
            RuleId::Backup => "バックアップの失敗 / Backup failed",
        }
    }

    /// The rule a name means, if it is one of these.
    pub fn from_name(name: &str) -> Option<RuleId> {
        RuleId::DETECTIONS
            .into_iter()
            .chain(RuleId::SYSTEM)
            .find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The severity a stored name means (`medium` for anything else).
    pub fn from_name(name: &str) -> Severity {
        [Severity::Low, Severity::High, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
            .unwrap_or(Severity::Medium)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Patient ids and names the explanation mentions: left out of the messages sent about the
    /// alert unless a channel is allowed patient data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
}

impl Alert {
    /// An alert about the appliance itself (one of [`RuleId::SYSTEM`]): no person, no evidence.
    pub fn system(rule: RuleId, severity: Severity, explanation: String) -> Alert {
        let now = Utc::now();
        Alert {
            rule: rule.to_string(),
            severity,
            user: None,
            site: None,
            first_seen: now,
            last_seen: now,
            count: 1,
            explanation,
            evidence: Vec::new(),
            subject: None,
            private: Vec::new(),
        }
    }
}
