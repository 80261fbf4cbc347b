//! The review delivered: one message per report channel (`[report] channels`, by default
//! every email and chat channel), put in the alert database's delivery queue, so the
//! channels' senders send it with their settings, retry it with backoff and show it in
//! `alerts deliveries`. Email carries the report whole (HTML body, CSV attached); a chat
//! service the one-paragraph summary and a link to the report in the UI.

use alerting::channels::{Attachment, ChannelConfig, Message};
use alerting::db::AlertDb;
use alerting::delivery::store::{Again, Delivery};

use crate::ReportError;
use crate::lang::{Lang, format_date};
use crate::render::{Format, Summaries, catalogue, render};
use crate::weekly::WeeklyReport;

/// Who receives the reviews and how: the report channels, the language, the UI's address.
#[derive(Clone)]
pub struct Recipients {
    pub channels: Vec<ChannelConfig>,
    pub lang: Lang,
    pub link_base: Option<String>,
    /// Attach a PDF to the mail too, printed by this browser (none configured: found on the
    /// PATH).
    pub attach_pdf: bool,
    pub browser: Option<std::path::PathBuf>,
}

/// What goes to some of the report channels: the same message for each.
pub struct Outgoing {
    pub week: String,
    pub channels: Vec<ChannelConfig>,
    pub message: Message,
}

impl Recipients {
    /// The messages of `report`, made (and a PDF printed) before any database is touched:
    /// patient IDs only to the channels allowed them (`include_patient_data`).
    pub fn messages(&self, report: &WeeklyReport) -> Result<Vec<Outgoing>, ReportError> {
        let mut out = Vec::new();
        for allowed in [false, true] {
            let channels: Vec<ChannelConfig> = self
                .channels
                .iter()
                .filter(|c| c.include_patient_data == allowed)
                .cloned()
                .collect();
            if channels.is_empty() {
                continue;
            }
            let copy = if allowed {
                report.clone()
            } else {
                report.without_patient_data()
            };
            let mut message = message(&copy, self.lang, self.link_base.as_deref())?;
            if self.attach_pdf {
                attach_pdf(&mut message, &report.week, self.browser.as_deref());
            }
            out.push(Outgoing {
                week: report.week.clone(),
                channels,
                message,
            });
        }
        Ok(out)
    }

    /// Queues `outgoing` (see [`Again`]); the channels it was queued for, in the order
    /// configured.
    pub fn queue(
        &self,
        alerts: &AlertDb,
        outgoing: &[Outgoing],
        again: Again,
    ) -> Result<Vec<String>, ReportError> {
        let mut queued = Vec::new();
        for o in outgoing {
            queued.extend(queue(alerts, &o.channels, &o.week, &o.message, again)?);
        }
        queued.sort_by_key(|name| self.channels.iter().position(|c| &c.name == name));
        Ok(queued)
    }

    /// [`Recipients::messages`] then [`Recipients::queue`].
    pub fn send(
        &self,
        alerts: &AlertDb,
        report: &WeeklyReport,
        again: Again,
    ) -> Result<Vec<String>, ReportError> {
        self.queue(alerts, &self.messages(report)?, again)
    }
}

/// The mail's HTML printed as PDF and attached to `message`; when it cannot be printed, the
/// mail says why instead (the review itself still goes).
fn attach_pdf(message: &mut Message, week: &str, browser: Option<&std::path::Path>) {
    let Some(html) = &message.html else { return };
    match crate::pdf::browser(browser).and_then(|b| crate::pdf::from_html(html, &b)) {
        Ok(pdf) => message.attachments.push(Attachment::binary(
            format!("review-{week}.pdf"),
            "application/pdf",
            &pdf,
        )),
        Err(e) => message
            .mail_notes
            .push(format!("(PDF を作れませんでした / no PDF: {e})")),
    }
}

/// The largest report an email carries whole; a larger one goes as its summary and link
/// (mail servers commonly refuse messages over 10-25 MB).
pub const MAX_MAIL_BYTES: usize = 5 << 20;

/// The delivery group of a week's review: `report:2026-W48`.
pub fn group(week: &str) -> String {
    format!("report:{week}")
}

/// What is sent for `report`: the subject, the summaries as a paragraph, the report as HTML
/// with its CSV (unless too large) and, given the UI's address, a link to it.
pub fn message(
    report: &WeeklyReport,
    lang: Lang,
    link_base: Option<&str>,
) -> Result<Message, ReportError> {
    let t = catalogue(lang, report.span)?;
    let zone: chrono_tz::Tz = report.zone.parse().unwrap_or(chrono_tz::Asia::Tokyo);
    let day =
        |at: chrono::DateTime<chrono::Utc>| format_date(at.with_timezone(&zone).date_naive(), lang);
    let period = format!(
        "{} – {}",
        day(report.from),
        day(report.to - chrono::Duration::seconds(1))
    );
    let fill = |key: &str| {
        t["mail"][key]
            .as_str()
            .unwrap_or("")
            .replace("{title}", t["title"].as_str().unwrap_or(""))
            .replace("{week}", &report.week)
            .replace("{clinic}", &report.clinic)
            .replace("{period}", &period)
    };
    let html = render(report, Format::Html, lang)?;
    let csv = render(report, Format::Csv, lang)?;
    let whole = html.len() + csv.len() <= MAX_MAIL_BYTES;
    let text = format!(
        "{}\n\n{}",
        fill("intro"),
        Summaries::of(report, lang)?.paragraph()
    );
    // Said in the mail only: a chat message never carries the review.
    let mail_notes = vec![if whole {
        fill("attached")
    } else {
        fill("too_large").replace(
            "{mb}",
            &format!("{:.1}", (html.len() + csv.len()) as f64 / 1_048_576.0),
        )
    }];
    Ok(Message {
        subject: fill("subject"),
        text,
        mail_notes,
        html: whole.then_some(html),
        attachments: if whole {
            vec![Attachment {
                filename: format!("review-{}.csv", report.week),
                content_type: "text/csv; charset=utf-8".into(),
                content: csv,
                base64: false,
            }]
        } else {
            Vec::new()
        },
        link: link_base.map(|base| {
            format!(
                "{}/reports/weekly/{}",
                base.trim_end_matches('/'),
                report.week
            )
        }),
    })
}

/// Queues `message` for each of `channels` under the week's group; the channels it was
/// queued for (see [`Again`] for the others).
pub fn queue(
    alerts: &AlertDb,
    channels: &[ChannelConfig],
    week: &str,
    message: &Message,
    again: Again,
) -> Result<Vec<String>, ReportError> {
    let mut queued = Vec::new();
    for channel in channels {
        let body = channel
            .render_message(message)
            .map_err(|e| ReportError::Render(format!("channel {}: {e}", channel.name)))?;
        if alerts.queue_message(&channel.name, &group(week), &body, again)? {
            queued.push(channel.name.clone());
        }
    }
    Ok(queued)
}

/// The messages that carried (or are to carry) a week's review, oldest first.
pub fn deliveries(alerts: &AlertDb, week: &str) -> Result<Vec<Delivery>, ReportError> {
    Ok(alerts.deliveries_of(&group(week))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weekly::{AlertLine, PatientSpread};

    #[test]
    fn a_mail_without_patient_data_names_no_patient_anywhere() {
        let line = AlertLine {
            id: 7,
            rule: "sensitive_records".into(),
            severity: "high".into(),
            user: Some("n002".into()),
            first_seen: chrono::Utc::now(),
            status: "closed".into(),
            resolution: Some("allowed".into()),
            assignee: None,
            reason: Some("PAT-4242 is her mother".into()),
            age_days: 0,
        };
        let report = WeeklyReport {
            week: "2026-W48".into(),
            zone: "Asia/Tokyo".into(),
            heat: vec![vec![0; 24]; 7],
            alerts: vec![line.clone()],
            open_alerts: vec![line],
            patients: vec![PatientSpread {
                patient: "PAT-4242".into(),
                staff: 3,
                accesses: 5,
            }],
            ..WeeklyReport::default()
        };
        let m = message(&report.without_patient_data(), Lang::Ja, None).unwrap();
        let all = serde_json::to_string(&m).unwrap();
        assert!(!all.contains("PAT-4242"), "{all}");
        assert!(m.html.unwrap().contains("#1"));
        let whole = message(&report, Lang::Ja, None).unwrap();
        assert!(serde_json::to_string(&whole).unwrap().contains("PAT-4242"));
    }
}
