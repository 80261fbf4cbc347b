//! The languages mimamori speaks to a clinic's staff (Japanese first, English too), which one a
//! browser asks for, and times and dates as a clinic reads them (`2026/11/24(火) 22:40`, in
//! the clinic's time zone): one definition for the web pages and the reports.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

/// The languages of the pages and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The first of the browser's languages the pages speak; Japanese when none is.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Ja;
        };
        let mut ranked: Vec<(f32, Lang)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.trim().split(';');
                let tag = pieces.next()?.trim().to_ascii_lowercase();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                    .unwrap_or(1.0f32);
                let primary = tag.split('-').next()?;
                Lang::from_code(primary).map(|l| (q, l))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.first().map_or(Lang::Ja, |(_, l)| *l)
    }
}

/// `2026/11/24(火) 22:40` (Japanese) or `2026/11/24 (Tue) 22:40`, in the clinic's zone.
pub fn format_time(t: DateTime<Utc>, zone: Tz, lang: Lang) -> String {
    let local = t.with_timezone(&zone);
    let day = local.weekday().num_days_from_monday() as usize;
    match lang {
        Lang::Ja => {
            const DAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
            format!(
                "{}({}) {}",
                local.format("%Y/%m/%d"),
                DAYS[day],
                local.format("%H:%M")
            )
        }
        Lang::En => format!("{}", local.format("%Y/%m/%d (%a) %H:%M")),
    }
}

/// A date alone: `2026/11/24(火)`.
pub fn format_date(date: chrono::NaiveDate, lang: Lang) -> String {
    let day = date.weekday().num_days_from_monday() as usize;
    match lang {
        Lang::Ja => {
            const DAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];
            format!("{}({})", date.format("%Y/%m/%d"), DAYS[day])
        }
        Lang::En => format!("{}", date.format("%Y/%m/%d (%a)")),
    }
}

impl std::str::FromStr for Lang {
    type Err = crate::ReportError;

    fn from_str(s: &str) -> Result<Lang, crate::ReportError> {
        Lang::from_code(s)
            .ok_or_else(|| crate::ReportError::Render(format!("language ja or en, not {s:?}")))
    }
}
