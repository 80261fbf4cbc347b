//! `mimamori report weekly`: the weekly access review from the stored events and the alert
//! database, while the server runs or not.

use std::path::Path;

use anyhow::Context;
use report::{Format, Lang, Week, WeeklyReport};

use crate::Failure;
use crate::config::Checked;

pub fn weekly(
    checked: &Checked,
    week: Option<&str>,
    format: &str,
    lang: &str,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let usage = |e: report::ReportError| Failure::Usage(e.to_string());
    let zone = checked.clinic.zone;
    let week = match week {
        Some(text) => Week::parse(text, zone).map_err(usage)?,
        None => Week::previous(chrono::Utc::now(), zone),
    };
    let format: Format = format
        .parse()
        .map_err(|e: report::ReportError| Failure::Usage(format!("--format: {e}")))?;
    let lang: Lang = lang
        .parse()
        .map_err(|e: report::ReportError| Failure::Usage(format!("--lang: {e}")))?;
    let data_dir = &checked.config.storage.data_dir;
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
        let sources = report::weekly::Sources {
            index: &index,
            alerts: alerts.as_ref(),
            clinic: &checked.clinic,
            archive: None,
            signoff_days: 0,
        };
        let built = WeeklyReport::build(&sources, week, chrono::Utc::now())?;
        let text = report::render(&built, format, lang)?;
        match out {
            Some(path) => std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?,
            None => print!("{text}"),
        }
        Ok(())
    };
    run().map_err(Failure::Runtime)
}

/// Makes the weekly review when it is due (`[report] weekly_day`, `weekly_time`, clinic time)
/// and keeps it, unless it is kept already; a failure is logged and tried again next minute.
pub async fn schedule(
    checked: &Checked,
    index: store::EventIndex,
    archive: std::sync::Arc<report::archive::ReportDb>,
    reloader: Option<std::sync::Arc<alerting::runner::Reloader>>,
) {
    let Ok(schedule) = checked.config.report.check() else {
        return std::future::pending().await;
    };
    let data_dir = checked.config.storage.data_dir.clone();
    let dedup = chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes));
    let days = i64::from(checked.config.report.signoff_days);
    let started = std::sync::Arc::new(checked.clinic.clone());
    loop {
        let clinic = reloader.as_ref().map_or(started.clone(), |r| r.clinic());
        let (index, archive) = (index.clone(), archive.clone());
        let data_dir = data_dir.clone();
        let made = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<String>> {
            let now = chrono::Utc::now();
            let week = schedule.due(now, clinic.zone);
            match archive.get(&week.name()) {
                Ok(_) => return Ok(None),
                Err(report::archive::ArchiveError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let alerts =
                alerting::db::AlertDb::open(&alerting::runner::alerts_db_path(&data_dir), dedup)?;
            let sources = report::weekly::Sources {
                index: &index,
                alerts: Some(&alerts),
                clinic: &clinic,
                archive: Some(&archive),
                signoff_days: days,
            };
            let built = WeeklyReport::build(&sources, week, now)?;
            archive.keep(&built)?;
            Ok(Some(week.name()))
        })
        .await;
        match made {
            Ok(Ok(Some(week))) => tracing::info!(week, "the weekly review is made and kept"),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the weekly review cannot be made; trying again in a minute")
            }
            Err(e) => tracing::warn!(error = %e, "the weekly review's task failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}
