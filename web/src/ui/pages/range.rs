//! The time range a page covers: a preset (today, 24 h, 7 days, ...) or a custom one typed in
//! the clinic's local time (`2026-11-24` or `2026-11-24T09:00`; a date alone as the end means
//! the end of that day).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::ui::PageError;

/// The presets, in the order the picker shows them.
pub const PRESETS: &[&str] = &["today", "24h", "7d", "30d", "90d", "365d"];

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RangeParams {
    #[serde(default)]
    pub range: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
}

/// A resolved range.
#[derive(Debug, Clone)]
pub struct Span {
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    /// The preset, or `custom`.
    pub key: String,
    /// The bounds as the form's inputs show them (local time).
    pub from_text: String,
    pub to_text: String,
}

impl Span {
    /// `[from .. to]` in RFC 3339, for the audit trail.
    pub fn describe(&self) -> String {
        format!("[{} .. {}]", self.from.to_rfc3339(), self.to.to_rfc3339())
    }

    /// The range as query-string parameters (for links that keep it).
    pub fn query(&self) -> String {
        if self.key == "custom" {
            format!(
                "range=custom&from={}&to={}",
                crate::ui::urlencode(&self.from_text),
                crate::ui::urlencode(&self.to_text)
            )
        } else {
            format!("range={}", self.key)
        }
    }
}

fn local(zone: Tz, t: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&t)
        .earliest()
        .unwrap_or_else(|| Utc.from_utc_datetime(&t).with_timezone(&zone))
        .with_timezone(&Utc)
}

/// Parses a bound typed in local time; `end` makes a date alone mean the end of that day.
fn bound(text: &str, zone: Tz, end: bool) -> Result<DateTime<Utc>, PageError> {
    let text = text.trim();
    // Years a clinic's records can have (and the histogram can count).
    let year_ok = |y: i32| (1970..=2200).contains(&y);
    if let Some(year) = text.get(..4).and_then(|y| y.parse::<i32>().ok())
        && !year_ok(year)
    {
        return Err(PageError::Bad(format!(
            "年は1970年から2200年までです / a year from 1970 to 2200, not {year}"
        )));
    }
    if text.starts_with(['+', '-']) {
        return Err(PageError::Bad(format!(
            "日時は 2026-11-24 の形で入力してください / a time is 2026-11-24, not {text:?}"
        )));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M") {
        return Ok(local(zone, t));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(local(zone, day.and_hms_opt(0, 0, 0).expect("midnight")));
    }
    Err(PageError::Bad(format!(
        "日時は 2026-11-24 または 2026-11-24T09:00 の形で入力してください / a time is 2026-11-24 or 2026-11-24T09:00, not {text:?}"
    )))
}

/// The range of `params` (or `default`, a preset), at `now`.
pub fn span(
    params: &RangeParams,
    zone: Tz,
    default: &str,
    now: DateTime<Utc>,
) -> Result<Span, PageError> {
    let key = params
        .range
        .as_deref()
        .filter(|k| !k.is_empty())
        .unwrap_or(default);
    let fmt = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%dT%H:%M").to_string();
    if key == "custom" {
        let from = bound(params.from.as_deref().unwrap_or(""), zone, false)?;
        let to = match params.to.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => bound(t, zone, true)?,
            None => now,
        };
        if to <= from {
            return Err(PageError::Bad(
                "終了は開始より後にしてください / the end must be after the start".into(),
            ));
        }
        return Ok(Span {
            from,
            to,
            key: key.into(),
            from_text: params.from.clone().unwrap_or_default(),
            to_text: params.to.clone().unwrap_or_default(),
        });
    }
    let from = match key {
        "today" => {
            let midnight = now
                .with_timezone(&zone)
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .expect("midnight");
            local(zone, midnight)
        }
        "24h" => now - Duration::hours(24),
        "7d" => now - Duration::days(7),
        "30d" => now - Duration::days(30),
        "90d" => now - Duration::days(90),
        "365d" => now - Duration::days(365),
        other => {
            return Err(PageError::Bad(format!(
                "期間の指定が正しくありません / unknown range {other:?}: one of {}, custom",
                PRESETS.join(", ")
            )));
        }
    };
    // One second past now, so an event arriving as the page is asked for is in it.
    let to = now + Duration::seconds(1);
    Ok(Span {
        from,
        to,
        key: key.into(),
        from_text: fmt(from),
        to_text: fmt(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_custom_ranges_in_the_clinic_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 13, 40, 0).unwrap();
        let today = span(&RangeParams::default(), tokyo, "today", now).unwrap();
        assert_eq!(
            today.from,
            Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).unwrap()
        );
        let custom = RangeParams {
            range: Some("custom".into()),
            from: Some("2026-11-01".into()),
            to: Some("2026-11-02".into()),
        };
        let s = span(&custom, tokyo, "7d", now).unwrap();
        assert_eq!(
            s.from,
            Utc.with_ymd_and_hms(2026, 10, 31, 15, 0, 0).unwrap()
        );
        assert_eq!(
            s.to,
            Utc.with_ymd_and_hms(2026, 11, 2, 15, 0, 0).unwrap(),
            "the end day is included"
        );
        let backwards = RangeParams {
            range: Some("custom".into()),
            from: Some("2026-11-03".into()),
            to: Some("2026-11-01".into()),
        };
        assert!(span(&backwards, tokyo, "7d", now).is_err());
        let bad = RangeParams {
            range: Some("1y".into()),
            ..RangeParams::default()
        };
        assert!(span(&bad, tokyo, "7d", now).is_err());
    }
}
