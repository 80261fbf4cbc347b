//! The tables of `alerts.db`, one place for all of them, and the steps from each older schema
//! (`PRAGMA user_version`) to this one. A database of a newer schema is refused.

use rusqlite::Connection;

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// The first schema: alerts and their triage, the rules' position and memory.
const V1: &str = "
    CREATE TABLE IF NOT EXISTS alerts (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        user TEXT,
        site TEXT,
        dedup_key TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        count INTEGER NOT NULL,
        explanation TEXT NOT NULL,
        evidence TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        status_reason TEXT
    );
    CREATE INDEX IF NOT EXISTS alerts_key ON alerts (dedup_key, last_seen);
    CREATE INDEX IF NOT EXISTS alerts_last ON alerts (last_seen);
    CREATE TABLE IF NOT EXISTS status_changes (
        alert_id INTEGER NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        by TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS status_changes_alert ON status_changes (alert_id);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS activity (user TEXT PRIMARY KEY, last_active TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS machines (user TEXT PRIMARY KEY, logins INTEGER NOT NULL, hosts TEXT NOT NULL);";

/// Version 2: delivery. The outbox of alert changes (written in the transaction that makes the
/// change), the deliveries routed from it, silences, and the patient data each alert mentions.
const V2: &str = "
    ALTER TABLE alerts ADD COLUMN private TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id INTEGER NOT NULL,
        change TEXT NOT NULL,
        at TEXT NOT NULL,
        by TEXT
    );
    CREATE TABLE IF NOT EXISTS deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        group_key TEXT NOT NULL,
        items TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        body TEXT,
        last_error TEXT,
        answer TEXT,
        sent_at TEXT,
        priority INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (channel, state, priority DESC, next_attempt_at);
    CREATE INDEX IF NOT EXISTS deliveries_group ON deliveries (channel, group_key, state);
    CREATE TABLE IF NOT EXISTS told (
        channel TEXT NOT NULL,
        alert_id INTEGER NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (channel, alert_id)
    );
    CREATE TABLE IF NOT EXISTS silences (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rule TEXT,
        user TEXT,
        site TEXT,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at TEXT NOT NULL
    );";

/// Version 3: the investigation. Who an alert is assigned to, how a closed one was judged, and
/// history steps that are assignments and comments besides status changes.
const V3: &str = "
    ALTER TABLE alerts ADD COLUMN resolution TEXT;
    ALTER TABLE alerts ADD COLUMN assignee TEXT;
    ALTER TABLE status_changes ADD COLUMN kind TEXT NOT NULL DEFAULT 'status';
    ALTER TABLE status_changes ADD COLUMN resolution TEXT;
    ALTER TABLE status_changes ADD COLUMN assignee TEXT;";

/// Why a database cannot be used.
#[derive(Debug)]
pub enum SchemaError {
    Newer(u32),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        SchemaError::Sqlite(e)
    }
}

/// Brings the database to [`SCHEMA_VERSION`], one step per version, each in one transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 5000;",
    )?;
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SchemaError::Newer(version));
    }
    // Version 0 (no number: the first release) has the tables of version 1.
    let steps: [(u32, &str); 3] = [(1, V1), (2, V2), (3, V3)];
    for (to, sql) in steps {
        if version >= to {
            continue;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // A version-0 database already has version 1's tables: they are created only if missing.
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {to};"))?;
        tx.commit()?;
    }
    Ok(())
}
