//! Routing: each change in the outbox, in order, becomes a delivery (or joins one) per channel
//! that takes it, in one transaction with the position reached, so a restart neither loses
//! nor repeats a change. Grouping follows Alertmanager: a new group waits `group_wait` to
//! collect related alerts; a group told recently gets its updates at most every
//! `group_interval`; silences and quiet hours hold alerts without losing them.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::DeliveryConfig;
use super::store::{Item, State};
use crate::channels::{ChannelConfig, Kind, parse_quiet_hours};
use crate::db::StoredAlert;
use crate::outbox::{Change, Noted};
use crate::silences::Silence;

/// How one change is routed to one channel.
pub(crate) fn route(
    tx: &Transaction<'_>,
    config: &DeliveryConfig,
    channel: &ChannelConfig,
    noted: &Noted,
    alert: &StoredAlert,
    silences: &[Silence],
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<State>> {
    let a = &alert.alert;
    // New alerts go before status changes, more severe before less (a backlog of notices
    // never holds up a new critical alert).
    let rank = a.severity as i64;
    if !channel.routes(&a.rule, a.severity, a.site.as_deref()) {
        return Ok(None);
    }
    // An automatic response runs once, when the alert is raised.
    if channel.kind == Kind::Command && noted.change != Change::Raised {
        return Ok(None);
    }
    let item = Item {
        alert_id: alert.id,
        change: noted.change,
        by: noted.by.clone(),
    };
    if noted.change.is_status() {
        // Told only to the channels that heard of the alert.
        let told: bool = tx
            .query_row(
                "SELECT 1 FROM told WHERE channel = ?1 AND alert_id = ?2",
                params![channel.name, alert.id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if !told || !config.notify_status_changes {
            return Ok(None);
        }
        // One status message per alert per group_interval: a message not yet sent takes the
        // newest change instead of another message.
        let mut group = format!("status:{}", alert.id);
        let mut open = open_group(tx, channel, &group)?;
        // Closing a flood's hundred alerts is a few messages, not a hundred.
        if open.is_none() && started(tx, config, channel, now, true)? {
            group = STATUS_STORM.to_owned();
            open = open_group(tx, channel, &group)?;
        }
        if let Some((id, items)) = open {
            let mut items: Vec<Item> = serde_json::from_str(&items).unwrap_or_default();
            let fits = match items.iter().position(|i| i.alert_id == alert.id) {
                Some(at) => {
                    items[at] = item.clone();
                    true
                }
                None if items.len() < MAX_GROUP_ITEMS => {
                    items.push(item.clone());
                    true
                }
                // Full: a new message of the group, due when this one would have been.
                None => false,
            };
            if fits {
                tx.execute(
                    "UPDATE deliveries SET items = ?2, priority = MAX(priority, ?3) WHERE id = ?1",
                    params![
                        id,
                        serde_json::to_string(&items).unwrap_or_default(),
                        rank * 2
                    ],
                )?;
                return Ok(Some(State::Pending));
            }
        }
        let interval = Duration::seconds(config.group_interval_seconds as i64);
        let due = match last_sent(tx, channel, &group)? {
            Some(t) if t + interval > now => t + interval,
            _ => now,
        };
        insert(tx, channel, &group, &[item], State::Pending, due, rank * 2)?;
        return Ok(Some(State::Pending));
    }
    if silences.iter().any(|s| s.matches(a, now)) {
        insert(
            tx,
            channel,
            &group_key(config, alert),
            &[item],
            State::Silenced,
            now,
            rank * 2 + 1,
        )?;
        return Ok(Some(State::Silenced));
    }
    tx.execute(
        "INSERT INTO told (channel, alert_id, at) VALUES (?1, ?2, ?3)
         ON CONFLICT(channel, alert_id) DO UPDATE SET at = excluded.at",
        params![channel.name, alert.id, now.to_rfc3339()],
    )?;
    if channel.kind == Kind::Command {
        // A flood (a sender spoofing many accounts) must not disable accounts in bulk: past
        // storm_limit runs within group_interval, responses are recorded, not run.
        if storming(tx, config, channel, now)? {
            insert(
                tx,
                channel,
                &format!("response:{}", alert.id),
                &[item],
                State::Dead,
                now,
                rank * 2 + 1,
            )?;
            tx.execute(
                "UPDATE deliveries SET last_error = ?1 WHERE id = last_insert_rowid()",
                [format!(
                    "not run: more than {} automatic responses within {} s (a flood); run it by hand if it is wanted",
                    config.storm_limit,
                    config.group_interval_seconds.max(60)
                )],
            )?;
            return Ok(Some(State::Dead));
        }
        // At once, one run per alert: no grouping, no quiet hours.
        insert(
            tx,
            channel,
            &format!("response:{}", alert.id),
            &[item],
            State::Pending,
            now,
            rank * 2 + 1,
        )?;
        return Ok(Some(State::Pending));
    }
    let quiet_until = quiet_end(channel, &config.timezone, now)
        .filter(|_| a.severity < channel.quiet_min_severity);
    let mut group = match quiet_until {
        Some(_) => "digest".to_owned(),
        None => group_key(config, alert),
    };
    let mut open = open_group(tx, channel, &group)?;
    // A storm (many new groups at once: a flood of accounts, a spoofing sender) is sent as
    // a few messages of many alerts, not one message each.
    if open.is_none() && quiet_until.is_none() && storming(tx, config, channel, now)? {
        group = STORM.to_owned();
        open = open_group(tx, channel, &group)?;
    }
    // A group not yet rendered takes the alert (once: it is shown as it stands when sent).
    if let Some((id, items)) = open {
        let mut items: Vec<Item> = serde_json::from_str(&items).unwrap_or_default();
        if items.iter().any(|i| i.alert_id == alert.id) {
            return Ok(Some(State::Pending)); // shown as it stands when sent
        }
        if items.len() < MAX_GROUP_ITEMS {
            items.push(item);
            tx.execute(
                "UPDATE deliveries SET items = ?2, priority = MAX(priority, ?3) WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&items).unwrap_or_default(),
                    rank * 2 + 1
                ],
            )?;
            return Ok(Some(State::Pending));
        }
    }
    let due = match quiet_until {
        Some(end) => end,
        None => {
            let interval = Duration::seconds(config.group_interval_seconds as i64);
            match last_sent(tx, channel, &group)? {
                Some(t) if t + interval > now => t + interval,
                _ => now + Duration::seconds(config.group_wait_seconds as i64),
            }
        }
    };
    insert(
        tx,
        channel,
        &group,
        &[item],
        State::Pending,
        due,
        rank * 2 + 1,
    )?;
    Ok(Some(State::Pending))
}

/// The group of alerts sent together during a storm.
pub(crate) const STORM: &str = "storm";

/// The group of status changes sent together when many alerts change at once.
pub(crate) const STATUS_STORM: &str = "status:storm";

/// Whether the channel has started `storm_limit` groups within the last `group_interval`:
/// of new alerts (and responses), or of status changes (`status`).
fn storming(
    tx: &Transaction<'_>,
    config: &DeliveryConfig,
    channel: &ChannelConfig,
    now: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    started(tx, config, channel, now, false)
}

fn started(
    tx: &Transaction<'_>,
    config: &DeliveryConfig,
    channel: &ChannelConfig,
    now: DateTime<Utc>,
    status: bool,
) -> rusqlite::Result<bool> {
    if config.storm_limit == 0 {
        return Ok(false);
    }
    let since = now - Duration::seconds(config.group_interval_seconds.max(60) as i64);
    let recent: i64 = tx.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE channel = ?1 AND created_at >= ?2
         AND state != 'silenced' AND group_key NOT LIKE 'reminder:%' AND group_key NOT LIKE 'report:%'
         AND group_key != ?3 AND group_key != ?4
         AND (group_key LIKE 'status:%') = ?5",
        params![
            channel.name,
            since.to_rfc3339(),
            STORM,
            STATUS_STORM,
            status
        ],
        |r| r.get(0),
    )?;
    Ok(recent >= i64::from(config.storm_limit))
}

/// The group's message not yet rendered (it can still take alerts): its id and items.
fn open_group(
    tx: &Transaction<'_>,
    channel: &ChannelConfig,
    group: &str,
) -> rusqlite::Result<Option<(i64, String)>> {
    tx.query_row(
        "SELECT id, items FROM deliveries
         WHERE channel = ?1 AND group_key = ?2 AND state = 'pending' AND body IS NULL
         ORDER BY id DESC LIMIT 1",
        params![channel.name, group],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// When the group's last message went out (or, being sent now, was due).
fn last_sent(
    tx: &Transaction<'_>,
    channel: &ChannelConfig,
    group: &str,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let t: Option<String> = tx.query_row(
        "SELECT MAX(COALESCE(sent_at, CASE WHEN state = 'pending' AND body IS NOT NULL
             THEN due_at END)) FROM deliveries WHERE channel = ?1 AND group_key = ?2",
        params![channel.name, group],
        |r| r.get(0),
    )?;
    Ok(t.map(crate::db::parse_time))
}

/// Alerts in one message, at most; more start another.
const MAX_GROUP_ITEMS: usize = 50;

fn insert(
    tx: &Transaction<'_>,
    channel: &ChannelConfig,
    group: &str,
    items: &[Item],
    state: State,
    due: DateTime<Utc>,
    priority: i64,
) -> rusqlite::Result<()> {
    let now = Utc::now().to_rfc3339();
    tx.execute(
        "INSERT INTO deliveries (channel, group_key, items, state, created_at, due_at, next_attempt_at, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
        params![
            channel.name,
            group,
            serde_json::to_string(items).unwrap_or_default(),
            state.as_str(),
            now,
            due.to_rfc3339(),
            priority
        ],
    )
    .map(|_| ())
}

/// The configured group key of an alert: `rule=..|user=..|site=..`.
fn group_key(config: &DeliveryConfig, alert: &StoredAlert) -> String {
    let a = &alert.alert;
    config
        .group_by
        .iter()
        .map(|f| {
            let v = match f.as_str() {
                "rule" => a.rule.clone(),
                "user" => a.user.clone().unwrap_or_default().to_lowercase(),
                "site" => a.site.clone().unwrap_or_default(),
                "severity" => a.severity.as_str().to_owned(),
                _ => alert.id.to_string(),
            };
            format!("{f}={v}")
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// When the quiet hours around `now` end, if `now` is in them.
pub(crate) fn quiet_end(
    channel: &ChannelConfig,
    zone: &chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (start, end) = parse_quiet_hours(channel.quiet_hours.as_deref()?)?;
    let local = now.with_timezone(zone);
    let minute = chrono::Timelike::hour(&local) * 60 + chrono::Timelike::minute(&local);
    let inside = if start < end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    };
    if !inside {
        return None;
    }
    let end_time = NaiveTime::from_hms_opt(end / 60, end % 60, 0)?;
    let mut day = local.date_naive();
    if minute >= end {
        day = day.succ_opt()?;
    }
    zone.from_local_datetime(&day.and_time(end_time))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Reminders: open alerts told to a channel longer than `repeat_interval` ago are told again.
pub(crate) fn reminders(
    tx: &Transaction<'_>,
    channel: &ChannelConfig,
    every: Duration,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let before = (now - every).to_rfc3339();
    let due: Vec<i64> = {
        let mut stmt = tx.prepare(
            "SELECT t.alert_id FROM told t JOIN alerts a ON a.id = t.alert_id
             WHERE t.channel = ?1 AND t.at < ?2 AND a.status = 'open' LIMIT 100",
        )?;
        let rows = stmt.query_map(params![channel.name, before], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for id in &due {
        let item = Item {
            alert_id: *id,
            change: Change::Reminder,
            by: None,
        };
        insert(
            tx,
            channel,
            &format!("reminder:{id}"),
            &[item],
            State::Pending,
            now,
            0,
        )?;
        tx.execute(
            "UPDATE told SET at = ?3 WHERE channel = ?1 AND alert_id = ?2",
            params![channel.name, id, now.to_rfc3339()],
        )?;
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_across_midnight_end_the_next_morning() {
        let channel: ChannelConfig = toml::from_str(
            "name = \"c\"\nkind = \"slack\"\nurl = \"http://x\"\nquiet_hours = \"20:00-08:00\"",
        )
        .unwrap();
        let tokyo = chrono_tz::Asia::Tokyo;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 22:40 JST: held until 08:00 the next day.
        assert_eq!(
            quiet_end(&channel, &tokyo, at("2026-11-24T13:40:00Z")),
            Some(at("2026-11-24T23:00:00Z"))
        );
        // 03:00 JST: until 08:00 the same day.
        assert_eq!(
            quiet_end(&channel, &tokyo, at("2026-11-24T18:00:00Z")),
            Some(at("2026-11-24T23:00:00Z"))
        );
        // 12:00 JST: not quiet.
        assert_eq!(
            quiet_end(&channel, &tokyo, at("2026-11-25T03:00:00Z")),
            None
        );
    }
}
