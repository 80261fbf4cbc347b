//! The period a review covers: an ISO week (`2026-W48`, Monday 00:00 to the next Monday 00:00)
//! or a calendar month (`2026-11`), in the clinic's time zone, so a period with a
//! daylight-saving change is an hour shorter or longer, and its local days, each with its own
//! start and end in UTC.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ReportError;

/// How long a review's period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Span {
    #[default]
    Week,
    Month,
}

/// One ISO week or calendar month in a clinic's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub span: Span,
    pub year: i32,
    /// The ISO week's number, or the month's (1-12).
    pub number: u32,
    pub zone: Tz,
}

impl Period {
    /// `2026-W48` (or `2026-w48`), or `2026-11`, in `zone`.
    pub fn parse(text: &str, zone: Tz) -> Result<Period, ReportError> {
        let bad = || {
            ReportError::BadWeek(format!(
                "an ISO week like 2026-W48 or a month like 2026-11, not {:?}",
                text.chars().take(40).collect::<String>()
            ))
        };
        let text = text.trim();
        // Years a clinic's logs can hold (and the calendars and zones know).
        let year_ok = |y: i32| (1970..=2199).contains(&y);
        if let Some((year, number)) = text.split_once(['W', 'w']) {
            let year: i32 = year.trim_end_matches('-').parse().map_err(|_| bad())?;
            if !year_ok(year) {
                return Err(bad());
            }
            let number: u32 = number.parse().map_err(|_| bad())?;
            NaiveDate::from_isoywd_opt(year, number, Weekday::Mon).ok_or_else(bad)?;
            return Ok(Period {
                span: Span::Week,
                year,
                number,
                zone,
            });
        }
        let (year, month) = text.split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        if !year_ok(year) {
            return Err(bad());
        }
        let number: u32 = month.parse().map_err(|_| bad())?;
        NaiveDate::from_ymd_opt(year, number, 1).ok_or_else(bad)?;
        Ok(Period {
            span: Span::Month,
            year,
            number,
            zone,
        })
    }

    /// The week (or month) before the one `now` falls in, locally: what a Monday-morning (or
    /// first-of-the-month) review covers.
    pub fn previous(now: DateTime<Utc>, zone: Tz, span: Span) -> Period {
        let today = now.with_timezone(&zone).date_naive();
        Period::of(today, zone, span).back(1)
    }

    /// The week (or month) containing the local date `day`.
    pub fn of(day: NaiveDate, zone: Tz, span: Span) -> Period {
        match span {
            Span::Week => {
                let w = day.iso_week();
                Period {
                    span,
                    year: w.year(),
                    number: w.week(),
                    zone,
                }
            }
            Span::Month => Period {
                span,
                year: day.year(),
                number: day.month(),
                zone,
            },
        }
    }

    pub fn name(&self) -> String {
        match self.span {
            Span::Week => format!("{}-W{:02}", self.year, self.number),
            Span::Month => format!("{}-{:02}", self.year, self.number),
        }
    }

    /// Its first local day (a Monday, or the 1st).
    pub fn first_day(&self) -> NaiveDate {
        // Checked when the period was made.
        match self.span {
            Span::Week => NaiveDate::from_isoywd_opt(self.year, self.number, Weekday::Mon),
            Span::Month => NaiveDate::from_ymd_opt(self.year, self.number, 1),
        }
        .unwrap_or_default()
    }

    /// The local day after its last.
    fn end_day(&self) -> NaiveDate {
        match self.span {
            Span::Week => self.first_day() + Duration::days(7),
            Span::Month => self.first_day() + Months::new(1),
        }
    }

    /// Its local days.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.first_day()
            .iter_days()
            .take_while(|d| *d < self.end_day())
            .collect()
    }

    /// Start (inclusive) and end (exclusive) in UTC.
    pub fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            local_instant(self.zone, self.first_day(), NaiveTime::MIN),
            local_instant(self.zone, self.end_day(), NaiveTime::MIN),
        )
    }

    /// The `n`th period of its span before this one.
    pub fn back(&self, n: i64) -> Period {
        let day = match self.span {
            Span::Week => self.first_day() - Duration::days(7 * n),
            Span::Month => self.first_day() - Months::new(n.clamp(0, 12 * 100) as u32),
        };
        Period::of(day, self.zone, self.span)
    }

    /// How many periods before make a person's usual: four weeks, or three months.
    pub fn baseline(&self) -> i64 {
        match self.span {
            Span::Week => 4,
            Span::Month => 3,
        }
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
        let w = Period::parse("2026-W48", tokyo).unwrap();
        let (from, to) = w.range();
        assert_eq!(from.to_rfc3339(), "2026-11-22T15:00:00+00:00");
        assert_eq!((to - from).num_hours(), 168);
        let ny: Tz = "America/New_York".parse().unwrap();
        // Daylight saving ends on Sunday 1 November 2026: that week has 169 hours.
        let (from, to) = Period::parse("2026-W44", ny).unwrap().range();
        assert_eq!(from.to_rfc3339(), "2026-10-26T04:00:00+00:00");
        assert_eq!((to - from).num_hours(), 169);
        // It starts on Sunday 8 March 2026: 167.
        let (from, to) = Period::parse("2026-W10", ny).unwrap().range();
        assert_eq!((to - from).num_hours(), 167);
        assert!(Period::parse("2026-W54", tokyo).is_err());
        assert!(Period::parse("last week", tokyo).is_err());
        let monday_morning = DateTime::parse_from_rfc3339("2026-11-30T08:00:00+09:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Period::previous(monday_morning, tokyo, Span::Week).name(),
            "2026-W48"
        );
        assert_eq!(w.back(1).name(), "2026-W47");
    }

    #[test]
    fn months_are_local_and_follow_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let m = Period::parse("2026-11", ny).unwrap();
        assert_eq!(m.span, Span::Month);
        let (from, to) = m.range();
        assert_eq!(from.to_rfc3339(), "2026-11-01T04:00:00+00:00");
        assert_eq!((to - from).num_hours(), 30 * 24 + 1, "an hour longer");
        assert_eq!(m.days().len(), 30);
        assert_eq!(m.back(11).name(), "2025-12");
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let first = DateTime::parse_from_rfc3339("2026-01-01T08:00:00+09:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Period::previous(first, tokyo, Span::Month).name(),
            "2025-12"
        );
        assert_eq!(Period::parse("2026-02", tokyo).unwrap().days().len(), 28);
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026-W",
            "0-W01",
            "9999-W52",
            "0000-01",
            "9999-12",
            "262143-W01",
        ] {
            assert!(Period::parse(bad, tokyo).is_err(), "{bad}");
        }
    }
}
