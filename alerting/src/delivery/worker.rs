//! One channel's sender: takes its due deliveries in order, renders each once, sends it, and
//! records the outcome: sent, another try later (exponential backoff with jitter, or the
//! receiver's `Retry-After`), or dead (refused for good, or past `give_up_hours`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::store::Health;
use chrono::Utc;

use super::store::{self, Delivery, State};
use super::{DeliveryConfig, Metrics, POLL};
use crate::channels::{Channel, Notice, SendError, Sent};
use crate::db::{AlertDb, AlertDbError};
use crate::document::{AlertDocument, Origin};

pub(crate) struct Worker {
    pub db: AlertDb,
    pub channel: Channel,
    pub prefix: String,
    pub config: DeliveryConfig,
    pub origin: Origin,
    pub metrics: Metrics,
    pub stop: Arc<AtomicBool>,
    pub health: Health,
}

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The wait before attempt `n + 1`: 2 s doubling to 15 minutes, times a random 0.5-1.5.
pub(crate) fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(2)
        .saturating_mul(1u32 << attempts.min(10))
        .min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    base.mul_f64(0.5 + f64::from(byte[0]) / 255.0)
}

impl Worker {
    pub(crate) fn run(mut self, stage: &str) {
        let _guard = self.health.guard(stage);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                self.health.failed(stage, &format!("no runtime: {e}"));
                return;
            }
        };
        let name = self.channel.config.name.clone();
        let mut last_send: Option<Instant> = None;
        let mut last_stats = Instant::now() - Duration::from_secs(60);
        while !self.stop.load(Ordering::Relaxed) {
            if last_stats.elapsed() > Duration::from_secs(2) {
                last_stats = Instant::now();
                self.stats(&name);
            }
            let due = match self.claim(&name) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "cannot read the delivery queue; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if due.is_empty() {
                std::thread::sleep(POLL);
                continue;
            }
            let mut outcomes = Vec::with_capacity(due.len());
            for (delivery, body) in due {
                if self.stop.load(Ordering::Relaxed) {
                    break; // the rest stays queued, rendered
                }
                let result = match body {
                    Err(reason) => Err(SendError::Permanent(reason)),
                    Ok(body) => {
                        // The receiver's rate limit.
                        if let Some(t) = last_send {
                            let wait = self.channel.config.interval().saturating_sub(t.elapsed());
                            if !wait.is_zero() {
                                std::thread::sleep(wait);
                            }
                        }
                        last_send = Some(Instant::now());
                        // Stopping does not wait for a slow receiver: the attempt is dropped
                        // and the message stays queued, not counted as tried.
                        let stop = self.stop.clone();
                        let channel = &mut self.channel;
                        let attempt = runtime.block_on(async {
                            tokio::select! {
                                r = channel.send(&delivery.key, &body) => Some(r),
                                () = stopped(&stop) => None,
                            }
                        });
                        match attempt {
                            Some(r) => r,
                            None => break,
                        }
                    }
                };
                outcomes.push((delivery, result));
            }
            // A crash before this commit sends these again, with the same keys.
            if let Err(e) = self.record(outcomes, stage) {
                tracing::warn!(channel = %name, error = %e, "cannot record deliveries; they will be sent again");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        self.health.stopped(stage);
    }

    /// The channel's due deliveries (at most [`BATCH`]), each with its message: rendered now
    /// and kept if it had none (one transaction for them all), or why it cannot be.
    #[allow(clippy::type_complexity)]
    fn claim(&self, name: &str) -> Result<Vec<(Delivery, Result<String, String>)>, AlertDbError> {
        // A rate-limited channel takes one at a time: its outcome is recorded at once, so a
        // crash repeats no chat message but the one being sent.
        let batch = if self.channel.config.interval().is_zero() {
            BATCH
        } else {
            1
        };
        let due = store::due(self.db.conn(), &self.prefix, name, Utc::now(), batch)
            .map_err(self.sqlite())?;
        if due.iter().all(|d| d.body.is_some()) {
            return Ok(due
                .into_iter()
                .map(|d| {
                    let body = d.body.clone().unwrap_or_default();
                    (d, Ok(body))
                })
                .collect());
        }
        let conn = self.db.conn();
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(self.sqlite())?;
        let result = (|| {
            // Read again under the lock: the router may have added an alert to a group since.
            let due = store::due(self.db.conn(), &self.prefix, name, Utc::now(), batch)
                .map_err(self.sqlite())?;
            let mut out = Vec::with_capacity(due.len());
            for d in due {
                let body = self.body(&d)?;
                out.push((d, body));
            }
            Ok(out)
        })();
        match &result {
            Ok(_) => conn.execute_batch("COMMIT").map_err(self.sqlite())?,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        result
    }

    fn stats(&self, name: &str) {
        if let Ok((queued, oldest, dead)) = store::queue(self.db.conn(), name) {
            self.metrics
                .queued
                .with_label_values(&[name])
                .set(queued as i64);
            self.metrics
                .dead_now
                .with_label_values(&[name])
                .set(dead as i64);
            let age = oldest.map_or(0, |t| (Utc::now() - t).num_seconds().max(0));
            self.metrics.oldest.with_label_values(&[name]).set(age);
        }
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> AlertDbError + '_ {
        |source| AlertDbError::Sqlite {
            path: self.db.path().to_owned(),
            source,
        }
    }

    /// The message of a delivery, rendered once and kept.
    fn body(&self, delivery: &Delivery) -> Result<Result<String, String>, AlertDbError> {
        if let Some(body) = &delivery.body {
            return Ok(Ok(body.clone()));
        }
        let include = self.channel.config.include_patient_data;
        let mut alerts = Vec::new();
        for item in &delivery.items {
            match self.db.get(item.alert_id) {
                Ok(stored) => alerts.push(AlertDocument::new(
                    &stored,
                    item.change,
                    item.by.as_deref(),
                    &self.origin,
                    include,
                )),
                Err(AlertDbError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if alerts.is_empty() {
            return Ok(Err("its alerts are no longer in the database".into()));
        }
        let notice = Notice {
            key: delivery.key.clone(),
            alerts,
            digest: delivery.group_key == "digest",
            storm: [super::route::STORM, super::route::STATUS_STORM]
                .contains(&delivery.group_key.as_str()),
            timezone: self.config.timezone.name().to_owned(),
        };
        Ok(match self.channel.render(&notice) {
            Ok(body) => {
                store::set_body(self.db.conn(), delivery.id, &body).map_err(self.sqlite())?;
                Ok(body)
            }
            Err(e) => Err(e),
        })
    }

    /// Records the outcomes of a batch in one transaction, then counts and logs them.
    fn record(
        &self,
        outcomes: Vec<(Delivery, Result<Sent, SendError>)>,
        stage: &str,
    ) -> Result<(), AlertDbError> {
        let name = self.channel.config.name.clone();
        let conn = self.db.conn();
        let now = Utc::now();
        let give_up = chrono::Duration::hours(self.config.give_up_hours as i64);
        let mut notes = Vec::with_capacity(outcomes.len());
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(self.sqlite())?;
        let written = (|| {
            for (delivery, result) in &outcomes {
                let note = match result {
                    Ok(sent) => {
                        store::finish(conn, delivery.id, State::Sent, now, None, Some(&sent.0))?;
                        Note::Sent
                    }
                    Err(SendError::Retry { reason, .. })
                        if now.signed_duration_since(delivery.created_at) > give_up =>
                    {
                        let why = format!(
                            "given up after {} attempts: {reason}",
                            delivery.attempts + 1
                        );
                        store::finish(conn, delivery.id, State::Dead, now, Some(&why), None)?;
                        Note::Dead(why)
                    }
                    Err(SendError::Retry { reason, after }) => {
                        let wait = after
                            .unwrap_or_default()
                            .max(backoff(delivery.attempts))
                            .min(Duration::from_secs(3600));
                        let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                        store::finish(
                            conn,
                            delivery.id,
                            State::Pending,
                            next,
                            Some(reason.as_str()),
                            None,
                        )?;
                        Note::Retry(reason.clone(), wait)
                    }
                    Err(SendError::Permanent(reason)) => {
                        store::finish(
                            conn,
                            delivery.id,
                            State::Dead,
                            now,
                            Some(reason.as_str()),
                            None,
                        )?;
                        Note::Refused(reason.clone())
                    }
                };
                notes.push((delivery, note));
            }
            Ok::<(), rusqlite::Error>(())
        })();
        if let Err(e) = written {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(self.sqlite()(e));
        }
        conn.execute_batch("COMMIT").map_err(self.sqlite())?;
        for (delivery, note) in notes {
            match note {
                Note::Sent => {
                    self.metrics.sent.with_label_values(&[&name]).inc();
                    self.health.running(stage);
                    tracing::info!(channel = %name, delivery = delivery.id, group = %delivery.group_key, alerts = delivery.items.len(), "message delivered");
                }
                Note::Retry(reason, wait) => {
                    self.metrics.retried.with_label_values(&[&name]).inc();
                    self.health.degraded(
                        stage,
                        &format!("the receiver did not take a message: {reason}; retrying"),
                    );
                    tracing::warn!(channel = %name, delivery = delivery.id, attempt = delivery.attempts + 1, retry_in_s = wait.as_secs(), reason = %reason, "message not delivered; will retry");
                }
                Note::Dead(why) => {
                    self.metrics.dead.with_label_values(&[&name]).inc();
                    self.health
                        .degraded(stage, &format!("a message was given up on: {why}"));
                    tracing::error!(channel = %name, delivery = delivery.id, reason = %why, "message given up on");
                }
                Note::Refused(reason) => {
                    self.metrics.dead.with_label_values(&[&name]).inc();
                    self.health
                        .degraded(stage, &format!("the receiver refused a message: {reason}"));
                    tracing::error!(channel = %name, delivery = delivery.id, reason = %reason, "message refused; not retried (see `mimamori alerts deliveries --failed`)");
                }
            }
        }
        Ok(())
    }
}

/// What happened to one delivery, for the metrics and the log.
enum Note {
    Sent,
    Retry(String, Duration),
    Dead(String),
    Refused(String),
}

/// Returns once `stop` is set.
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deliveries taken from the queue at once (their outcomes are committed together).
const BATCH: usize = 50;
