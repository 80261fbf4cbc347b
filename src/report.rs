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
