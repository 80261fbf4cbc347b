//! Delivery: the router thread reads the outbox and writes deliveries ([`route`]); one worker
//! thread per channel sends them ([`worker`]) with backoff, so one failing receiver never
//! delays another. Everything is in `alerts.db`: a restart carries on where it stopped, and a
//! message the receiver acknowledged is not sent again.

mod route;
pub mod store;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::store::Health;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Deserialize;

use crate::channels::ChannelConfig;
use crate::db::{AlertDb, AlertDbError};
use crate::document::Origin;
use crate::outbox;
use crate::silences;

/// The `[delivery]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// What makes alerts one group (one message plus its updates): among rule, user, site,
    /// severity.
    pub group_by: Vec<String>,
    /// A new group waits this long to collect related alerts before its first message.
    pub group_wait_seconds: u64,
    /// Updates to a group already told go out at most this often.
    pub group_interval_seconds: u64,
    /// A still-open alert is told again this often; 0: never.
    pub repeat_interval_minutes: u64,
    /// When a channel has started this many groups within `group_interval_seconds` (at least a
    /// minute), further new alerts go out together, up to 50 a message; 0: never.
    pub storm_limit: u32,
    /// A message not taken by its receiver for this long is given up on (dead).
    pub give_up_hours: u64,
    /// Acknowledging, closing or reopening an alert is told to the channels that were told.
    pub notify_status_changes: bool,
    /// The web address of this appliance as people reach it, for links in messages
    /// (e.g. "https://mimamori.clinic.local:8480"); empty: no links.
    pub link_base: String,
    /// The appliance's name in messages; empty: the host name.
    pub appliance_name: String,
    /// The clinic's zone, filled from `[clinic]` (not a key of its own).
    #[serde(skip)]
    pub timezone: chrono_tz::Tz,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            group_by: vec!["rule".into(), "user".into(), "site".into()],
            group_wait_seconds: 30,
            group_interval_seconds: 300,
            repeat_interval_minutes: 0,
            storm_limit: 10,
            give_up_hours: 48,
            notify_status_changes: true,
            link_base: String::new(),
            appliance_name: String::new(),
            timezone: chrono_tz::Asia::Tokyo,
        }
    }
}

impl DeliveryConfig {
    /// The key at fault and what it expects, if any.
    pub fn check(&self) -> Result<(), (String, String)> {
        let fields = ["rule", "user", "site", "severity"];
        if let Some(f) = self.group_by.iter().find(|f| !fields.contains(&f.as_str())) {
            return Err((
                "delivery.group_by".into(),
                format!("fields among rule, user, site, severity; {f:?} is not one"),
            ));
        }
        if self.group_wait_seconds > 3600 || self.group_interval_seconds > 86_400 {
            return Err((
                "delivery.group_wait_seconds".into(),
                "at most 3600 (and group_interval_seconds at most 86400)".into(),
            ));
        }
        if self.give_up_hours == 0 || self.give_up_hours > 24 * 30 {
            return Err(("delivery.give_up_hours".into(), "1 to 720".into()));
        }
        let web = |b: &str| b.starts_with("http://") || b.starts_with("https://");
        if !(self.link_base.is_empty() || web(&self.link_base)) {
            return Err((
                "delivery.link_base".into(),
                "an http(s):// address or empty".into(),
            ));
        }
        Ok(())
    }

    pub fn origin(&self) -> Origin {
        Origin {
            appliance: if self.appliance_name.is_empty() {
                host_name()
            } else {
                self.appliance_name.clone()
            },
            link_base: (!self.link_base.is_empty()).then(|| self.link_base.clone()),
        }
    }
}

/// A SOC (or other system) subscribed to the live alert stream, `[[subscribers]]`: its token
/// reads `GET /api/v1/alerts/stream` and may acknowledge or close alerts (recorded with its
/// name).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub include_patient_data: bool,
}

impl std::fmt::Debug for SubscriberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Checks `[delivery]`, `[[channels]]` and `[[subscribers]]` together: the key at fault and
/// what it expects.
pub fn check_all(
    config: &DeliveryConfig,
    channels: &[ChannelConfig],
    subscribers: &[SubscriberConfig],
) -> Result<(), (String, String)> {
    config.check()?;
    let mut names = std::collections::HashSet::new();
    for (i, c) in channels.iter().enumerate() {
        c.check(i).map_err(|b| (b.key, b.expected))?;
        if !names.insert(c.name.as_str()) {
            return Err((
                format!("channels[{i}].name"),
                format!("a name of its own; {:?} is used twice", c.name),
            ));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, s) in subscribers.iter().enumerate() {
        if s.name.trim().is_empty() || s.name.len() > 64 || !names.insert(s.name.as_str()) {
            return Err((
                format!("subscribers[{i}].name"),
                "a name of its own, 1-64 characters".into(),
            ));
        }
        if s.token.len() < 16 {
            return Err((
                format!("subscribers[{i}].token"),
                "a token of at least 16 characters (use e.g. `openssl rand -hex 24`)".into(),
            ));
        }
    }
    Ok(())
}

/// The machine's name, for messages.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mimamori".into())
}

/// Delivery figures in `/metrics`, by channel.
#[derive(Clone)]
pub(crate) struct Metrics {
    queued: IntGaugeVec,
    oldest: IntGaugeVec,
    dead_now: IntGaugeVec,
    sent: IntCounterVec,
    retried: IntCounterVec,
    dead: IntCounterVec,
    silenced: IntCounterVec,
}

impl Metrics {
    fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["channel"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &["channel"])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Metrics {
            queued: gauge("mimamori_deliveries_queued", "messages waiting to be sent")?,
            oldest: gauge(
                "mimamori_delivery_oldest_queued_seconds",
                "age of the oldest message waiting to be sent",
            )?,
            dead_now: gauge("mimamori_deliveries_dead", "messages given up on, now")?,
            sent: counter(
                "mimamori_deliveries_sent_total",
                "messages the receiver took",
            )?,
            retried: counter(
                "mimamori_delivery_retries_total",
                "attempts that failed and will be tried again",
            )?,
            dead: counter(
                "mimamori_deliveries_dead_total",
                "messages given up on (refused, or past give_up_hours)",
            )?,
            silenced: counter(
                "mimamori_deliveries_silenced_total",
                "messages not sent because a silence matched",
            )?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Db(#[from] AlertDbError),
    #[error("channel {name}: {reason}")]
    Channel { name: String, reason: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start a delivery thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running delivery: the router and one worker per channel.
pub struct Delivery {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, std::thread::JoinHandle<()>)>,
}

/// Days the outbox keeps routed changes (how far back a stream subscriber can resume).
pub const OUTBOX_DAYS: i64 = 30;

/// How long the router keeps trying a failing database before its stage fails.
const ROUTER_PATIENCE: Duration = Duration::from_secs(120);

/// Whether a database error is the disk being full (which passes when space is made).
fn disk_full(e: &AlertDbError) -> bool {
    matches!(
        e,
        AlertDbError::Sqlite {
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error {
                    code: rusqlite::ErrorCode::DiskFull,
                    ..
                },
                _
            ),
            ..
        }
    )
}

/// How often the router looks at the outbox and a worker at its queue.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Makes the router, when it first starts, begin at the outbox's first change instead of its
/// end, so that alerts raised before delivery was set up are sent too (`mimamori demo`, whose
/// week is imported before the service starts). Does nothing once the router has a position.
pub fn route_from_the_start(db_path: &std::path::Path) -> Result<(), AlertDbError> {
    let db = AlertDb::open(db_path, chrono::Duration::hours(1))?;
    first_position(&db, |_| Ok(0))
}

/// Sets where the router begins, `start`, unless it has a position already.
fn first_position(
    db: &AlertDb,
    start: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<i64>,
) -> Result<(), AlertDbError> {
    let conn = db.conn();
    let sqlite = |source| AlertDbError::Sqlite {
        path: db.path().to_owned(),
        source,
    };
    if outbox::meta(conn, "delivery_seq")
        .map_err(sqlite)?
        .is_none()
    {
        let first = start(conn).map_err(sqlite)?;
        outbox::set_meta(conn, "delivery_seq", &first.to_string()).map_err(sqlite)?;
    }
    Ok(())
}

impl Delivery {
    /// Starts routing and sending. `db_path` is `alerts.db`.
    pub fn start(
        db_path: &std::path::Path,
        config: &DeliveryConfig,
        channels: &[ChannelConfig],
        registry: &Registry,
        health: &Health,
    ) -> Result<Delivery, DeliveryError> {
        let metrics = Metrics::new(registry)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let open = || AlertDb::open(db_path, chrono::Duration::hours(1));
        // The router begins at the outbox's end the first time: alerts raised before delivery
        // was set up are not all sent at once.
        let db = open()?;
        first_position(&db, outbox::last)?;
        let conn = db.conn();
        let sqlite = |source| AlertDbError::Sqlite {
            path: db.path().to_owned(),
            source,
        };
        let prefix = store::appliance_id(conn).map_err(sqlite)?;
        for c in channels.iter().filter(|c| c.enabled) {
            let channel = crate::channels::Channel::new(c.clone()).map_err(|reason| {
                DeliveryError::Channel {
                    name: c.name.clone(),
                    reason,
                }
            })?;
            let w = worker::Worker {
                db: open()?,
                channel,
                prefix: prefix.clone(),
                config: config.clone(),
                origin: config.origin(),
                metrics: metrics.clone(),
                stop: stop.clone(),
                health: health.clone(),
            };
            let stage = format!("delivery {}", c.name);
            health.running(&stage);
            let handle = std::thread::Builder::new()
                .name(format!("deliver-{}", c.name))
                .spawn(move || w.run(&stage))?;
            threads.push((c.name.clone(), handle));
        }
        let router = Router {
            db,
            config: config.clone(),
            channels: channels.iter().filter(|c| c.enabled).cloned().collect(),
            metrics,
            stop: stop.clone(),
        };
        let stage = "delivery router".to_owned();
        health.running(&stage);
        let health = health.clone();
        let handle = std::thread::Builder::new()
            .name("deliver-route".into())
            .spawn(move || {
                let _guard = health.guard(&stage);
                if let Err(e) = router.run(&health, &stage) {
                    health.failed(&stage, &e.to_string());
                }
            })?;
        threads.push(("router".into(), handle));
        Ok(Delivery { stop, threads })
    }

    /// Stops after the attempts under way (each at most 35 s); what is not sent stays queued.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for (_, t) in self.threads {
            let _ = t.join();
        }
    }
}

struct Router {
    db: AlertDb,
    config: DeliveryConfig,
    channels: Vec<ChannelConfig>,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
}

impl Router {
    /// Routes until stopped. A failing database (busy past its timeout, a full disk) is tried
    /// again every second, shown as degraded; only after [`ROUTER_PATIENCE`] of failures in a
    /// row does the stage fail (and the service restart), and never for a full disk.
    fn run(mut self, health: &Health, stage: &str) -> Result<(), AlertDbError> {
        let mut last_reminders = std::time::Instant::now();
        let mut last_prune = std::time::Instant::now() - Duration::from_secs(3600);
        let mut failing_since: Option<std::time::Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let mut pass = || -> Result<usize, AlertDbError> {
                let routed = self.step()?;
                if last_prune.elapsed() >= Duration::from_secs(3600) {
                    self.prune()?;
                    last_prune = std::time::Instant::now();
                }
                if self.config.repeat_interval_minutes > 0
                    && last_reminders.elapsed() > Duration::from_secs(60)
                {
                    self.remind()?;
                    last_reminders = std::time::Instant::now();
                }
                Ok(routed)
            };
            match pass() {
                Ok(routed) => {
                    if failing_since.take().is_some() {
                        health.running(stage);
                    }
                    if routed == 0 {
                        std::thread::sleep(POLL);
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    // A full disk passes when space is made (the store waits for it too):
                    // dying would stop collection with it. Anything else has its patience.
                    if since.elapsed() > ROUTER_PATIENCE && !disk_full(&e) {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, "cannot route alert changes; trying again");
                    health.degraded(stage, &e.to_string());
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        Ok(())
    }

    /// Routes the next changes of the outbox; returns how many.
    fn step(&mut self) -> Result<usize, AlertDbError> {
        let err = |source| AlertDbError::Sqlite {
            path: self.db.path().to_owned(),
            source,
        };
        let cursor: i64 = outbox::meta(self.db.conn(), "delivery_seq")
            .map_err(err)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let changes = outbox::after(self.db.conn(), cursor, 500).map_err(err)?;
        let Some(last) = changes.last().map(|c| c.seq) else {
            return Ok(0);
        };
        let silences = silences::list(&self.db, true)?;
        let mut alerts = Vec::with_capacity(changes.len());
        for c in &changes {
            match self.db.get(c.alert_id) {
                Ok(a) => alerts.push(Some(a)),
                Err(AlertDbError::NotFound(_)) => alerts.push(None),
                Err(e) => return Err(e),
            }
        }
        let now = chrono::Utc::now();
        let path = self.db.path().to_owned();
        let err = |source| AlertDbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        let mut silenced = Vec::new();
        for (change, alert) in changes.iter().zip(&alerts) {
            let Some(alert) = alert else { continue };
            for channel in &self.channels {
                let state = route::route(&tx, &self.config, channel, change, alert, &silences, now)
                    .map_err(err)?;
                if state == Some(store::State::Silenced) {
                    silenced.push(channel.name.as_str());
                }
            }
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'delivery_seq'",
            [last.to_string()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        for channel in silenced {
            self.metrics.silenced.with_label_values(&[channel]).inc();
        }
        Ok(changes.len())
    }

    /// Outbox entries routed and older than [`OUTBOX_DAYS`] go: the stream resumes within that.
    /// Deliveries stay, as the record of who was told.
    fn prune(&mut self) -> Result<(), AlertDbError> {
        let before = (chrono::Utc::now() - chrono::Duration::days(OUTBOX_DAYS)).to_rfc3339();
        self.db
            .conn()
            .execute(
                "DELETE FROM outbox WHERE at < ?1
                 AND seq <= (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'delivery_seq')",
                [before],
            )
            .map_err(|source| AlertDbError::Sqlite {
                path: self.db.path().to_owned(),
                source,
            })?;
        Ok(())
    }

    fn remind(&mut self) -> Result<(), AlertDbError> {
        let every = chrono::Duration::minutes(self.config.repeat_interval_minutes as i64);
        let path = self.db.path().to_owned();
        let err = |source| AlertDbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction().map_err(err)?;
        for channel in &self.channels {
            route::reminders(&tx, channel, every, chrono::Utc::now()).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(())
    }
}
