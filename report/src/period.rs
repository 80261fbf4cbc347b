//! The week a report covers: an ISO week (`2026-W48`) from Monday 00:00 to the next Monday
//! 00:00 in the clinic's time zone, so a week with a daylight-saving change is 167 or 169
//! hours long, and the local days, each with its own start and end in UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::ReportError;

/// One ISO week in a clinic's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Week {
    pub year: i32,
    pub number: u32,
    pub zone: Tz,
}

impl Week {
    /// `2026-W48` (or `2026-w48`) in `zone`.
    pub fn parse(text: &str, zone: Tz) -> Result<Week, ReportError> {
        let bad = || {
            ReportError::BadWeek(format!(
                "an ISO week like 2026-W48, not {:?}",
                text.chars().take(40).collect::<String>()
            ))
        };
        let (year, number) = text.trim().split_once(['W', 'w']).ok_or_else(bad)?;
        let year: i32 = year.trim_end_matches('-').parse().map_err(|_| bad())?;
        let number: u32 = number.parse().map_err(|_| bad())?;
        NaiveDate::from_isoywd_opt(year, number, Weekday::Mon).ok_or_else(bad)?;
        Ok(Week { year, number, zone })
    }

    /// The week before the one `now` falls in (locally): what a Monday-morning report covers.
    pub fn previous(now: DateTime<Utc>, zone: Tz) -> Week {
        let today = now.with_timezone(&zone).date_naive();
        let last_week = (today - Duration::days(7)).iso_week();
        Week {
            year: last_week.year(),
            number: last_week.week(),
            zone,
        }
    }

    /// The week containing the local date `day`.
    pub fn of(day: NaiveDate, zone: Tz) -> Week {
        let w = day.iso_week();
        Week {
            year: w.year(),
            number: w.week(),
            zone,
        }
    }

    pub fn name(&self) -> String {
        format!("{}-W{:02}", self.year, self.number)
    }

    /// Its Monday.
    pub fn monday(&self) -> NaiveDate {
        // Checked when the week was made.
        NaiveDate::from_isoywd_opt(self.year, self.number, Weekday::Mon).unwrap_or_default()
    }

    /// The seven local days.
    pub fn days(&self) -> Vec<NaiveDate> {
        (0..7).map(|i| self.monday() + Duration::days(i)).collect()
    }

    /// Start (inclusive) and end (exclusive) in UTC.
    pub fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_instant(self.zone, self.monday(), NaiveTime::MIN),
            local_instant(self.zone, self.monday() + Duration::days(7), NaiveTime::MIN),
        )
    }

    /// The `n`th week before this one.
    pub fn back(&self, n: i64) -> Week {
        Week::of(self.monday() - Duration::days(7 * n), self.zone)
    }
}

/// The instant a local clock shows `time` on `day`: in a gap (spring forward) the first
/// instant after it, in an overlap (fall back) the first of the two.
pub fn local_instant(zone: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut local = day.and_time(time);
    for _ in 0..4 {
        if let Some(t) = zone.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
        local += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&day.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_are_local_and_follow_daylight_saving() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let w = Week::parse("2026-W48", tokyo).unwrap();
        let (from, to) = w.range();
        assert_eq!(from.to_rfc3339(), "2026-11-22T15:00:00+00:00");
        assert_eq!((to - from).num_hours(), 168);
        let ny: Tz = "America/New_York".parse().unwrap();
        // Daylight saving ends on Sunday 1 November 2026: that week has 169 hours.
        let (from, to) = Week::parse("2026-W44", ny).unwrap().range();
        assert_eq!(from.to_rfc3339(), "2026-10-26T04:00:00+00:00");
        assert_eq!((to - from).num_hours(), 169);
        // It starts on Sunday 8 March 2026: 167.
        let (from, to) = Week::parse("2026-W10", ny).unwrap().range();
        assert_eq!((to - from).num_hours(), 167);
        assert!(Week::parse("2026-W54", tokyo).is_err());
        assert!(Week::parse("last week", tokyo).is_err());
        let monday_morning = DateTime::parse_from_rfc3339("2026-11-30T08:00:00+09:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Week::previous(monday_morning, tokyo).name(), "2026-W48");
        assert_eq!(w.back(1).name(), "2026-W47");
    }
}
