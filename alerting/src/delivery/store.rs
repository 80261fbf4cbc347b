//! The `deliveries` table: one row per message to one channel (a group of alert changes), with
//! its state, attempts and the receiver's answer. Read by the workers, `alerts deliveries` and
//! `GET /api/v1/deliveries`.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::db::parse_time;
use crate::outbox::Change;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its time (group wait, quiet hours) or for another attempt.
    Pending,
    /// The receiver took it.
    Sent,
    /// Given up on: a permanent refusal or past `give_up_hours`; shown by `--failed`.
    Dead,
    /// Muted by a silence: recorded, not sent.
    Silenced,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Dead => "dead",
            State::Silenced => "silenced",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "sent" => State::Sent,
            "dead" => State::Dead,
            "silenced" => State::Silenced,
            _ => State::Pending,
        }
    }
}

/// One alert change in a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub alert_id: i64,
    pub change: Change,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A delivery as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    /// The idempotency key every attempt carries.
    pub key: String,
    pub channel: String,
    pub state: State,
    pub group_key: String,
    pub items: Vec<Item>,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub answer: Option<String>,
    /// The rendered message (kept after the first attempt, so retries send the same bytes).
    #[serde(skip)]
    pub body: Option<String>,
}

const COLUMNS: &str = "id, channel, state, group_key, items, created_at, due_at, attempts, next_attempt_at, sent_at, last_error, answer, body";

/// The appliance's idempotency prefix: random, made once, kept in `meta`.
pub fn appliance_id(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(id) = crate::outbox::meta(conn, "appliance_id")? {
        return Ok(id);
    }
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| rusqlite::Error::InvalidQuery)?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::outbox::set_meta(conn, "appliance_id", &id)?;
    Ok(id)
}

fn row(prefix: &str) -> impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<Delivery> + '_ {
    move |r| {
        let id: i64 = r.get(0)?;
        Ok(Delivery {
            id,
            key: format!("mimamori-{prefix}-{id}"),
            channel: r.get(1)?,
            state: State::parse(&r.get::<_, String>(2)?),
            group_key: r.get(3)?,
            items: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
            created_at: parse_time(r.get(5)?),
            due_at: parse_time(r.get(6)?),
            attempts: r.get(7)?,
            next_attempt_at: parse_time(r.get(8)?),
            sent_at: r.get::<_, Option<String>>(9)?.map(parse_time),
            last_error: r.get(10)?,
            answer: r.get(11)?,
            body: r.get(12)?,
        })
    }
}

/// Deliveries, newest first: all, or only the dead ones (`failed`), at most `limit`.
pub fn list(
    conn: &Connection,
    channel: Option<&str>,
    failed: bool,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let prefix = appliance_id(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE (?1 IS NULL OR channel = ?1) AND (?2 = 0 OR state = 'dead')
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![channel, failed as i64, limit as i64], row(&prefix))?;
    rows.collect()
}

/// The deliveries of `channel` due now, at most `limit`: new alerts before status changes, more
/// severe first, then oldest attempt time first.
pub fn due(
    conn: &Connection,
    prefix: &str,
    channel: &str,
    now: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE channel = ?1 AND state = 'pending' AND next_attempt_at <= ?2
         ORDER BY priority DESC, next_attempt_at, id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![channel, now.to_rfc3339(), limit as i64],
        row(prefix),
    )?;
    rows.collect()
}

/// Queue figures of a channel: pending count and the oldest pending creation time.
pub fn queue(
    conn: &Connection,
    channel: &str,
) -> rusqlite::Result<(u64, Option<DateTime<Utc>>, u64)> {
    conn.query_row(
        "SELECT
            (SELECT COUNT(*) FROM deliveries WHERE channel = ?1 AND state = 'pending'),
            (SELECT MIN(created_at) FROM deliveries WHERE channel = ?1 AND state = 'pending'),
            (SELECT COUNT(*) FROM deliveries WHERE channel = ?1 AND state = 'dead')",
        [channel],
        |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, Option<String>>(1)?.map(parse_time),
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )
}

/// The last time a message of `channel` went out, and the last error, for `channels list`.
pub fn last_outcome(
    conn: &Connection,
    channel: &str,
) -> rusqlite::Result<(Option<DateTime<Utc>>, Option<String>)> {
    let sent: Option<String> = conn.query_row(
        "SELECT MAX(sent_at) FROM deliveries WHERE channel = ?1 AND state = 'sent'",
        [channel],
        |r| r.get(0),
    )?;
    let error: Option<String> = conn
        .query_row(
            "SELECT last_error FROM deliveries WHERE channel = ?1 AND last_error IS NOT NULL
             ORDER BY id DESC LIMIT 1",
            [channel],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok((sent.map(parse_time), error))
}

pub(crate) fn set_body(conn: &Connection, id: i64, body: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE deliveries SET body = ?2 WHERE id = ?1",
        params![id, body],
    )
    .map(|_| ())
}

/// Records an attempt's outcome.
pub(crate) fn finish(
    conn: &Connection,
    id: i64,
    state: State,
    next_attempt_at: DateTime<Utc>,
    error: Option<&str>,
    answer: Option<&str>,
) -> rusqlite::Result<()> {
    let now = Utc::now().to_rfc3339();
    conn.execute(
        "UPDATE deliveries SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
             last_error = COALESCE(?4, last_error), answer = COALESCE(?5, answer),
             sent_at = CASE WHEN ?2 = 'sent' THEN ?6 ELSE sent_at END
         WHERE id = ?1",
        params![
            id,
            state.as_str(),
            next_attempt_at.to_rfc3339(),
            error,
            answer,
            now
        ],
    )
    .map(|_| ())
}

/// Sends a dead delivery again from the start (`alerts deliveries --retry ID`).
pub fn retry(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    let now = Utc::now().to_rfc3339();
    let n = conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?2, created_at = ?2
         WHERE id = ?1 AND state = 'dead'",
        params![id, now],
    )?;
    Ok(n == 1)
}

/// How a message that is not an alert is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// Once per channel and group, ever (a scheduled report, whatever became of it).
    Never,
    /// Again unless one is still waiting to be sent (a person asked for it).
    UnlessPending,
}

/// Queues a rendered message (`body`) for `channel` under `group` (e.g. `report:2026-W48`),
/// low priority: sent after alerts, retried like them. False when not queued (see [`Again`]).
pub fn queue_message(
    conn: &Connection,
    channel: &str,
    group: &str,
    body: &str,
    again: Again,
) -> rusqlite::Result<bool> {
    let blocking: i64 = conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE channel = ?1 AND group_key = ?2
         AND (?3 = 0 OR state = 'pending')",
        params![channel, group, (again == Again::UnlessPending) as i64],
        |r| r.get(0),
    )?;
    if blocking > 0 {
        return Ok(false);
    }
    let now = Utc::now().to_rfc3339();
    conn.execute(
        "INSERT INTO deliveries (channel, group_key, items, state, created_at, due_at, next_attempt_at, priority, body)
         VALUES (?1, ?2, '[]', 'pending', ?3, ?3, ?3, -1, ?4)",
        params![channel, group, now, body],
    )?;
    Ok(true)
}

/// The deliveries of one group (a report's messages), oldest first.
pub fn for_group(conn: &Connection, group: &str) -> rusqlite::Result<Vec<Delivery>> {
    let prefix = appliance_id(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE group_key = ?1 ORDER BY id LIMIT 1000"
    ))?;
    let rows = stmt.query_map(params![group], row(&prefix))?;
    rows.collect()
}

impl crate::db::AlertDb {
    /// [`queue_message`] on this database.
    pub fn queue_message(
        &self,
        channel: &str,
        group: &str,
        body: &str,
        again: Again,
    ) -> Result<bool, crate::db::AlertDbError> {
        queue_message(self.conn(), channel, group, body, again).map_err(self.err())
    }

    /// [`for_group`] on this database.
    pub fn deliveries_of(&self, group: &str) -> Result<Vec<Delivery>, crate::db::AlertDbError> {
        for_group(self.conn(), group).map_err(self.err())
    }
}

/// The deliveries that carried an alert (its messages and automatic responses), oldest first.
pub fn for_alert(conn: &Connection, alert_id: i64) -> rusqlite::Result<Vec<Delivery>> {
    let prefix = appliance_id(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE instr(items, ?1) > 0 OR instr(items, ?2) > 0 ORDER BY id LIMIT 1000"
    ))?;
    let rows = stmt.query_map(
        params![
            format!("\"alert_id\":{alert_id},"),
            format!("\"alert_id\":{alert_id}}}")
        ],
        row(&prefix),
    )?;
    rows.collect()
}
