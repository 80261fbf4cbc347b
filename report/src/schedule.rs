//! `[report]`: when the weekly review is made (by default Monday 08:00, clinic time, for the
//! week before) and how long it may stay unsigned before it is flagged.

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use alerting::channels::ChannelConfig;

use crate::lang::Lang;
use crate::period::{Period, Span};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Make the weekly review by itself (it is also made when first opened in the UI).
    pub weekly: bool,
    /// The day it is made: `mon` .. `sun`.
    pub weekly_day: String,
    /// The local time it is made at, `HH:MM` (the monthly review too).
    pub weekly_time: String,
    /// Also make (and send) a monthly review, on the 1st, for the month before.
    pub monthly: bool,
    /// Days a review may stay unsigned before the next report and the UI flag it.
    pub signoff_days: u32,
    /// Days without an event after which a roster account is listed as dormant; 0: never.
    pub dormant_days: u32,
    /// The channels (`[[channels]]` names) the review is sent to when made by the schedule;
    /// unset: every enabled email and chat channel; `[]`: none.
    pub channels: Option<Vec<String>>,
    /// The language of the review sent: `ja` or `en`.
    pub language: String,
    /// Attach the review as PDF to its email too (printed by Chromium; see `browser`).
    pub attach_pdf: bool,
    /// The Chrome or Chromium binary that prints PDFs; unset: `chromium` (or
    /// `chromium-browser`, `google-chrome`) on the PATH.
    pub browser: Option<std::path::PathBuf>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            weekly: true,
            weekly_day: "mon".into(),
            weekly_time: "08:00".into(),
            monthly: false,
            signoff_days: 7,
            dormant_days: 30,
            channels: None,
            language: "ja".into(),
            attach_pdf: false,
            browser: None,
        }
    }
}

/// When, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub day: Weekday,
    pub time: NaiveTime,
}

impl ReportConfig {
    /// The schedule, or what is wrong as (key, expected).
    pub fn check(&self) -> Result<Schedule, (String, String)> {
        let day = self.weekly_day.parse::<Weekday>().map_err(|_| {
            (
                "report.weekly_day".to_owned(),
                format!("a weekday (mon .. sun), not {:?}", self.weekly_day),
            )
        })?;
        let time = NaiveTime::parse_from_str(&self.weekly_time, "%H:%M").map_err(|_| {
            (
                "report.weekly_time".to_owned(),
                format!("a time like 08:00, not {:?}", self.weekly_time),
            )
        })?;
        if !(1..=365).contains(&self.signoff_days) {
            return Err(("report.signoff_days".into(), "from 1 to 365 days".into()));
        }
        if let Some(browser) = &self.browser
            && !browser.is_file()
        {
            return Err((
                "report.browser".into(),
                format!(
                    "a Chrome or Chromium binary; {} is not a file",
                    browser.display()
                ),
            ));
        }
        if self.dormant_days > 3660 {
            return Err((
                "report.dormant_days".into(),
                "from 0 (never) to 3660 days".into(),
            ));
        }
        self.lang()?;
        Ok(Schedule { day, time })
    }

    /// The review's language, or what is wrong as (key, expected).
    pub fn lang(&self) -> Result<Lang, (String, String)> {
        self.language.parse().map_err(|_| {
            (
                "report.language".to_owned(),
                format!("ja or en, not {:?}", self.language),
            )
        })
    }

    /// The channels the review goes to, of those configured, or what is wrong as (key,
    /// expected).
    pub fn recipients(
        &self,
        channels: &[ChannelConfig],
    ) -> Result<Vec<ChannelConfig>, (String, String)> {
        let Some(names) = &self.channels else {
            return Ok(channels
                .iter()
                .filter(|c| c.enabled && c.kind.is_people())
                .cloned()
                .collect());
        };
        names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let key = format!("report.channels[{i}]");
                match channels.iter().find(|c| &c.name == name) {
                    None => Err((key, format!("the name of a [[channels]] entry; there is no {name:?}"))),
                    Some(c) if !c.enabled => Err((
                        key,
                        format!("an enabled channel; {name:?} has enabled = false, so the review would wait for it for ever"),
                    )),
                    Some(c) if !c.kind.is_people() => Err((
                        key,
                        format!(
                            "an email or chat channel; {name:?} is a {} channel, which carries alerts only",
                            c.kind.as_str()
                        ),
                    )),
                    Some(c) => Ok(c.clone()),
                }
            })
            .collect()
    }
}

impl Schedule {
    /// The week whose review is due at `now`: last week's, once this week's scheduled moment
    /// has passed (before it, the one before that, which is made already).
    pub fn due(&self, now: DateTime<Utc>, zone: Tz) -> Period {
        let local = now.with_timezone(&zone);
        let this = Period::of(local.date_naive(), zone, Span::Week);
        let moment = crate::period::local_instant(
            zone,
            this.first_day() + chrono::Duration::days(i64::from(self.day.num_days_from_monday())),
            self.time,
        );
        if now >= moment {
            this.back(1)
        } else {
            this.back(2)
        }
    }

    /// The month whose review is due at `now`: last month's from the 1st at the same time.
    pub fn due_month(&self, now: DateTime<Utc>, zone: Tz) -> Period {
        let this = Period::of(now.with_timezone(&zone).date_naive(), zone, Span::Month);
        let moment = crate::period::local_instant(zone, this.first_day(), self.time);
        this.back(if now >= moment { 1 } else { 2 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_monday_eight_for_last_week() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let s = ReportConfig::default().check().unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        assert_eq!(
            s.due(at("2026-11-30T07:59:00+09:00"), tokyo).name(),
            "2026-W47"
        );
        assert_eq!(
            s.due(at("2026-11-30T08:00:00+09:00"), tokyo).name(),
            "2026-W48"
        );
        assert_eq!(
            s.due(at("2026-12-06T23:00:00+09:00"), tokyo).name(),
            "2026-W48"
        );
        assert_eq!(
            s.due_month(at("2026-12-01T07:59:00+09:00"), tokyo).name(),
            "2026-10"
        );
        assert_eq!(
            s.due_month(at("2026-12-01T08:00:00+09:00"), tokyo).name(),
            "2026-11"
        );
        let bad = ReportConfig {
            weekly_time: "8am".into(),
            ..ReportConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "report.weekly_time");
    }

    #[test]
    fn the_review_goes_to_people_channels_and_a_named_system_channel_is_refused() {
        let channel = |name: &str, kind: &str| -> ChannelConfig {
            toml::from_str(&format!("name = \"{name}\"\nkind = \"{kind}\"\n")).unwrap()
        };
        let all = [
            channel("office", "email"),
            channel("soc", "webhook"),
            channel("chat", "slack"),
        ];
        let names = |r: Vec<ChannelConfig>| r.into_iter().map(|c| c.name).collect::<Vec<_>>();
        let default = ReportConfig::default();
        assert_eq!(names(default.recipients(&all).unwrap()), ["office", "chat"]);
        let some = ReportConfig {
            channels: Some(vec!["chat".into()]),
            ..ReportConfig::default()
        };
        assert_eq!(names(some.recipients(&all).unwrap()), ["chat"]);
        let soc = ReportConfig {
            channels: Some(vec!["chat".into(), "soc".into()]),
            ..ReportConfig::default()
        };
        let (key, expected) = soc.recipients(&all).unwrap_err();
        assert_eq!(key, "report.channels[1]");
        assert!(expected.contains("webhook"), "{expected}");
        let typo = ReportConfig {
            channels: Some(vec!["ofice".into()]),
            ..ReportConfig::default()
        };
        assert!(typo.recipients(&all).unwrap_err().1.contains("\"ofice\""));
        let mut off = channel("off", "email");
        off.enabled = false;
        let named_off = ReportConfig {
            channels: Some(vec!["off".into()]),
            ..ReportConfig::default()
        };
        assert!(
            named_off
                .recipients(&[off])
                .unwrap_err()
                .1
                .contains("enabled")
        );
    }
}
