//! `mimamori report weekly` and `monthly`: the access review from the stored events and the
//! alert database, while the server runs or not; and the schedule that makes and sends them.

use std::path::Path;

use alerting::delivery::store::Again;
use anyhow::Context;
use report::archive::{ArchiveError, ReportDb};
use report::{Format, Lang, Period, Span, WeeklyReport, render_bytes};

use crate::Failure;
use crate::config::Checked;

pub fn review(
    checked: &Checked,
    span: Span,
    week: Option<&str>,
    format: &str,
    lang: &str,
    out: Option<&Path>,
    send: bool,
) -> Result<(), Failure> {
    let usage = |e: report::ReportError| Failure::Usage(e.to_string());
    let zone = checked.clinic.zone;
    let week = match week {
        Some(text) => Period::parse(text, zone).map_err(usage)?,
        None => Period::previous(chrono::Utc::now(), zone, span),
    };
    if week.span != span {
        return Err(Failure::Usage(match span {
            Span::Week => format!("--week: an ISO week like 2026-W48, not {}", week.name()),
            Span::Month => format!("--month: a month like 2026-11, not {}", week.name()),
        }));
    }
    if week.range().1 > chrono::Utc::now() {
        return Err(Failure::Usage(format!(
            "{} is not over yet: a review is made of a finished period",
            week.name()
        )));
    }
    let format: Format = format
        .parse()
        .map_err(|e: report::ReportError| Failure::Usage(format!("--format: {e}")))?;
    let lang: Lang = lang
        .parse()
        .map_err(|e: report::ReportError| Failure::Usage(format!("--lang: {e}")))?;
    let data_dir = &checked.config.storage.data_dir;
    let browser = checked.config.report.browser.as_deref();
    let run = || -> anyhow::Result<()> {
        let index = store::EventIndex::open_read_only(data_dir)
            .with_context(|| format!("no event index in {}", data_dir.display()))?;
        let alerts_path = alerting::runner::alerts_db_path(data_dir);
        let alerts = if alerts_path.exists() {
            Some(alerting::db::AlertDb::open(
                &alerts_path,
                chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes)),
            )?)
        } else {
            None
        };
        let mut sources = report::weekly::Sources {
            index: &index,
            alerts: alerts.as_ref(),
            clinic: &checked.clinic,
            archive: None,
            signoff_days: 0,
            dormant_days: i64::from(checked.config.report.dormant_days),
            appointments: checked.appointments.as_ref(),
        };
        if !send {
            let built = WeeklyReport::build(&sources, week, chrono::Utc::now())?;
            return write(&render_bytes(&built, format, lang, browser)?, out);
        }
        // Sent: the copy kept (the one the UI shows and a sign-off refers to).
        let Some(alerts) = alerts.as_ref() else {
            anyhow::bail!(
                "no alert database in {}: start `mimamori serve` once, with the report channels configured",
                data_dir.display()
            );
        };
        let archive = report::archive::ReportDb::open(&report::archive::reports_db_path(data_dir))?;
        sources.archive = Some(&archive);
        sources.signoff_days = i64::from(checked.config.report.signoff_days);
        let kept = kept_or_made(&archive, &sources, week)?;
        let recipients = checked.review_recipients();
        if recipients.channels.is_empty() {
            anyhow::bail!(
                "no channel to send to: [report] channels names none, or no email or chat channel is configured"
            );
        }
        let queued = recipients.send(alerts, &kept, Again::UnlessPending)?;
        if let Some(path) = out {
            write(&render_bytes(&kept, format, lang, browser)?, Some(path))?;
        }
        if queued.is_empty() {
            eprintln!(
                "{}: every report channel has this review waiting to be sent already",
                kept.week
            );
        } else {
            eprintln!(
                "{}: queued for {} (sent by the running server; see `mimamori alerts deliveries`)",
                kept.week,
                queued.join(", ")
            );
        }
        Ok(())
    };
    run().map_err(Failure::Runtime)
}

fn write(bytes: &[u8], out: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            Ok(stdout.flush()?)
        }
    }
}

/// The review of `week` as kept, made and kept first if it is not.
fn kept_or_made(
    archive: &ReportDb,
    sources: &report::weekly::Sources<'_>,
    week: Period,
) -> anyhow::Result<WeeklyReport> {
    match archive.get(&week.name()) {
        Ok((kept, _)) => return Ok(kept),
        Err(ArchiveError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let built = WeeklyReport::build(sources, week, chrono::Utc::now())?;
    archive.keep(&built)?;
    Ok(archive.get(&week.name())?.0)
}

/// Weeks (and months) before the latest due whose missing review the schedule still makes and
/// sends (the appliance was off at the moment).
const CATCH_UP_WEEKS: i64 = 4;
const CATCH_UP_MONTHS: i64 = 2;

/// The schedule's stage in `/healthz`.
pub const STAGE: &str = "weekly-review";

/// Makes the weekly review when it is due (`[report] weekly_day`, `weekly_time`, clinic time)
/// and keeps it, unless it is kept already; a failure is logged and tried again next minute.
pub async fn schedule(
    checked: &Checked,
    index: store::EventIndex,
    archive: std::sync::Arc<report::archive::ReportDb>,
    reloader: Option<std::sync::Arc<alerting::runner::Reloader>>,
    health: store::Health,
) {
    let Ok(schedule) = checked.config.report.check() else {
        return std::future::pending().await;
    };
    let data_dir = checked.config.storage.data_dir.clone();
    let dedup = chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes));
    let days = i64::from(checked.config.report.signoff_days);
    let dormant_days = checked.config.report.dormant_days;
    let schedule_file = checked.appointments.clone().map(std::sync::Arc::new);
    let started = std::sync::Arc::new(checked.clinic.clone());
    let recipients = checked.review_recipients();
    let (weekly, monthly) = (checked.config.report.weekly, checked.config.report.monthly);
    // The periods whose review was made or found, and queued for the channels, in this run
    // (once per run is enough: the queue itself refuses a second copy).
    let mut done: Vec<String> = Vec::new();
    loop {
        let clinic = reloader.as_ref().map_or(started.clone(), |r| r.clinic());
        let (index, archive) = (index.clone(), archive.clone());
        let (data_dir, recipients, handled) = (data_dir.clone(), recipients.clone(), done.clone());
        let appointments = schedule_file.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now();
            // The periods due, and those missed while the appliance was off (a few back, and
            // only those it was watching for: over after it first kept a review).
            let since = archive.watching_since().unwrap_or(now);
            let mut due = Vec::new();
            let mut spans = Vec::new();
            if weekly {
                spans.push((schedule.due(now, clinic.zone), CATCH_UP_WEEKS));
            }
            if monthly {
                spans.push((schedule.due_month(now, clinic.zone), CATCH_UP_MONTHS));
            }
            for (latest, back) in spans {
                due.push(latest);
                due.extend(
                    (1..=back)
                        .map(|n| latest.back(n))
                        .filter(|p| p.range().1 > since),
                );
            }
            let mut results = Vec::new();
            for period in due {
                let name = period.name();
                let made_before = archive.has(&name).unwrap_or(false);
                if made_before && handled.contains(&name) {
                    results.push((name, Ok((false, Vec::new()))));
                    continue;
                }
                let one = || -> anyhow::Result<(bool, Vec<String>)> {
                    let alerts = alerting::db::AlertDb::open(
                        &alerting::runner::alerts_db_path(&data_dir),
                        dedup,
                    )?;
                    let sources = report::weekly::Sources {
                        index: &index,
                        alerts: Some(&alerts),
                        clinic: &clinic,
                        archive: Some(&archive),
                        signoff_days: days,
                        dormant_days: i64::from(dormant_days),
                        appointments: appointments.as_deref(),
                    };
                    let kept = kept_or_made(&archive, &sources, period)?;
                    // Periods over before this appliance kept reviews are not mailed (an
                    // install, or a restore, does not send reviews of the past).
                    let queued = if period.range().1 > archive.watching_since()? {
                        recipients.send(&alerts, &kept, Again::Never)?
                    } else {
                        Vec::new()
                    };
                    Ok((!made_before, queued))
                };
                results.push((name, one()));
            }
            results
        })
        .await;
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, "the scheduled review's task failed");
                Vec::new()
            }
        };
        done.clear();
        let mut failed = None;
        for (period, result) in results {
            let kind = if period.contains('W') {
                "weekly"
            } else {
                "monthly"
            };
            match result {
                Ok((made, queued)) => {
                    if made {
                        tracing::info!(week = %period, "the {kind} review is made and kept");
                    }
                    if !queued.is_empty() {
                        tracing::info!(week = %period, channels = %queued.join(", "), "the {kind} review is queued for its channels");
                    }
                    done.push(period);
                }
                Err(e) => {
                    tracing::warn!(week = %period, error = %e, "the {kind} review cannot be made or sent; trying again in a minute");
                    failed = Some(format!(
                        "the {kind} review of {period} cannot be made or sent: {e}"
                    ));
                }
            }
        }
        match failed {
            Some(why) => health.degraded(STAGE, &why),
            None => health.running(STAGE),
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}
