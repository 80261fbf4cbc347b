//! What one message says ([`Notice`]): one or more alert documents, with the text every
//! people channel shares (subject, facts, plain text) in the clinic's zone, Japanese first.

use serde::{Deserialize, Serialize};

use crate::document::AlertDocument;

/// What one message says: one or more alerts (a group, or a morning digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// The delivery's idempotency key: the same on every retry, never on another message.
    pub key: String,
    pub alerts: Vec<AlertDocument>,
    /// Held over quiet hours.
    #[serde(default)]
    pub digest: bool,
    /// Many alerts at once, sent together.
    #[serde(default)]
    pub storm: bool,
    /// The clinic's zone (IANA name): times in messages to people are local.
    pub timezone: String,
}

impl Notice {
    /// A one-line subject, Japanese first.
    pub fn subject(&self) -> String {
        match self.alerts.as_slice() {
            [one] => format!(
                "[mimamori] {} {}: {}{}",
                severity_ja(&one.severity),
                one.change.label().split(" / ").next().unwrap_or(""),
                one.title.split(" / ").next().unwrap_or(&one.title),
                one.user
                    .as_deref()
                    .map(|u| format!(" ({})", defang(u)))
                    .unwrap_or_default()
            ),
            many => format!(
                "[mimamori] {}{}件 / {} alerts",
                if self.digest {
                    "まとめ: アラート"
                } else {
                    "アラート"
                },
                many.len(),
                many.len()
            ),
        }
    }
}

impl Notice {
    fn zone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Asia::Tokyo)
    }

    /// A time as the clinic reads it: `2026/11/24(火) 22:40`.
    pub fn local(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        let local = t.with_timezone(&self.zone());
        let day = ["月", "火", "水", "木", "金", "土", "日"]
            [chrono::Datelike::weekday(&local).num_days_from_monday() as usize];
        format!(
            "{}({day}) {}",
            local.format("%Y/%m/%d"),
            local.format("%H:%M")
        )
    }

    /// The facts of one alert, label (Japanese / English) and value, for every people channel.
    pub fn facts(&self, d: &AlertDocument) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("重要度 / Severity", severity_ja(&d.severity)),
            ("状態 / Status", d.change.label().to_owned()),
        ];
        if let Some(u) = &d.user {
            out.push(("職員 / Staff", defang(u)));
        }
        if let Some(s) = &d.site {
            out.push(("拠点 / Site", defang(s)));
        }
        let when = if d.first_seen == d.last_seen {
            self.local(d.first_seen)
        } else {
            format!("{} – {}", self.local(d.first_seen), self.local(d.last_seen))
        };
        out.push(("日時 / When", when));
        out.push(("件数 / Count", d.count.to_string()));
        if let Some(by) = &d.changed_by {
            out.push(("対応者 / By", by.clone()));
        }
        if let Some(r) = &d.status_reason {
            out.push(("理由 / Reason", r.clone()));
        }
        if let Some(p) = d.patients.as_ref().filter(|p| !p.is_empty()) {
            out.push(("患者 / Patients", p.join(", ")));
        }
        out
    }

    /// The whole notice as plain text (email, Chatwork, LINE WORKS).
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        if self.digest {
            out.push_str(
                "静かな時間帯に保留したアラートのまとめです。/ Alerts held over quiet hours.\n\n",
            );
        }
        for d in &self.alerts {
            out.push_str(&format!("■ {}\n{}\n", d.title, defang(&d.explanation)));
            for (label, value) in self.facts(d) {
                out.push_str(&format!("{label}: {value}\n"));
            }
            if let Some(link) = &d.link {
                out.push_str(&format!("{link}\n"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "mimamori ({})",
            self.alerts.first().map_or("", |d| d.appliance.as_str())
        ));
        out
    }
}

/// Severity in Japanese then English, e.g. "【重大/critical】".
pub fn severity_ja(severity: &str) -> String {
    let ja = match severity {
        "critical" => "緊急",
        "high" => "重要",
        "medium" => "注意",
        _ => "情報",
    };
    format!("【{ja}/{severity}】")
}

/// Text from logs as people's messages show it: an address in it is made unclickable
/// (`http[:]//`), so a spoofed account name cannot put a working link in a chat or a mail.
pub fn defang(text: &str) -> String {
    text.replace("://", "[:]//")
}
