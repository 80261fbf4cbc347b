//! `[report]`: when the weekly review is made (by default Monday 08:00, clinic time, for the
//! week before) and how long it may stay unsigned before it is flagged.

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::period::Week;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Make the weekly review by itself (it is also made when first opened in the UI).
    pub weekly: bool,
    /// The day it is made: `mon` .. `sun`.
    pub weekly_day: String,
    /// The local time it is made at, `HH:MM`.
    pub weekly_time: String,
    /// Days a review may stay unsigned before the next report and the UI flag it.
    pub signoff_days: u32,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            weekly: true,
            weekly_day: "mon".into(),
            weekly_time: "08:00".into(),
            signoff_days: 7,
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
        Ok(Schedule { day, time })
    }
}

impl Schedule {
    /// The week whose review is due at `now`: last week's, once this week's scheduled moment
    /// has passed (before it, the one before that, which is made already).
    pub fn due(&self, now: DateTime<Utc>, zone: Tz) -> Week {
        let local = now.with_timezone(&zone);
        let this = Week::of(local.date_naive(), zone);
        let moment = crate::period::local_instant(
            zone,
            this.monday() + chrono::Duration::days(i64::from(self.day.num_days_from_monday())),
            self.time,
        );
        if now >= moment {
            this.back(1)
        } else {
            this.back(2)
        }
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
        let bad = ReportConfig {
            weekly_time: "8am".into(),
            ..ReportConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "report.weekly_time");
    }
}
