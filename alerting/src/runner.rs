//! Runs the rules on every accepted event: follows the write-ahead log (so each event is seen as
//! it becomes durable, not by polling the index), stores alerts in `<data_dir>/alerts.db`, and
//! keeps its position there. Live events are held for `detections.lateness_seconds` and
//! evaluated in event-time order ([`rules::reorder`]). After a restart it re-reads
//! `alerts.rebuild_events` events before that position to rebuild its windows, without raising
//! their alerts again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use rules::engine::Engine;
use rules::reorder::Reorder;
use store::{StoreError, StoreHandle};
use tracing::{error, info, warn};

use crate::db::{AlertDb, AlertDbError, Recorded, Step};

/// Why the rules could not start or finish a pass.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("the alert database: {0}")]
    Db(#[from] AlertDbError),
    #[error("the event log: {0}")]
    Store(#[from] StoreError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the rules thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the rules need of the configuration besides the engine.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Where `alerts.db` and the log are.
    pub data_dir: PathBuf,
    /// The same rule, person and site again within this continues the open alert.
    pub dedup_window: chrono::Duration,
    /// Events before the saved position re-read at start to rebuild the windows.
    pub rebuild_events: u64,
    /// How long a live event is held for event-time order.
    pub lateness: Duration,
}

/// The rules as the configuration says now (read again on reload), with a line saying what
/// they amount to; or why the configuration is refused.
pub type EngineSource = Box<dyn Fn() -> Result<(Engine, String), Refused> + Send + Sync>;

/// Why new rules were refused (the configuration is wrong); the rules in force stay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

const RULES_STAGE: &str = "rules";

pub fn alerts_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("alerts.db")
}

#[derive(Clone)]
struct RulesMetrics {
    events: IntCounter,
    alerts: IntCounterVec,
    late: IntCounter,
    held: IntGauge,
    held_bytes: IntGauge,
}

impl RulesMetrics {
    fn new(registry: &Registry) -> prometheus::Result<RulesMetrics> {
        let r = store::Registrar(registry);
        let events = r.counter(
            "mimamori_rules_events_total",
            "Accepted events the rules have evaluated",
        )?;
        let alerts = r.counters(
            "mimamori_alerts_total",
            "Alerts raised or continued, by rule",
            &["rule"],
        )?;
        let late = r.counter(
            "mimamori_rules_late_events_total",
            "Events that arrived after a later event had been evaluated (beyond detections.lateness_seconds); evaluated out of order",
        )?;
        let held = r.gauge(
            "mimamori_rules_held_events",
            "Events held to be evaluated in event-time order",
        )?;
        let held_bytes = r.gauge(
            "mimamori_rules_held_bytes",
            "Memory (estimated) of the events held to be evaluated in event-time order",
        )?;
        Ok(RulesMetrics {
            events,
            alerts,
            late,
            held,
            held_bytes,
        })
    }
}

/// The rules thread; it ends when the store closes.
pub struct RulesRunner {
    thread: Option<JoinHandle<()>>,
    pub reloader: Arc<Reloader>,
}

/// Reads the configuration again and hands the rules their new model, or says why not (and
/// the old one stays).
pub struct Reloader {
    source: EngineSource,
    tx: Mutex<std::sync::mpsc::SyncSender<Engine>>,
    reloads: IntCounterVec,
    /// The clinic model in force (for the pages that show it).
    clinic: std::sync::RwLock<Arc<rules::clinic::Clinic>>,
}

impl Reloader {
    pub fn reload(&self) -> Result<String, Refused> {
        let (engine, summary) = match (self.source)() {
            Ok(built) => built,
            Err(e) => {
                self.reloads.with_label_values(&["refused"]).inc();
                warn!(error = %e, "rules reload refused; the previous rules stay in force");
                return Err(e);
            }
        };
        let clinic = Arc::new(engine.clinic.clone());
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(engine)
            .map_err(|_| Refused("the rules have stopped".to_owned()))?;
        *self.clinic.write().unwrap_or_else(|e| e.into_inner()) = clinic;
        self.reloads.with_label_values(&["ok"]).inc();
        info!("{summary}");
        Ok(summary)
    }

    /// The clinic model in force: the one started with, or the last reloaded.
    pub fn clinic(&self) -> Arc<rules::clinic::Clinic> {
        self.clinic
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl RulesRunner {
    /// Starts the rules thread with `engine`; `source` builds a new one on reload.
    pub fn start(
        settings: &RunnerSettings,
        mut engine: Engine,
        source: EngineSource,
        store: &StoreHandle,
        registry: &Registry,
        health: &store::Health,
    ) -> Result<RulesRunner, RunnerError> {
        let path = alerts_db_path(&settings.data_dir);
        let db = AlertDb::open(&path, settings.dedup_window)?;
        let checkpoint = db.checkpoint()?;
        let arrived_through = db.read_position()?.max(checkpoint);
        // Where the learned state was last stored, across runs: runs that each die before
        // storing it again still store it in time (never further back than the rebuild).
        let state_saved = db.state_position()?.unwrap_or(checkpoint).min(checkpoint);
        let rebuild_from = checkpoint.saturating_sub(settings.rebuild_events).max(1);
        let mut follower = store.follow(rebuild_from);
        restore(&mut engine, &db)?;
        let metrics = RulesMetrics::new(registry)?;
        let reloads = store::Registrar(registry).counters(
            "mimamori_rules_reloads_total",
            "Rule reloads (SIGHUP or API), by result",
            &["result"],
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Engine>(1);
        let reloader = Arc::new(Reloader {
            source,
            tx: Mutex::new(tx),
            reloads,
            clinic: std::sync::RwLock::new(Arc::new(engine.clinic.clone())),
        });
        info!(checkpoint, rebuild_from, "rules following the event log");
        let lateness = settings.lateness;
        let rebuild_events = settings.rebuild_events;
        let health = health.clone();
        health.running(RULES_STAGE);
        let thread = std::thread::Builder::new()
            .name("rules".into())
            .spawn(move || {
                let _guard = health.guard(RULES_STAGE);
                let mut pass = Pass {
                    engine,
                    db,
                    metrics,
                    checkpoint,
                    arrived_through,
                    read_saved: arrived_through,
                    saved: checkpoint,
                    read: checkpoint,
                    reorder: Reorder::new(lateness, REORDER_CAPACITY).with_max_bytes(REORDER_BYTES),
                    pending: Vec::new(),
                    fresh: Vec::new(),
                    activity: HashMap::new(),
                    machines: HashMap::new(),
                    state_saved,
                    rebuild_events,
                    lost_alerts: false,
                    db_failing: false,
                    refusing: None,
                };
                loop {
                    let wait = pass
                        .reorder
                        .due_in(Instant::now())
                        .map_or(POLL, |due| due.min(POLL));
                    pass.watch_storage(follower.refusing());
                    let batch = match follower.next_batch(BATCH_EVENTS, wait) {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(e) => {
                            health.failed(RULES_STAGE, &format!("cannot read the event log: {e}"));
                            return;
                        }
                    };
                    // A reload applies to every event evaluated after it was answered (events
                    // still held included).
                    if let Ok(new) = rx.try_recv() {
                        pass.engine.reconfigure(new);
                    }
                    pass.step(batch, false);
                }
                // The store has closed: nothing more will arrive, so nothing need wait.
                pass.step(Vec::new(), true);
                health.stopped(RULES_STAGE);
            })?;
        Ok(RulesRunner {
            thread: Some(thread),
            reloader,
        })
    }

    /// Waits for the thread (after the store has been shut down).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the rules keep across restarts besides alerts and windows: each account's last
/// activity (dormant accounts) and machines (new workstations), beyond `alerts.rebuild_events`.
fn restore(engine: &mut Engine, db: &AlertDb) -> Result<(), AlertDbError> {
    for (user, at) in db.activity()? {
        engine.remember_active(&user, at);
    }
    for (user, logins, hosts) in db.machines()? {
        engine.remember_machines(&user, logins, hosts);
    }
    Ok(())
}

fn persist(engine: &mut Engine, db: &mut AlertDb) -> Result<(), AlertDbError> {
    db.save_activity(&engine.take_changed_activity())?;
    db.save_machines(&engine.take_changed_machines())
}

/// Events the rules take from the log at once, at most: one transaction of the alert database
/// each (fewer, larger ones when they have a backlog to catch up).
const BATCH_EVENTS: usize = 4096;

/// How often the rules thread looks for new events when none are held.
const POLL: Duration = Duration::from_millis(500);

/// Most events held for reordering, and most of their memory; beyond either, the oldest are
/// evaluated at once. 32 MiB holds about 10 s of 2,000 events/s (20,000 events of ~1.6 KB);
/// faster, events wait less than `lateness`. It was 100,000 events alone: about 150 MiB of a
/// 500 MiB peak while the bench sent 50,000 events/s.
const REORDER_CAPACITY: usize = 100_000;
const REORDER_BYTES: usize = 32 << 20;

/// The live rules' state between batches.
struct Pass {
    engine: Engine,
    db: AlertDb,
    metrics: RulesMetrics,
    /// Where the rules stood at start: events at or before it only rebuild state.
    checkpoint: u64,
    /// The last event whose arrival checks had been stored at start (at or after `checkpoint`).
    arrived_through: u64,
    /// The read position last stored.
    read_saved: u64,
    /// The position last saved.
    saved: u64,
    /// The last log position read.
    read: u64,
    reorder: Reorder,
    /// Alerts not stored yet (the alert database refused them): tried again each step, and
    /// the position is not saved past them meanwhile.
    pending: Vec<rules::Alert>,
    /// Per pending alert, whether its event was never read before (see [`Step::fresh`]).
    fresh: Vec<bool>,
    /// Accounts' activity and machines the rules changed, not stored yet.
    /// (One entry per account, the latest: bounded by the accounts, however long it takes.)
    activity: HashMap<String, chrono::DateTime<chrono::Utc>>,
    machines: HashMap<String, (u32, Vec<String>)>,
    /// The log position when they were last stored, and how far behind it a restart rebuilds.
    state_saved: u64,
    rebuild_events: u64,
    /// Alerts were dropped (the database refused them too long): the position is not saved
    /// again in this run, so a restart replays the events and raises them again.
    lost_alerts: bool,
    db_failing: bool,
    /// Why the log refuses data, as last seen (a storage alert is raised when it starts).
    refusing: Option<String>,
}

/// Alerts kept while the alert database refuses them, at most.
const MAX_PENDING_ALERTS: usize = 10_000;

impl Pass {
    /// Raises a `storage` alert when the log starts refusing new data (a full disk).
    fn watch_storage(&mut self, refusing: Option<String>) {
        if let (Some(reason), None) = (&refusing, &self.refusing) {
            self.fresh.push(true);
            self.pending.push(rules::Alert::system(
                rules::RuleId::Storage,
                rules::Severity::Critical,
                format!(
                    "記録の保存先の空き容量が足りないため、新しいログの受け付けを止めています。空き容量を増やしてください(受け付けは自動で再開します)。 / mimamori refuses new log data: {reason}. Free space on the data disk; collection resumes by itself."
                ),
            ));
        }
        self.refusing = refusing;
    }

    /// Takes a batch from the log, evaluates what is due (everything when `flush`), stores the
    /// alerts, and saves the position: the last event read, or just before the oldest still
    /// held, so a crash replays what was held (the alert store ignores evidence it has).
    fn step(&mut self, batch: Vec<(u64, store::Event)>, flush: bool) {
        let now = Instant::now();
        let mut raised = Vec::new();
        for (seq, mut event) in batch {
            let alerts = self.engine.arrived(&event);
            // Arrival checks ran when the event was first read, and their alerts were stored
            // with that read position: a replay raises them again only past it.
            if seq > self.arrived_through {
                raised.extend(alerts.into_iter().map(|a| (a, true)));
            }
            // Not needed by the rules; the raw input is most of an event's memory.
            event.original = String::new();
            if self.reorder.push(seq, event, now) {
                self.metrics.late.inc();
            }
            self.read = seq;
        }
        let due: Vec<_> = if flush {
            self.reorder.drain()
        } else {
            std::iter::from_fn(|| self.reorder.pop(now)).collect()
        };
        for (seq, event) in &due {
            self.metrics.events.inc();
            let alerts = self.engine.evaluate(event);
            // Past the position; read before the restart (it may have been evaluated then:
            // its alert's evidence tells) or not (it cannot have been).
            if *seq > self.checkpoint {
                let fresh = *seq > self.arrived_through;
                raised.extend(alerts.into_iter().map(|a| (a, fresh)));
            } // else rebuilding state: these were raised before
        }
        self.metrics.held.set(self.reorder.len() as i64);
        self.metrics.held_bytes.set(self.reorder.bytes() as i64);
        self.fresh.extend(raised.iter().map(|(_, fresh)| *fresh));
        self.pending
            .extend(raised.into_iter().map(|(alert, _)| alert));
        // Kept until stored: a refused write loses nothing.
        for (user, at) in self.engine.take_changed_activity() {
            let latest = self.activity.entry(user).or_insert(at);
            *latest = (*latest).max(at);
        }
        for (user, logins, hosts) in self.engine.take_changed_machines() {
            self.machines.insert(user, (logins, hosts));
        }
        // Stored every half `rebuild_events` of the position (and at the end): a restart
        // rebuilds the `rebuild_events` before the position, as it rebuilds the windows, so the
        // state is saved with the position before it gets that far from where it was last
        // saved. An upsert per active account per batch was a third of the rules' time.
        let position = self.reorder.oldest_seq().map_or(self.read, |held| held - 1);
        let checkpoint = (position > self.saved && !self.lost_alerts).then_some(position);
        let save_state = flush
            || checkpoint
                .is_some_and(|c| c.saturating_sub(self.state_saved) >= self.rebuild_events / 2);
        let (activity, machines): (Vec<_>, Vec<_>) = if save_state {
            (
                self.activity
                    .iter()
                    .map(|(u, at)| (u.clone(), *at))
                    .collect(),
                self.machines
                    .iter()
                    .map(|(u, (logins, hosts))| (u.clone(), *logins, hosts.clone()))
                    .collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let stored = self
            .db
            .record_step(&Step {
                alerts: &self.pending,
                fresh: &self.fresh,
                activity: &activity,
                machines: &machines,
                checkpoint,
                read: (self.read > self.read_saved && !self.lost_alerts).then_some(self.read),
                state_saved_at: save_state.then_some(checkpoint.unwrap_or(self.saved)),
            })
            .map(|results| {
                for (alert, (id, recorded)) in self.pending.iter().zip(results) {
                    if recorded.changed() {
                        self.metrics.alerts.with_label_values(&[&alert.rule]).inc();
                    }
                    if recorded == Recorded::New {
                        // Until delivery tells people, the log does, once per alert: the rule,
                        // the account and the site, never the explanation (it may name what
                        // was opened).
                        warn!(
                            alert = id,
                            rule = %alert.rule,
                            severity = alert.severity.as_str(),
                            user = alert.user.as_deref().unwrap_or("-"),
                            site = alert.site.as_deref().unwrap_or("-"),
                            "alert raised (mimamori alerts show {id})"
                        );
                    }
                }
                self.pending.clear();
                self.fresh.clear();
                if !self.lost_alerts {
                    self.read_saved = self.read;
                }
                if let Some(position) = checkpoint {
                    self.saved = position;
                }
                if save_state {
                    self.activity.clear();
                    self.machines.clear();
                    self.state_saved = self.saved;
                }
            });
        // Alerts wait while the database refuses them, up to a bound; beyond it the oldest are
        // dropped and the position is not saved again in this run, so a restart raises them
        // again. (Counted after the write: a burst of alerts the database takes is no loss.)
        if stored.is_err() && self.pending.len() > MAX_PENDING_ALERTS {
            let dropped = self.pending.len() - MAX_PENDING_ALERTS;
            self.pending.drain(..dropped);
            self.fresh.drain(..dropped);
            self.lost_alerts = true;
            error!(
                dropped,
                "alerts dropped: the alert database has refused them for too long (they are raised again when the rules replay after a restart)"
            );
        }
        // Said once when it starts and once when it ends, not for every batch.
        match (stored, self.db_failing) {
            (Err(e), false) => {
                error!(error = %e, pending = self.pending.len(), "the alert database refuses writes; alerts are kept and stored once it takes them");
                self.db_failing = true;
            }
            (Ok(()), true) => {
                info!("the alert database takes writes again; pending alerts stored");
                self.db_failing = false;
            }
            _ => {}
        }
    }
}

/// Events the import's rule pass sorts at once; more are taken a chunk at a time (each chunk
/// in time order), so memory stays bounded on huge imports.
const SORT_CHUNK: usize = 100_000;

/// Events with their log record numbers, in event-time order.
pub type Chunk = Vec<(u64, store::Event)>;

/// Reads the log from record `from`: events at or before `checkpoint` go to `rebuild` in log
/// order (they only rebuild the rules' windows); later ones go to `evaluate` in chunks, each
/// sorted by event time. Damaged records are skipped, as every reader of the log skips them.
/// Returns the last record read.
pub fn replay_sorted(
    data_dir: &std::path::Path,
    from: u64,
    checkpoint: u64,
    rebuild: &mut dyn FnMut(&store::Event),
    evaluate: &mut dyn FnMut(&mut Chunk) -> Result<(), RunnerError>,
) -> Result<u64, RunnerError> {
    let mut chunk: Vec<(u64, store::Event)> = Vec::new();
    let mut last = checkpoint;
    let mut flush = |chunk: &mut Vec<(u64, store::Event)>| -> Result<(), RunnerError> {
        chunk.sort_by_key(|(seq, e)| (e.timestamp, *seq));
        evaluate(chunk)?;
        chunk.clear();
        Ok(())
    };
    let mut records = store::replay(data_dir, from);
    for record in records.by_ref() {
        let (seq, mut event) = record?;
        if seq <= checkpoint {
            rebuild(&event);
            continue;
        }
        // Not needed by the rules; the raw input is most of an event's memory.
        event.original = String::new();
        chunk.push((seq, event));
        last = seq;
        if chunk.len() >= SORT_CHUNK {
            flush(&mut chunk)?;
        }
    }
    flush(&mut chunk)?;
    if records.damaged > 0 {
        warn!(
            damaged = records.damaged,
            "damaged stretches of the event log were skipped (run `mimamori verify`)"
        );
    }
    Ok(last)
}

/// After `mimamori import`: runs the rules over everything the log holds beyond their position,
/// in event-time order. Files are imported one after another (a month of EHR export, then a
/// month of Windows logons), so arrival order is not time order, and sessions and windows that
/// span files are only seen when the events are put back in time order first.
pub fn catch_up_sorted(settings: &RunnerSettings, mut engine: Engine) -> Result<u64, RunnerError> {
    let data_dir = &settings.data_dir;
    let mut db = AlertDb::open(&alerts_db_path(data_dir), settings.dedup_window)?;
    let checkpoint = db.checkpoint()?;
    let rebuild_from = checkpoint.saturating_sub(settings.rebuild_events);
    restore(&mut engine, &db)?;
    let mut raised = 0u64;
    let engine = std::cell::RefCell::new(engine);
    let last = replay_sorted(
        data_dir,
        rebuild_from,
        checkpoint,
        &mut |event| {
            // Rebuilding windows: these were raised before.
            engine.borrow_mut().process(event);
        },
        &mut |chunk| {
            let mut engine = engine.borrow_mut();
            let mut alerts = Vec::new();
            for (_, event) in chunk.iter() {
                alerts.extend(engine.process(event));
            }
            raised += db
                .record_all(&alerts)?
                .iter()
                .filter(|(_, recorded)| recorded.changed())
                .count() as u64;
            persist(&mut engine, &mut db)?;
            Ok(())
        },
    )?;
    if last > checkpoint {
        db.set_checkpoint(last)?;
    }
    Ok(raised)
}
