//! The versioned alert document (`schemas/alert.v1.json`): what every channel says about an
//! alert, built from the stored alert and one change. Patient ids and names are left out unless
//! the channel is allowed patient data; the explanation and the triage note have them replaced.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::{AlertStatus, StoredAlert};
use crate::outbox::Change;

/// The `schema` of every document of this version. A change that breaks a reader is a new
/// version, published beside this one.
pub const SCHEMA: &str = "mimamori.alert.v1";

/// What replaces patient data in a message that may not carry it.
pub const WITHHELD: &str = "[患者情報省略/patient data withheld]";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDocument {
    pub schema: String,
    /// Stable across every message about this alert, from this appliance.
    pub id: String,
    pub alert_id: i64,
    pub change: Change,
    /// Who changed its status (a status change), if someone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    pub rule: String,
    pub title: String,
    pub severity: String,
    pub status: AlertStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    pub explanation: String,
    /// How many events are kept as evidence (their ids are on the appliance).
    pub evidence_count: usize,
    /// The alert on the appliance, when `delivery.link_base` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub appliance: String,
    /// Only for channels with `include_patient_data = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patients: Option<Vec<String>>,
}

/// Where the documents come from: the appliance's name and the link base.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub appliance: String,
    pub link_base: Option<String>,
}

impl AlertDocument {
    pub fn new(
        stored: &StoredAlert,
        change: Change,
        changed_by: Option<&str>,
        origin: &Origin,
        include_patient_data: bool,
    ) -> AlertDocument {
        let a = &stored.alert;
        let clean = |text: &str| {
            if include_patient_data {
                text.to_owned()
            } else {
                withhold(text, &a.private)
            }
        };
        AlertDocument {
            schema: SCHEMA.into(),
            id: format!("{}:{}", origin.appliance, stored.id),
            alert_id: stored.id,
            change,
            changed_by: changed_by.map(str::to_owned),
            rule: a.rule.clone(),
            title: rules::RuleId::from_name(&a.rule)
                .map_or_else(|| a.rule.clone(), |r| r.title().to_owned()),
            severity: a.severity.as_str().into(),
            status: stored.status,
            status_reason: stored.status_reason.as_deref().map(clean),
            user: a.user.clone(),
            site: a.site.clone(),
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            count: a.count,
            explanation: clean(&a.explanation),
            evidence_count: a.evidence.len(),
            link: origin
                .link_base
                .as_deref()
                .map(|b| format!("{}/alerts/{}", b.trim_end_matches('/'), stored.id)),
            appliance: origin.appliance.clone(),
            patients: include_patient_data.then(|| a.private.clone()),
        }
    }
}

impl AlertDocument {
    /// The document of `mimamori channels test`: about no real alert.
    pub fn test(origin: &Origin) -> AlertDocument {
        let now = Utc::now();
        AlertDocument {
            schema: SCHEMA.into(),
            id: format!("{}:test", origin.appliance),
            alert_id: 0,
            change: Change::Test,
            changed_by: None,
            rule: "test".into(),
            title: "テスト送信 / Test message".into(),
            severity: "low".into(),
            status: AlertStatus::Open,
            status_reason: None,
            user: None,
            site: None,
            first_seen: now,
            last_seen: now,
            count: 1,
            explanation: "mimamori からのテスト送信です。この通知が届けば設定は正しく動いています。/ A test message from mimamori: this channel works.".into(),
            evidence_count: 0,
            link: origin.link_base.clone(),
            appliance: origin.appliance.clone(),
            patients: None,
        }
    }
}

/// `text` with every one of `private` (without case) replaced by [`WITHHELD`].
pub fn withhold(text: &str, private: &[String]) -> String {
    let mut out = text.to_owned();
    for term in private.iter().filter(|t| !t.trim().is_empty()) {
        let lower = out.to_lowercase();
        let needle = term.to_lowercase();
        // Lower-casing keeps byte offsets only for text whose case mapping keeps lengths;
        // otherwise fall back to an exact replacement.
        if lower.len() != out.len() {
            out = out.replace(term.as_str(), WITHHELD);
            continue;
        }
        let mut result = String::with_capacity(out.len());
        let mut rest = 0;
        for (at, _) in lower.match_indices(&needle) {
            if at < rest {
                continue;
            }
            result.push_str(&out[rest..at]);
            result.push_str(WITHHELD);
            rest = at + needle.len();
        }
        result.push_str(&out[rest..]);
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_terms_are_withheld_without_case() {
        let text = "n003 did record.view on the record of patient P0042 (p0042), who is staff member 佐藤 花子";
        let out = withhold(text, &["P0042".into(), "佐藤 花子".into()]);
        assert!(!out.to_lowercase().contains("p0042"), "{out}");
        assert!(!out.contains("佐藤 花子"), "{out}");
        assert_eq!(out.matches(WITHHELD).count(), 3, "{out}");
        assert!(out.starts_with("n003 did record.view"), "{out}");
    }
}
