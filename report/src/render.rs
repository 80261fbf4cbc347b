//! The report as a person reads it: HTML for email and the browser (tables with inline
//! styles, the heat map as coloured cells), CSV for a spreadsheet, JSON for machines. Words
//! come from one catalogue per language (`report/i18n/ja.toml`, `en.toml`, the same keys).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, context};

use crate::ReportError;
use crate::lang::{Lang, format_date, format_time};
use crate::period::Span;
use crate::weekly::WeeklyReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Csv,
    Json,
    /// The HTML printed by Chromium ([`crate::pdf`]).
    Pdf,
}

impl std::str::FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Format, ReportError> {
        match s {
            "html" => Ok(Format::Html),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "pdf" => Ok(Format::Pdf),
            other => Err(ReportError::Render(format!(
                "format html, pdf, csv or json, not {other:?}"
            ))),
        }
    }
}

const JA: &str = include_str!("../i18n/ja.toml");
const EN: &str = include_str!("../i18n/en.toml");
const TEMPLATE: &str = include_str!("../templates/weekly.html");

/// The words of `lang`; for a monthly review, with the `[month]` table's replacements (keys
/// like `"totals.summary"` name the words they replace).
pub(crate) fn catalogue(lang: Lang, span: Span) -> Result<toml::Value, ReportError> {
    let mut t: toml::Value = toml::from_str(match lang {
        Lang::Ja => JA,
        Lang::En => EN,
    })
    .map_err(|e| ReportError::Render(format!("catalogue: {e}")))?;
    if span == Span::Month
        && let Some(toml::Value::Table(month)) = t.get("month").cloned()
    {
        for (path, words) in month {
            let mut at = &mut t;
            for part in path.split('.') {
                at = at
                    .get_mut(part)
                    .ok_or_else(|| ReportError::Render(format!("catalogue: no {path}")))?;
            }
            *at = words;
        }
    }
    Ok(t)
}

/// A cell's colour for `n` of at most `max`: white to deep blue.
fn shade(n: u64, max: u64) -> String {
    if n == 0 || max == 0 {
        return "#ffffff".into();
    }
    let level = (n as f64 / max as f64).sqrt();
    let channel = |full: f64, deep: f64| (full + (deep - full) * level).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        channel(255.0, 21.0),
        channel(255.0, 101.0),
        channel(255.0, 192.0)
    )
}

/// Overdue reviews named in a summary, at most (the most recent).
const MAX_OVERDUE_NAMED: usize = 8;

/// Each section's one-line summary, in the report's words: on top of its section, and in the
/// message that delivers the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summaries {
    pub totals: String,
    pub off_hours: String,
    pub alerts: String,
    pub accounts: String,
    /// The security log cleared (1102): said apart, in red.
    pub cleared: Option<String>,
    pub left_but_used: Option<String>,
    /// Roster accounts unused for the configured days (none when not looked for).
    pub dormant: Option<String>,
    pub patients: String,
    pub spot_checks: String,
    pub gaps: String,
    pub silences: String,
    pub overdue: Option<String>,
}

impl Summaries {
    pub fn of(report: &WeeklyReport, lang: Lang) -> Result<Summaries, ReportError> {
        let t = catalogue(lang, report.span)?;
        Ok(Summaries::with(report, &t))
    }

    fn with(r: &WeeklyReport, t: &toml::Value) -> Summaries {
        let say = |section: &str, key: &str, fill: &[(&str, String)]| {
            let mut text = t[section][key].as_str().unwrap_or("").to_owned();
            for (name, value) in fill {
                text = text.replace(&format!("{{{name}}}"), value);
            }
            text
        };
        let counts = r.alert_counts();
        Summaries {
            totals: say("totals", "summary", &[("n", r.events.to_string())]),
            off_hours: if r.outside_hours_total + r.closed_day_total == 0 {
                say("off", "none", &[])
            } else {
                say(
                    "off",
                    "some",
                    &[
                        ("outside", r.outside_hours_total.to_string()),
                        ("closed", r.closed_day_total.to_string()),
                    ],
                )
            },
            alerts: if counts.in_period == 0 {
                say("alerts", "none", &[])
            } else {
                say(
                    "alerts",
                    "some",
                    &[
                        ("n", counts.in_period.to_string()),
                        ("open", counts.open_in_period.to_string()),
                    ],
                )
            },
            accounts: if r.account_changes.is_empty() {
                say("accounts", "none", &[])
            } else {
                say(
                    "accounts",
                    "some",
                    &[("n", r.account_changes.len().to_string())],
                )
            },
            cleared: (r.log_cleared > 0)
                .then(|| say("accounts", "cleared", &[("n", r.log_cleared.to_string())])),
            left_but_used: (!r.left_but_used.is_empty()).then(|| {
                let who: Vec<String> = r
                    .left_but_used
                    .iter()
                    .map(|l| format!("{} ({})", l.value, l.count))
                    .collect();
                format!("{}: {}", say("accounts", "left", &[]), who.join(", "))
            }),
            dormant: (r.dormant_days > 0).then(|| {
                if r.dormant_total == 0 {
                    say(
                        "accounts",
                        "dormant_none",
                        &[("days", r.dormant_days.to_string())],
                    )
                } else {
                    say(
                        "accounts",
                        "dormant_some",
                        &[
                            ("days", r.dormant_days.to_string()),
                            ("n", r.dormant_total.to_string()),
                        ],
                    )
                }
            }),
            patients: match r.patients.first() {
                Some(p) => say("patients", "some", &[("n", p.staff.to_string())]),
                None => say("patients", "none", &[]),
            },
            spot_checks: {
                let c = &r.spot_checks;
                if !c.schedule {
                    say("spot", "no_schedule", &[])
                } else if c.unexplained == 0 {
                    say("spot", "none", &[("sampled", c.sampled.to_string())])
                } else {
                    say(
                        "spot",
                        "some",
                        &[
                            ("sampled", c.sampled.to_string()),
                            ("n", c.unexplained.to_string()),
                        ],
                    )
                }
            },
            gaps: if r.gaps.is_empty() {
                say("gaps", "none", &[])
            } else {
                let missing: u64 = r.gaps.iter().map(|g| g.missing).sum();
                say("gaps", "some", &[("n", missing.to_string())])
            },
            silences: match r.silences.first() {
                None => say("gaps", "silent_none", &[]),
                Some(longest) => say(
                    "gaps",
                    "silent_some",
                    &[
                        ("n", r.silences.len().to_string()),
                        ("hours", longest.hours.to_string()),
                    ],
                ),
            },
            overdue: (!r.overdue_signoffs.is_empty()).then(|| {
                // The most recent few by name, the rest counted: a long list would crowd out
                // the review itself (a chat message has room for 3,000 characters).
                let n = r.overdue_signoffs.len();
                let mut weeks: Vec<&str> = r
                    .overdue_signoffs
                    .iter()
                    .rev()
                    .take(MAX_OVERDUE_NAMED)
                    .map(String::as_str)
                    .collect();
                weeks.reverse();
                let mut named = weeks.join(", ");
                if n > MAX_OVERDUE_NAMED {
                    named.push_str(&format!(" (+{})", n - MAX_OVERDUE_NAMED));
                }
                say("signoff", "overdue", &[("weeks", named)])
            }),
        }
    }

    /// The summaries as one paragraph (warnings first), for a chat message or a mail's text.
    pub fn paragraph(&self) -> String {
        let mut lines: Vec<&str> = Vec::new();
        lines.extend(self.cleared.as_deref());
        lines.extend(self.left_but_used.as_deref());
        lines.extend(self.overdue.as_deref());
        lines.extend([
            self.totals.as_str(),
            &self.off_hours,
            &self.alerts,
            &self.accounts,
        ]);
        lines.extend(self.dormant.as_deref());
        lines.extend([self.patients.as_str(), &self.gaps]);
        lines.join("\n")
    }
}

/// The review as a file of `format`; PDF is printed by `browser` (found on the PATH if none).
pub fn render_bytes(
    report: &WeeklyReport,
    format: Format,
    lang: Lang,
    browser: Option<&std::path::Path>,
) -> Result<Vec<u8>, ReportError> {
    if format == Format::Pdf {
        let html = html(report, lang)?;
        return crate::pdf::from_html(&html, &crate::pdf::browser(browser)?);
    }
    render(report, format, lang).map(String::into_bytes)
}

/// The review as text (HTML, CSV, JSON); PDF is [`render_bytes`]'s.
pub fn render(report: &WeeklyReport, format: Format, lang: Lang) -> Result<String, ReportError> {
    match format {
        Format::Pdf => Err(ReportError::Render(
            "PDF is not text: render_bytes prints it".into(),
        )),
        Format::Json => {
            serde_json::to_string_pretty(report).map_err(|e| ReportError::Render(e.to_string()))
        }
        Format::Csv => csv(report),
        Format::Html => html(report, lang),
    }
}

fn html(report: &WeeklyReport, lang: Lang) -> Result<String, ReportError> {
    let zone: Tz = report.zone.parse().unwrap_or(chrono_tz::Asia::Tokyo);
    let t = catalogue(lang, report.span)?;
    let when = |at: DateTime<Utc>| format_time(at, zone, lang);
    let date = |at: DateTime<Utc>| format_date(at.with_timezone(&zone).date_naive(), lang);
    // Each map shaded against its own busiest hour.
    let rows = |heat: &[Vec<u64>]| -> Vec<minijinja::Value> {
        let max = heat.iter().flatten().copied().max().unwrap_or(0);
        heat.iter()
            .enumerate()
            .map(|(d, hours)| {
                context! {
                    day => t["days"][d].as_str().unwrap_or(""),
                    cells => hours.iter().map(|n| context! { n => *n, colour => shade(*n, max) }).collect::<Vec<_>>(),
                }
            })
            .collect()
    };
    let heat = rows(&report.heat);
    let people_heat: Vec<minijinja::Value> = report
        .people_heat
        .iter()
        .map(|p| {
            context! {
                user => p.user.clone(), name => p.name.clone(),
                why => t["heat"][p.why.as_str()].as_str().unwrap_or(""),
                rows => rows(&p.heat),
            }
        })
        .collect();
    let alert = |a: &crate::weekly::AlertLine| {
        context! {
            id => a.id, rule => a.rule.clone(), severity => a.severity.clone(),
            user => a.user.clone(), first_seen => when(a.first_seen), status => a.status.clone(),
            resolution => a.resolution.clone(), assignee => a.assignee.clone(),
            reason => a.reason.clone(), age_days => a.age_days,
        }
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("weekly.html", TEMPLATE)
        .map_err(|e| ReportError::Render(e.to_string()))?;
    let last_day = report.to - chrono::Duration::seconds(1);
    env.get_template("weekly.html")
        .and_then(|tpl| {
            tpl.render(context! {
                t => minijinja::Value::from(minijinja::value::Serde(&t)),
                lang => match lang { Lang::Ja => "ja", Lang::En => "en" },
                r => minijinja::Value::from(minijinja::value::Serde(report)),
                period => format!("{} – {}", date(report.from), date(last_day)),
                generated => when(report.generated_at),
                heat => heat,
                people_heat => people_heat,
                hours => (0..24).collect::<Vec<u32>>(),
                alerts => report.alerts.iter().map(alert).collect::<Vec<_>>(),
                alerts_more => report.alert_counts().in_period.saturating_sub(report.alerts.len() as u64),
                open_more => report.alert_counts().open.saturating_sub(report.open_alerts.len() as u64),
                open_alerts => report.open_alerts.iter().map(alert).collect::<Vec<_>>(),
                s => minijinja::Value::from(minijinja::value::Serde(Summaries::with(report, &t))),
                silences => report.silences.iter().map(|x| context! {
                    source => x.source.clone(), from => when(x.from), to => when(x.to),
                    hours => x.hours, usual => x.usual_hours,
                }).collect::<Vec<_>>(),
                unexplained => report.spot_checks.listed.iter().map(|u| context! {
                    at => when(u.at), user => u.user.clone(), name => u.name.clone(),
                    patient => u.patient.clone(), site => u.site.clone(), action => u.action.clone(),
                }).collect::<Vec<_>>(),
                dormant => report.dormant.iter().map(|d| context! {
                    user => d.user.clone(), name => d.name.clone(),
                    last_seen => d.last_seen.map(when),
                }).collect::<Vec<_>>(),
                changes => report.account_changes.iter().map(|c| context! {
                    at => when(c.at), what => c.what.clone(), user => c.user.clone(),
                    host => c.host.clone(), message => c.message.clone(),
                }).collect::<Vec<_>>(),
            })
        })
        .map_err(|e| ReportError::Render(e.to_string()))
}

/// One table of rows `section,key,value,...`: each section's numbers, for a spreadsheet.
fn csv(report: &WeeklyReport) -> Result<String, ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut row = |cells: &[String]| {
        // A cell a spreadsheet would run as a formula is written as text (numbers stay numbers).
        let safe: Vec<String> = cells
            .iter()
            .map(|c| {
                if c.starts_with(['=', '+', '-', '@', '\t', '\r']) && c.parse::<f64>().is_err() {
                    format!("'{c}")
                } else {
                    c.clone()
                }
            })
            .collect();
        w.write_record(&safe)
    };
    let s = |v: &dyn ToString| v.to_string();
    let err = |e: csv::Error| ReportError::Render(e.to_string());
    row(&[s(&"section"), s(&"key"), s(&"value"), s(&"detail")]).map_err(err)?;
    row(&[
        s(&"period"),
        s(&"week"),
        report.week.clone(),
        report.zone.clone(),
    ])
    .map_err(err)?;
    row(&[
        s(&"period"),
        s(&"from"),
        report.from.to_rfc3339(),
        String::new(),
    ])
    .map_err(err)?;
    row(&[
        s(&"period"),
        s(&"to"),
        report.to.to_rfc3339(),
        String::new(),
    ])
    .map_err(err)?;
    row(&[s(&"events"), s(&"total"), s(&report.events), String::new()]).map_err(err)?;
    for c in &report.sources {
        row(&[s(&"source"), c.value.clone(), s(&c.count), String::new()]).map_err(err)?;
    }
    for p in &report.staff {
        let change = p.change_percent.map(|c| c.to_string()).unwrap_or_default();
        row(&[s(&"staff"), p.user.clone(), s(&p.events), change]).map_err(err)?;
    }
    for o in &report.off_hours {
        row(&[
            s(&"outside_hours"),
            o.user.clone(),
            s(&o.outside_hours),
            String::new(),
        ])
        .map_err(err)?;
        row(&[
            s(&"closed_days"),
            o.user.clone(),
            s(&o.closed_days),
            String::new(),
        ])
        .map_err(err)?;
    }
    for a in &report.alerts {
        row(&[
            s(&"alert"),
            s(&a.id),
            a.status.clone(),
            format!("{} {}", a.rule, a.user.clone().unwrap_or_default()),
        ])
        .map_err(err)?;
    }
    for c in &report.account_changes {
        row(&[
            s(&"account_change"),
            c.what.clone(),
            c.at.to_rfc3339(),
            c.user.clone().unwrap_or_default(),
        ])
        .map_err(err)?;
    }
    for l in &report.left_but_used {
        row(&[
            s(&"left_but_used"),
            l.value.clone(),
            s(&l.count),
            String::new(),
        ])
        .map_err(err)?;
    }
    for d in &report.dormant {
        row(&[
            s(&"dormant"),
            d.user.clone(),
            d.last_seen.map(|t| t.to_rfc3339()).unwrap_or_default(),
            String::new(),
        ])
        .map_err(err)?;
    }
    for p in &report.patients {
        row(&[
            s(&"patient_staff"),
            p.patient.clone(),
            s(&p.staff),
            s(&p.accesses),
        ])
        .map_err(err)?;
    }
    for u in &report.spot_checks.listed {
        row(&[
            s(&"unexplained"),
            u.at.to_rfc3339(),
            u.user.clone().unwrap_or_default(),
            u.patient.clone(),
        ])
        .map_err(err)?;
    }
    for g in &report.gaps {
        row(&[s(&"gap"), g.source.clone(), s(&g.missing), s(&g.gaps)]).map_err(err)?;
    }
    for x in &report.silences {
        row(&[
            s(&"silence"),
            x.source.clone(),
            s(&x.hours),
            s(&x.usual_hours),
        ])
        .map_err(err)?;
    }
    row(&[
        s(&"checksum"),
        s(&"sha256"),
        report.checksum.clone(),
        String::new(),
    ])
    .map_err(err)?;
    let bytes = w
        .into_inner()
        .map_err(|e| ReportError::Render(e.to_string()))?;
    // A BOM so that Excel reads the Japanese as UTF-8.
    Ok(format!("\u{feff}{}", String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    keys(v, &format!("{prefix}.{k}"), out);
                }
            }
            other => {
                assert!(
                    !other.as_str().is_some_and(str::is_empty),
                    "{prefix} is empty"
                );
                out.push(prefix.to_owned());
            }
        }
    }

    #[test]
    fn both_catalogues_have_the_same_keys() {
        let (mut ja, mut en) = (Vec::new(), Vec::new());
        keys(&catalogue(Lang::Ja, Span::Week).unwrap(), "", &mut ja);
        keys(&catalogue(Lang::En, Span::Week).unwrap(), "", &mut en);
        // Every monthly replacement names words that exist.
        catalogue(Lang::Ja, Span::Month).unwrap();
        catalogue(Lang::En, Span::Month).unwrap();
        assert_eq!(ja, en);
        assert!(ja.len() > 20);
    }

    #[test]
    fn heat_shades_run_from_white_to_blue() {
        assert_eq!(shade(0, 10), "#ffffff");
        assert_eq!(shade(10, 10), "#1565c0");
    }
}
