//! `[[custom_rules]]`: rules admins write without code — a filter in the search query language,
//! counted (or distinct values counted) over a sliding window per group.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use store::Event;

use crate::Alert;
use crate::engine::{Engine, note_near_miss};
use serde::Deserialize;

use crate::Severity;
use crate::clinic::Invalid;
use crate::filter::{FIELDS, Filter};

/// `[[custom_rules]]`: rules admins write without code — a filter in the search query
/// language, counted (or distinct values counted) over a sliding window per group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleConfig {
    pub name: String,
    pub filter: String,
    /// Fields whose values make a group (`user.name`, `host.name`, ...); none: one group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Count distinct values of this field instead of events (`patient.id`).
    #[serde(default)]
    pub distinct: Option<String>,
    pub threshold: usize,
    pub window_minutes: u32,
    #[serde(default = "medium")]
    pub severity: Severity,
    /// What the alert says; `{count}`, `{group}` and `{window}` are filled in.
    #[serde(default)]
    pub explanation: Option<String>,
}

fn medium() -> Severity {
    Severity::Medium
}

/// A custom rule, checked.
#[derive(Debug, Clone)]
pub struct CustomRule {
    pub config: CustomRuleConfig,
    filter: Filter,
}

impl CustomRule {
    pub fn new(i: usize, config: &CustomRuleConfig) -> Result<CustomRule, Invalid> {
        let key = |k: &str| format!("custom_rules[{i}].{k}");
        let filter = Filter::parse(&config.filter).map_err(|e| {
            (
                key("filter"),
                format!("a query in the search language: {e}"),
            )
        })?;
        for f in config.group_by.iter().chain(config.distinct.iter()) {
            if !FIELDS.contains(&f.as_str()) && !f.starts_with("labels.") {
                return Err((
                    key("group_by"),
                    format!("fields among {}; {f:?} is not one", FIELDS.join(", ")),
                ));
            }
        }
        if config.threshold == 0 {
            return Err((key("threshold"), "at least 1".into()));
        }
        if config.window_minutes == 0 {
            return Err((key("window_minutes"), "at least 1".into()));
        }
        Ok(CustomRule {
            config: config.clone(),
            filter,
        })
    }
}

#[derive(Default)]
pub(crate) struct Window {
    /// (time, distinct value or "", event id)
    seen: VecDeque<(DateTime<Utc>, String, store::EventId)>,
    alerted_until: Option<DateTime<Utc>>,
}

/// Groups followed per custom rule, at most.
const MAX_GROUPS: usize = 50_000;

impl Engine {
    pub(crate) fn custom_rules(&mut self, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        for (rule, groups) in &mut self.custom {
            if !rule.filter.matches(event) {
                continue;
            }
            let c = &rule.config;
            let field = |f: &str| crate::filter::field_text(event, f).unwrap_or_else(|| "-".into());
            let group = c
                .group_by
                .iter()
                .map(|f| format!("{f}={}", field(f)))
                .collect::<Vec<_>>()
                .join(" ");
            if !groups.contains_key(&group) && groups.len() >= MAX_GROUPS {
                continue;
            }
            let w = groups.entry(group.clone()).or_default();
            let t = event.timestamp;
            let window = Duration::minutes(i64::from(c.window_minutes));
            let value = c.distinct.as_deref().map(field).unwrap_or_default();
            w.seen.push_back((t, value, event.id.clone()));
            while w.seen.front().is_some_and(|(x, _, _)| *x < t - window) {
                w.seen.pop_front();
            }
            while w.seen.len() > c.threshold * 20 {
                w.seen.pop_front();
            }
            if w.alerted_until.is_some_and(|u| t < u) {
                continue;
            }
            let count = if c.distinct.is_some() {
                w.seen
                    .iter()
                    .map(|(_, v, _)| v)
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            } else {
                w.seen.len()
            };
            if count < c.threshold {
                note_near_miss(
                    &mut self.near_misses,
                    &c.name,
                    count as u64,
                    c.threshold as u64,
                    || {
                        if group.is_empty() {
                            "all events".to_owned()
                        } else {
                            group.clone()
                        }
                    },
                );
                continue;
            }
            w.alerted_until = Some(t + window);
            let what = match &c.distinct {
                Some(f) => format!("{count} different {f}"),
                None => format!("{count} events"),
            };
            let explanation = match &c.explanation {
                Some(text) => text
                    .replace("{count}", &count.to_string())
                    .replace("{group}", &group)
                    .replace("{window}", &c.window_minutes.to_string()),
                None => format!(
                    "{what} matching `{}` within {} minutes{} (the threshold is {})",
                    c.filter,
                    c.window_minutes,
                    if group.is_empty() {
                        String::new()
                    } else {
                        format!(" for {group}")
                    },
                    c.threshold
                ),
            };
            let first = w.seen.front().map_or(t, |(x, _, _)| *x);
            out.push(Alert {
                rule: c.name.clone(),
                severity: c.severity,
                user: event.user.clone(),
                site: event.site.clone(),
                first_seen: first,
                last_seen: t,
                count: 1,
                explanation,
                evidence: w
                    .seen
                    .iter()
                    .rev()
                    .take(20)
                    .map(|(_, _, id)| id.clone())
                    .collect(),
                // Each group its own alert.
                subject: (!group.is_empty()).then(|| group.clone()),
                // A patient grouped by is named in the explanation and the subject.
                private: event
                    .patient
                    .iter()
                    .cloned()
                    .chain(
                        c.group_by
                            .iter()
                            .filter(|f| f.starts_with("patient"))
                            .filter_map(|f| crate::filter::field_text(event, f)),
                    )
                    .collect(),
            });
        }
        out
    }
}
