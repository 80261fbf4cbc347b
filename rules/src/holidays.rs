//! Japanese national holidays (国民の祝日・休日), computed by the rules of the 祝日法 as they
//! stand since 2007, with the one-off changes of 2019 (the accession) and 2020/2021 (the Tokyo
//! Olympics). No download at run time: a clinic's appliance has no internet. Checked against the
//! Cabinet Office's list (`shared/samples/calendar/syukujitsu.csv`) for every year it covers from
//! 2007 (the current law); the equinox formula holds to 2099.

use chrono::{Datelike, NaiveDate, Weekday};

/// The years these rules hold for: the law dates from 1948 and the equinox formula holds to
/// 2099. No day outside them is a national holiday.
pub const YEARS: std::ops::RangeInclusive<i32> = 1949..=2099;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// The `n`th (1-based) Monday of a month.
fn nth_monday(y: i32, m: u32, n: u32) -> NaiveDate {
    let first = date(y, m, 1);
    let offset = (7 + Weekday::Mon.num_days_from_monday() as i64
        - first.weekday().num_days_from_monday() as i64)
        % 7;
    first + chrono::Duration::days(offset + 7 * (n as i64 - 1))
}

fn equinox(y: i32, base: f64) -> u32 {
    let k = f64::from(y - 1980);
    (base + 0.242194 * k - (k / 4.0).floor()).floor() as u32
}

/// The named holidays of a year (without substitute and citizens' holidays).
fn named(y: i32) -> Vec<(NaiveDate, &'static str)> {
    let mut h = vec![
        (date(y, 1, 1), "元日"),
        (nth_monday(y, 1, 2), "成人の日"),
        (date(y, 2, 11), "建国記念の日"),
        (date(y, 3, equinox(y, 20.8431)), "春分の日"),
        (
            date(y, 4, 29),
            if y >= 2007 {
                "昭和の日"
            } else {
                "みどりの日"
            },
        ),
        (date(y, 5, 3), "憲法記念日"),
        (date(y, 5, 5), "こどもの日"),
        (nth_monday(y, 9, 3), "敬老の日"),
        (date(y, 9, equinox(y, 23.2488)), "秋分の日"),
        (date(y, 11, 3), "文化の日"),
        (date(y, 11, 23), "勤労感謝の日"),
    ];
    if y >= 2007 {
        h.push((date(y, 5, 4), "みどりの日"));
    }
    if y >= 2020 {
        h.push((date(y, 2, 23), "天皇誕生日"));
    } else if y <= 2018 {
        h.push((date(y, 12, 23), "天皇誕生日"));
    }
    // 海の日, 山の日, スポーツの日 moved for the Tokyo Olympics in 2020 and 2021.
    match y {
        2020 => h.extend([
            (date(y, 7, 23), "海の日"),
            (date(y, 7, 24), "スポーツの日"),
            (date(y, 8, 10), "山の日"),
        ]),
        2021 => h.extend([
            (date(y, 7, 22), "海の日"),
            (date(y, 7, 23), "スポーツの日"),
            (date(y, 8, 8), "山の日"),
        ]),
        _ => {
            h.push((nth_monday(y, 7, 3), "海の日"));
            if y >= 2016 {
                h.push((date(y, 8, 11), "山の日"));
            }
            h.push((
                nth_monday(y, 10, 2),
                if y >= 2020 {
                    "スポーツの日"
                } else {
                    "体育の日"
                },
            ));
        }
    }
    if y == 2019 {
        h.extend([
            (date(y, 5, 1), "休日（祝日扱い）"),
            (date(y, 10, 22), "休日（祝日扱い）"),
        ]);
    }
    h.sort();
    h
}

/// Every national holiday of a year, in date order, with its name.
pub fn holidays(y: i32) -> Vec<(NaiveDate, &'static str)> {
    // A sender's wrong clock (year 0001, 9999) must not reach the formulas: the equinox day
    // of year 1 is March 36th.
    if !YEARS.contains(&y) {
        return Vec::new();
    }
    let base = named(y);
    let is_base = |d: NaiveDate| base.iter().any(|(b, _)| *b == d);
    let mut all = base.clone();
    // 国民の休日: a day that is not a holiday, between two holidays.
    for (d, _) in &base {
        let next = *d + chrono::Duration::days(1);
        let after = *d + chrono::Duration::days(2);
        if !is_base(next) && is_base(after) && next.weekday() != Weekday::Sun {
            all.push((next, "休日"));
        }
    }
    // 振替休日: a holiday on a Sunday moves to the next day that is not one.
    for (d, _) in &base {
        if d.weekday() == Weekday::Sun {
            let mut sub = *d + chrono::Duration::days(1);
            while all.iter().any(|(a, _)| *a == sub) {
                sub += chrono::Duration::days(1);
            }
            all.push((sub, "休日"));
        }
    }
    all.sort();
    all.dedup_by_key(|(d, _)| *d);
    all
}

/// Is this date a national holiday?
pub fn is_holiday(d: NaiveDate) -> bool {
    holidays(d.year()).iter().any(|(h, _)| *h == d)
}

/// The holiday's name, if the date is one.
pub fn holiday_name(d: NaiveDate) -> Option<&'static str> {
    holidays(d.year())
        .into_iter()
        .find(|(h, _)| *h == d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Cabinet Office's list: 1955 to the year after next.
    fn official() -> Vec<NaiveDate> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/samples/calendar/syukujitsu.csv"
        );
        let text = std::fs::read(path).expect("the official holiday list in shared/samples");
        // UTF-8 today; it has been Shift_JIS before, and the date column is ASCII either way.
        String::from_utf8_lossy(&text)
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').next())
            .filter_map(|d| NaiveDate::parse_from_str(d.trim(), "%Y/%m/%d").ok())
            .collect()
    }

    #[test]
    fn years_outside_the_law_have_no_holidays_and_no_panic() {
        for y in [-262_000, -1, 0, 1, 1000, 1948, 2100, 9999, 262_000] {
            assert!(holidays(y).is_empty(), "{y}");
        }
        assert_eq!(holiday_name(date(1, 1, 1)), None);
        assert!(!is_holiday(date(9999, 1, 1)));
        assert_eq!(holiday_name(date(1949, 1, 1)), Some("元日"));
        assert_eq!(holiday_name(date(2099, 1, 1)), Some("元日"));
    }

    #[test]
    fn matches_the_official_list_from_2007() {
        let official = official();
        let last_year = official.iter().map(|d| d.year()).max().unwrap();
        assert!(last_year >= 2027, "the list covers to {last_year}");
        for y in 2007..=last_year {
            let want: Vec<NaiveDate> = official.iter().copied().filter(|d| d.year() == y).collect();
            let got: Vec<NaiveDate> = holidays(y).into_iter().map(|(d, _)| d).collect();
            assert_eq!(got, want, "{y}");
        }
    }

    #[test]
    fn the_tricky_ones() {
        // Citizens' holiday between 敬老の日 and 秋分の日.
        assert_eq!(holiday_name(date(2026, 9, 22)), Some("休日"));
        // Substitute holiday after a Sunday holiday.
        assert!(is_holiday(date(2026, 5, 6)), "5/3 is a Sunday in 2026");
        // Olympics.
        assert_eq!(holiday_name(date(2021, 8, 9)), Some("休日"));
        assert!(!is_holiday(date(2020, 10, 12)));
        // Beyond the official list: equinoxes to 2035.
        assert_eq!(holiday_name(date(2035, 3, 21)), Some("春分の日"));
        assert_eq!(holiday_name(date(2035, 9, 23)), Some("秋分の日"));
        assert_eq!(holiday_name(date(2032, 9, 22)), Some("秋分の日"));
        assert_eq!(
            holiday_name(date(2032, 9, 21)),
            Some("休日"),
            "between 敬老の日 and 秋分の日"
        );
        assert!(!is_holiday(date(2026, 11, 24)));
    }
}
