//! `mimamori alerts` and `mimamori rules check`.

use alerting::db::AlertDb;

use crate::Failure;
use crate::config::Checked;
use crate::output::say;
use alerting::runner::alerts_db_path;
use web::alert_filter;

pub(crate) fn open_db(checked: &Checked) -> Result<AlertDb, Failure> {
    let path = alerts_db_path(&checked.config.storage.data_dir);
    if !path.exists() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no alert database at {}: start `mimamori serve` (or import) with this data directory first",
            path.display()
        )));
    }
    AlertDb::open(&path, chrono::Duration::hours(1)).map_err(|e| Failure::Runtime(e.into()))
}

/// Who changes an alert from the command line: the login name (the one behind sudo).
pub(crate) fn operator() -> String {
    let name = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| "unknown".into());
    format!("{name} (cli)")
}

/// The name of the account this process runs as, from /etc/passwd.
fn account_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn db_failure(e: alerting::db::AlertDbError) -> Failure {
    match e {
        alerting::db::AlertDbError::NotFound(id) => Failure::Usage(format!("no alert #{id}")),
        alerting::db::AlertDbError::Invalid(m) => Failure::Usage(m),
        e => Failure::Runtime(e.into()),
    }
}

pub fn set_status(
    checked: &Checked,
    id: i64,
    status: alerting::db::AlertStatus,
    reason: Option<&str>,
) -> Result<(), Failure> {
    let a = open_db(checked)?
        .set_status(id, status, reason, &operator())
        .map_err(db_failure)?;
    say!("alert #{} is {}: {}", a.id, a.status, a.alert.explanation);
    Ok(())
}

/// `mimamori alerts show ID`.
pub fn show(checked: &Checked, id: i64, json: bool) -> Result<(), Failure> {
    let db = open_db(checked)?;
    let a = db.get(id).map_err(db_failure)?;
    let deliveries = alerting::delivery::store::for_alert(db.conn_for_reading(), id)
        .map_err(|e| Failure::Runtime(e.into()))?;
    if json {
        let mut v = serde_json::to_value(&a).unwrap_or_default();
        v["deliveries"] = serde_json::to_value(&deliveries).unwrap_or_default();
        crate::output::say_json(&serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let zone = checked.clinic.zone;
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M");
    say!(
        "alert #{}: {} ({}), {}",
        a.id,
        a.alert.rule,
        a.alert.severity.as_str(),
        a.status
    );
    say!("  {}", a.alert.explanation);
    say!(
        "  user {}, site {}, seen {} time(s) from {} to {} ({zone})",
        a.alert.user.as_deref().unwrap_or("-"),
        a.alert.site.as_deref().unwrap_or("-"),
        a.alert.count,
        local(a.alert.first_seen),
        local(a.alert.last_seen)
    );
    // The same config and data directory as this command, so the hint works as printed.
    let mut prefix = String::from("mimamori");
    if let Some(config) = &checked.origin.0 {
        prefix.push_str(&format!(
            " --config {}",
            shell_word(&config.display().to_string())
        ));
    }
    if let Some(dir) = &checked.origin.1 {
        prefix.push_str(&format!(
            " --data-dir {}",
            shell_word(&dir.display().to_string())
        ));
    }
    for e in &a.alert.evidence {
        say!("  evidence: {prefix} search event.id:{}", e.as_str());
    }
    for c in &a.history {
        say!(
            "  {} {} by {}{}",
            local(c.at),
            c.status,
            c.by,
            c.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    // Who was told, and what an automatic response did.
    for d in &deliveries {
        say!(
            "  {} {} to {}: {}",
            local(d.sent_at.unwrap_or(d.created_at)),
            d.state.as_str(),
            d.channel,
            d.answer
                .as_deref()
                .or(d.last_error.as_deref())
                .unwrap_or("")
        );
    }
    Ok(())
}

pub fn list(
    checked: &Checked,
    since: Option<&str>,
    status: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<(), Failure> {
    let filter = alert_filter(since, status, Some(limit)).map_err(|e| Failure::Usage(e.0))?;
    let db = open_db(checked)?;
    let alerts = db.list(&filter).map_err(|e| Failure::Runtime(e.into()))?;
    for a in &alerts {
        if json {
            crate::output::say_json(&serde_json::to_string(a).unwrap_or_default());
            continue;
        }
        let line = {
            let local = a.alert.last_seen.with_timezone(&checked.clinic.zone);
            format!(
                "#{:<5} {}  {:<8} {:<20} {:<12} x{:<3} {}: {}",
                a.id,
                local.format("%Y-%m-%d %H:%M"),
                a.alert.severity.as_str(),
                a.alert.rule,
                a.status,
                a.alert.count,
                a.alert.user.as_deref().unwrap_or("-"),
                a.alert.explanation
            )
        };
        say!("{line}");
    }
    if !json {
        say!(
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
    say!("rules are valid: {} ({})", c.name, c.zone);
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
        say!(
            "  {day}: {}",
            if hours.is_empty() {
                "closed".into()
            } else {
                hours
            }
        );
    }
    say!(
        "  grace: {} min before opening and after closing",
        c.grace.num_minutes()
    );
    say!(
        "  sites: {}",
        c.sites
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    say!(
        "  roles: {}",
        c.roles
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    say!("  staff on the roster: {}", c.staff.len());
    let on = |b: bool| if b { "on" } else { "off" };
    say!("  off_hours_login: {}", on(d.off_hours_login.enabled));
    say!(
        "  access_outside_role: {}",
        on(d.access_outside_role.enabled)
    );
    say!(
        "  concurrent_sessions: {}",
        on(d.concurrent_sessions.enabled)
    );
    say!(
        "  bulk_export: {} (>= {} records at once, >= {} patients in {} min)",
        on(d.bulk_export.enabled),
        d.bulk_export.max_records,
        d.bulk_export.distinct_patients,
        d.bulk_export.window_minutes
    );
}

fn print_alert(checked: &Checked, a: &rules::Alert) {
    let local = a.last_seen.with_timezone(&checked.clinic.zone);
    say!(
        "FIRES  {:<22} {}  {}",
        a.rule,
        local.format("%Y-%m-%d %H:%M"),
        a.explanation
    );
}

/// Runs a fresh engine over events, printing what fires; returns how many alerts.
fn run_rules(
    checked: &Checked,
    only: Option<&str>,
    events: &mut dyn Iterator<Item = store::Event>,
) -> (u64, Vec<String>, rules::engine::Engine) {
    let mut engine = checked.engine();
    let filter = checked.config.windows.filter();
    let mut seen = 0u64;
    let mut fired = Vec::new();
    for event in events {
        if filter.reason(&event).is_some() {
            continue;
        }
        seen += 1;
        for alert in engine.process(&event) {
            if only.is_none_or(|r| r == alert.rule) {
                print_alert(checked, &alert);
                fired.push(alert.rule);
            }
        }
    }
    (seen, fired, engine)
}

/// Rules that did not fire, and the closest they came.
fn print_near_misses(engine: &rules::engine::Engine, only: Option<&str>, fired: &[String]) {
    for (rule, miss) in &engine.near_misses {
        // A custom rule that fired is not a near miss; a built-in detection's misses are kept
        // by kind (grace margin, exemptions, each threshold) and shown even when it fired.
        if only.is_some_and(|r| !rule.starts_with(r)) || fired.iter().any(|f| f == rule) {
            continue;
        }
        say!("CLOSE  {rule:<22} {}", miss.what);
    }
}

pub fn test(
    checked: &Checked,
    path: &std::path::Path,
    format: ingest::import::Format,
) -> Result<(), Failure> {
    let parsers = checked.parsers();
    let mut events = Vec::new();
    let mut rejects = Vec::new();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let read = parsers
        .read_file(path, format, &count, &mut |item| match item {
            ingest::import::Item::Record { event, .. } => events.push(event),
            ingest::import::Item::Reject { location, reason } => {
                rejects.push(format!("{location}: {reason}"))
            }
            ingest::import::Item::Filtered { .. } => {}
        })
        .map_err(|e| Failure::Usage(e.0))?;
    if let Err(e) = read.result {
        rejects.push(e.0);
    }
    // Rules work on event time: feed the file in time order.
    events.sort_by_key(|e| e.timestamp);
    let (seen, fired, engine) = run_rules(checked, None, &mut events.into_iter());
    print_near_misses(&engine, None, &fired);
    for r in rejects.iter().take(10) {
        say!("SKIP   {r}");
    }
    say!(
        "{seen} events ({}), {} alert(s), {} record(s) unreadable",
        read.format,
        fired.len(),
        rejects.len()
    );
    Ok(())
}

/// Runs the rules as configured now over what the log holds since `from`, as an import or a
/// live run would have (events in event-time order, alerts continued within the dedup window),
/// into a scratch alert database; the real one is not touched.
pub fn backtest(checked: &Checked, from: &str, rule: Option<&str>) -> Result<(), Failure> {
    let from = store::parse_time_bound(from, chrono::Utc::now())
        .map_err(|e| Failure::Usage(format!("--from: {e}")))?;
    if let Some(r) = rule
        && rules::RuleId::from_name(r).is_none_or(|id| rules::RuleId::SYSTEM.contains(&id))
        && !checked.config.custom_rules.iter().any(|c| c.name == r)
    {
        return Err(Failure::Usage(format!(
            "--rule: no rule named {r:?}; rules are {} and the custom rules in the config",
            rules::RuleId::DETECTIONS.map(|r| r.as_str()).join(", ")
        )));
    }
    let data_dir = &checked.config.storage.data_dir;
    if !data_dir.join("wal").exists() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "no event log in {}: nothing stored yet",
            data_dir.display()
        )));
    }
    let window = chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes));
    let mut scratch = alerting::db::AlertDb::open(std::path::Path::new(":memory:"), window)
        .map_err(|e| Failure::Runtime(e.into()))?;
    let mut engine = checked.engine();
    let mut seen = 0u64;
    alerting::runner::replay_sorted(data_dir, 1, 0, &mut |_| {}, &mut |chunk| {
        let mut alerts = Vec::new();
        for (_, event) in chunk.iter() {
            // Earlier events build the windows a live run would have had; only what
            // happened since `from` may fire.
            let raised = engine.process(event);
            if event.timestamp >= from {
                seen += 1;
                alerts.extend(raised);
            }
        }
        alerts.retain(|a| rule.is_none_or(|r| r == a.rule));
        scratch.record_all(&alerts)?;
        Ok(())
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    let mut fired = scratch
        .list(&alerting::db::AlertFilter {
            since: None,
            status: None,
            limit: usize::MAX,
            ..Default::default()
        })
        .map_err(|e| Failure::Runtime(e.into()))?;
    fired.sort_by_key(|a| a.alert.first_seen);
    for stored in &fired {
        print_alert(checked, &stored.alert);
    }
    let names: Vec<String> = fired.iter().map(|a| a.alert.rule.clone()).collect();
    print_near_misses(&engine, rule, &names);
    say!(
        "{seen} stored events since {}: {} alert(s) would have been raised{}",
        from.with_timezone(&checked.clinic.zone)
            .format("%Y-%m-%d %H:%M"),
        fired.len(),
        rule.map(|r| format!(" by {r}")).unwrap_or_default()
    );
    Ok(())
}

/// A path as a shell word: quoted when it holds anything but plain characters.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_alphanumeric() || "/._-+:=".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
