//! `mimamori alerts` and `mimamori rules check`.

use std::io::Write;

use alerting::db::AlertDb;

use crate::Failure;
use crate::config::Checked;
use crate::http::alert_filter;
use crate::rules_runner::alerts_db_path;

pub fn list(
    checked: &Checked,
    since: Option<&str>,
    status: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<(), Failure> {
    let filter = alert_filter(since, status, Some(limit)).map_err(Failure::Usage)?;
    let path = alerts_db_path(&checked.config.storage.data_dir);
    if !path.exists() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no alert database at {}: start `mimamori serve` (or import) with this data directory first",
            path.display()
        )));
    }
    let db =
        AlertDb::open(&path, chrono::Duration::hours(1)).map_err(|e| Failure::Runtime(e.into()))?;
    let alerts = db.list(&filter).map_err(|e| Failure::Runtime(e.into()))?;
    let mut out = std::io::stdout().lock();
    for a in &alerts {
        let line = if json {
            serde_json::to_string(a).unwrap_or_default()
        } else {
            let local = a.alert.last_seen.with_timezone(&checked.clinic.zone);
            format!(
                "#{:<5} {}  {:<8} {:<20} {:<12} x{:<3} {}: {}",
                a.id,
                local.format("%Y-%m-%d %H:%M"),
                format!("{:?}", a.alert.severity).to_lowercase(),
                a.alert.rule,
                a.status,
                a.alert.count,
                a.alert.user.as_deref().unwrap_or("-"),
                a.alert.explanation
            )
        };
        if writeln!(out, "{line}").is_err() {
            return Ok(());
        }
    }
    if !json {
        let _ = writeln!(
            out,
            "{} alert(s) (times in {})",
            alerts.len(),
            checked.clinic.zone
        );
    }
    Ok(())
}

pub fn print_rules(checked: &Checked) {
    let c = &checked.clinic;
    let d = &checked.config.detections;
    println!("rules are valid: {} ({})", c.name, c.zone);
    for day in [
        chrono::Weekday::Mon,
        chrono::Weekday::Tue,
        chrono::Weekday::Wed,
        chrono::Weekday::Thu,
        chrono::Weekday::Fri,
        chrono::Weekday::Sat,
        chrono::Weekday::Sun,
    ] {
        let hours = c.hours_text(day);
        println!(
            "  {day}: {}",
            if hours.is_empty() {
                "closed".into()
            } else {
                hours
            }
        );
    }
    println!(
        "  grace: {} min before opening and after closing",
        c.grace.num_minutes()
    );
    println!(
        "  sites: {}",
        c.sites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  roles: {}",
        c.roles
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  staff on the roster: {}", c.staff.len());
    let on = |b: bool| if b { "on" } else { "off" };
    println!("  off_hours_login: {}", on(d.off_hours_login.enabled));
    println!(
        "  access_outside_role: {}",
        on(d.access_outside_role.enabled)
    );
    println!(
        "  concurrent_sessions: {}",
        on(d.concurrent_sessions.enabled)
    );
    println!(
        "  bulk_export: {} (>= {} records at once, >= {} patients in {} min)",
        on(d.bulk_export.enabled),
        d.bulk_export.max_records,
        d.bulk_export.distinct_patients,
        d.bulk_export.window_minutes
    );
}
