//! `mimamori alerts deliveries`, `mimamori alerts silence ...` and `mimamori channels ...`:
//! what was sent where, muting, and trying a channel by hand.

use alerting::channels::{Channel, Notice, SendError};
use alerting::db::AlertDbError;
use alerting::delivery::store;
use alerting::document::AlertDocument;
use alerting::silences::Silence;
use anyhow::Context;

use crate::Failure;
use crate::config::Checked;
use crate::output::printable;

fn open(checked: &Checked) -> Result<alerting::db::AlertDb, Failure> {
    crate::alerts::open_db(checked)
}

fn runtime(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(anyhow::anyhow!("{e}"))
}

/// What `alerts deliveries` shows.
pub struct DeliveryView<'a> {
    pub failed: bool,
    pub channel: Option<&'a str>,
    pub limit: usize,
    pub json: bool,
    pub retry: Option<i64>,
}

pub fn deliveries(checked: &Checked, view: DeliveryView<'_>) -> Result<(), Failure> {
    let db = open(checked)?;
    let conn = db.conn_for_reading();
    if let Some(id) = view.retry {
        return if store::retry(conn, id).map_err(runtime)? {
            println!("delivery {id} is queued again; the running service sends it");
            Ok(())
        } else {
            Err(Failure::Usage(format!(
                "no dead delivery {id} (see --failed)"
            )))
        };
    }
    let list = store::list(conn, view.channel, view.failed, view.limit).map_err(runtime)?;
    for d in &list {
        if view.json {
            crate::output::say_json(&serde_json::to_string(d).unwrap_or_default());
            continue;
        }
        let alerts: Vec<String> = d
            .items
            .iter()
            .map(|i| format!("#{} {}", i.alert_id, i.change.as_str()))
            .collect();
        let when = d
            .sent_at
            .unwrap_or(d.next_attempt_at)
            .with_timezone(&checked.timezone);
        crate::output::say!(
            "{:>6}  {:<9} {:<16} {}  tries {}  {}  {}",
            d.id,
            d.state.as_str(),
            printable(&d.channel),
            when.format("%Y-%m-%d %H:%M:%S"),
            d.attempts,
            alerts.join(", "),
            // A sent message shows what the receiver said; others, why they are not sent.
            printable(match d.state {
                store::State::Sent => d.answer.as_deref().unwrap_or(""),
                _ => d
                    .last_error
                    .as_deref()
                    .or(d.answer.as_deref())
                    .unwrap_or(""),
            })
        );
    }
    if !view.json {
        eprintln!(
            "{} deliveries shown{}",
            list.len(),
            if view.failed {
                " (dead only; `--retry ID` queues one again)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `alerts silence add`: the matcher, how long, why.
pub struct NewSilence {
    pub rule: Option<String>,
    pub user: Option<String>,
    pub site: Option<String>,
    pub duration: String,
    pub reason: String,
}

pub fn add_silence(checked: &Checked, new: NewSilence) -> Result<(), Failure> {
    let now = chrono::Utc::now();
    let ends = alerting::silences::parse_duration(&new.duration)
        .map(|d| now + d)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--for: a duration such as 30m, 2h or 3d, not {:?}",
                new.duration
            ))
        })?;
    let silence = Silence {
        id: 0,
        rule: new.rule,
        user: new.user,
        site: new.site,
        starts_at: now,
        ends_at: ends,
        created_by: crate::alerts::operator(),
        comment: new.reason,
    };
    let db = open(checked)?;
    let rules = crate::config::rule_names(&checked.custom_rules);
    let sites: Vec<String> = checked
        .config
        .sites
        .iter()
        .map(|s| s.name.clone())
        .collect();
    match alerting::silences::add(&db, &silence, &rules, &sites) {
        Ok(s) => {
            println!(
                "silence {} until {}: alerts matching it are recorded but not sent",
                s.id,
                s.ends_at
                    .with_timezone(&checked.timezone)
                    .format("%Y-%m-%d %H:%M")
            );
            Ok(())
        }
        Err(AlertDbError::Invalid(m)) => Err(Failure::Usage(m)),
        Err(e) => Err(runtime(e)),
    }
}

pub fn list_silences(checked: &Checked, all: bool) -> Result<(), Failure> {
    let db = open(checked)?;
    let list = alerting::silences::list(&db, !all).map_err(runtime)?;
    for s in &list {
        let part = |p: &Option<String>| {
            p.as_deref()
                .map_or("*".to_owned(), |v| printable(v).into_owned())
        };
        crate::output::say!(
            "{:>4}  rule={} user={} site={}  {} – {}  by {}: {}",
            s.id,
            part(&s.rule),
            part(&s.user),
            part(&s.site),
            s.starts_at
                .with_timezone(&checked.timezone)
                .format("%Y-%m-%d %H:%M"),
            s.ends_at
                .with_timezone(&checked.timezone)
                .format("%Y-%m-%d %H:%M"),
            printable(&s.created_by),
            printable(&s.comment)
        );
    }
    eprintln!(
        "{} silences{}",
        list.len(),
        if all { "" } else { " active" }
    );
    Ok(())
}

pub fn expire_silence(checked: &Checked, id: i64) -> Result<(), Failure> {
    match alerting::silences::expire(&open(checked)?, id) {
        Ok(()) => {
            println!("silence {id} ended");
            Ok(())
        }
        Err(AlertDbError::Invalid(m)) => Err(Failure::Usage(m)),
        Err(e) => Err(runtime(e)),
    }
}

pub fn list_channels(checked: &Checked) -> Result<(), Failure> {
    let channels = &checked.config.channels;
    if channels.is_empty() {
        println!("no channels: add [[channels]] to the config (see `mimamori config default`)");
        return Ok(());
    }
    let db = open(checked)?;
    let conn = db.conn_for_reading();
    for c in channels {
        let (queued, oldest, dead) = store::queue(conn, &c.name).map_err(runtime)?;
        let (last_sent, last_error) = store::last_outcome(conn, &c.name).map_err(runtime)?;
        let mut routes = vec![format!("severity >= {}", c.min_severity.as_str())];
        if !c.rules.is_empty() {
            routes.push(format!("rules {}", c.rules.join(",")));
        }
        if !c.sites.is_empty() {
            routes.push(format!("sites {}", c.sites.join(",")));
        }
        crate::output::say!(
            "{:<16} {:<9} {:<8} {}; queued {queued}{}, dead {dead}; last sent {}{}{}",
            c.name,
            c.kind.as_str(),
            if c.enabled { "enabled" } else { "disabled" },
            routes.join(", "),
            oldest.map_or(String::new(), |t| format!(
                " (oldest {} s)",
                (chrono::Utc::now() - t).num_seconds()
            )),
            last_sent.map_or("never".into(), |t| t
                .with_timezone(&checked.timezone)
                .format("%Y-%m-%d %H:%M")
                .to_string()),
            if c.include_patient_data {
                "; includes patient data"
            } else {
                ""
            },
            last_error.map_or(String::new(), |e| format!(
                "; last error: {}",
                printable(&e)
            ))
        );
    }
    Ok(())
}

/// Sends a test message on one channel now and prints what the receiver answered.
pub fn test_channel(checked: &Checked, name: &str) -> Result<(), Failure> {
    let config = checked
        .config
        .channels
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = checked
                .config
                .channels
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            Failure::Usage(format!(
                "no channel {name:?}; the config has: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ))
        })?;
    let mut channel =
        Channel::new(config.clone()).map_err(|e| Failure::Usage(format!("channel {name}: {e}")))?;
    let origin = checked.config.delivery.origin();
    let notice = Notice {
        key: format!("mimamori-test-{}", chrono::Utc::now().timestamp_millis()),
        alerts: vec![AlertDocument::test(&origin)],
        digest: false,
        storm: false,
        timezone: checked.config.delivery.timezone.name().to_owned(),
    };
    let body = channel
        .render(&notice)
        .map_err(|e| Failure::Usage(format!("channel {name}: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("no async runtime")
        .map_err(Failure::Runtime)?;
    match rt.block_on(channel.send(&notice.key, &body)) {
        Ok(sent) => {
            println!(
                "{name}: sent; the receiver answered: {}",
                printable(&sent.0)
            );
            Ok(())
        }
        Err(SendError::Retry { reason, .. }) => Err(Failure::Runtime(anyhow::anyhow!(
            "{name}: not delivered (would be retried): {reason}"
        ))),
        Err(SendError::Permanent(reason)) => Err(Failure::Runtime(anyhow::anyhow!(
            "{name}: refused (would not be retried): {reason}"
        ))),
    }
}
