//! Delivery numbers: from an event sent until its alert's message reaches a webhook receiver,
//! and an outbox of 100,000 queued notifications drained while the rules go on raising alerts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alerting::channels::{ChannelConfig, Kind};
use alerting::db::AlertDb;
use chrono::Utc;

use crate::config::Config;
use crate::serve::{runtime, start};

/// Notifications queued at once for the drain.
const QUEUED: usize = 100_000;

/// A webhook receiver: counts the alerts it is sent and notes when each user's first arrived.
#[derive(Default)]
struct Received {
    alerts: usize,
    first_seen: std::collections::HashMap<String, Instant>,
}

fn receiver() -> anyhow::Result<(SocketAddr, Arc<Mutex<Received>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let got = Arc::new(Mutex::new(Received::default()));
    let shared = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let got = shared.clone();
            std::thread::spawn(move || serve(stream, &got));
        }
    });
    Ok((addr, got))
}

fn serve(stream: TcpStream, got: &Mutex<Received>) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut stream = stream;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let now = Instant::now();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            let alerts = v["data"]["alerts"].as_array().cloned().unwrap_or_default();
            let mut g = got.lock().unwrap_or_else(|e| e.into_inner());
            g.alerts += alerts.len();
            for a in alerts {
                if let Some(u) = a["user"].as_str() {
                    g.first_seen.entry(u.to_owned()).or_insert(now);
                }
            }
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn webhook(addr: SocketAddr) -> anyhow::Result<ChannelConfig> {
    Ok(toml::from_str(&format!(
        "name = \"bench\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecrets = [\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"]"
    ))?)
}

pub fn run(work: &Path) -> anyhow::Result<()> {
    let (addr, got) = receiver()?;
    let mut checked = Config::load(None, Some(&work.join("delivery-data")))?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    checked.config.syslog.tcp_listen = vec![any];
    checked.config.syslog.udp_listen = Vec::new();
    checked.config.http.listen = any;
    checked.config.detections.lateness_seconds = 0;
    checked.config.delivery.group_wait_seconds = 0;
    // A hundred new alerts in a row is a storm to the guard (they would go out as one message
    // every group_interval): the latency wanted is of one alert's own message.
    checked.config.delivery.storm_limit = 0;
    let channel = webhook(addr)?;
    anyhow::ensure!(channel.kind == Kind::Webhook);
    checked.config.channels = vec![channel];
    let rt = runtime()?;
    rt.block_on(async {
        let running = start(&checked, prometheus::Registry::new()).await?;
        let tcp = running.tcp_addrs[0];
        let db_path = alerting::runner::alerts_db_path(&checked.config.storage.data_dir);
        let shared = got.clone();
        let l = tokio::task::spawn_blocking(move || latency(tcp, &shared)).await??;
        let pct = |l: &[Duration], p: f64| {
            l[((l.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
        };
        println!(
            "deliver: event sent until its alert reaches a webhook: p50 {:.0} ms  p95 {:.0} ms  ({} alerts; lateness and group_wait 0: live, the defaults add lateness_seconds + group_wait_seconds)",
            pct(&l, 0.5),
            pct(&l, 0.95),
            l.len()
        );
        let shared = got.clone();
        let (drain, live) =
            tokio::task::spawn_blocking(move || drain(tcp, &db_path, &shared)).await??;
        println!(
            "deliver: {QUEUED} queued notifications drained in {:.1} s ({:.0}/s to one webhook without a rate limit; chat channels send 1/s by design); meanwhile live events raised their alerts in p95 {:.0} ms (stored; their messages queue behind the backlog)",
            drain.as_secs_f64(),
            QUEUED as f64 / drain.as_secs_f64(),
            pct(&live, 0.95)
        );
        running.shutdown().await?;
        Ok::<(), anyhow::Error>(())
    })
}

/// Sends exports by distinct users one at a time; for each, the time until its alert arrives.
fn latency(tcp: SocketAddr, got: &Mutex<Received>) -> anyhow::Result<Vec<Duration>> {
    let mut stream = TcpStream::connect(tcp)?;
    let mut out = Vec::new();
    for i in 0..100 {
        let user = format!("lat{i:04}");
        out.push(one(&mut stream, &user, got)?);
    }
    out.sort();
    Ok(out)
}

/// Sends one export of 500 records by `user` (it raises an alert); returns when it was sent.
fn export(stream: &mut TcpStream, user: &str) -> anyhow::Result<Instant> {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sent = Instant::now();
    writeln!(
        stream,
        "<134>1 {now} ehr01 ehr - - - user={user} action=EXPORT count=500"
    )?;
    Ok(sent)
}

fn one(stream: &mut TcpStream, user: &str, got: &Mutex<Received>) -> anyhow::Result<Duration> {
    let sent = export(stream, user)?;
    loop {
        if let Some(t) = got
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_seen
            .get(user)
        {
            return Ok(t.saturating_duration_since(sent));
        }
        anyhow::ensure!(
            sent.elapsed() < Duration::from_secs(30),
            "{user}'s alert not delivered in 30 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends an export by `user`; the time until its alert is stored (the rules at work).
fn stored(stream: &mut TcpStream, user: &str, db: &AlertDb) -> anyhow::Result<Duration> {
    let sent = export(stream, user)?;
    loop {
        let newest = db.list(&alerting::db::AlertFilter {
            limit: 1,
            ..Default::default()
        })?;
        if newest.first().and_then(|a| a.alert.user.as_deref()) == Some(user) {
            return Ok(sent.elapsed());
        }
        anyhow::ensure!(
            sent.elapsed() < Duration::from_secs(30),
            "{user}'s alert not stored in 30 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Queues [`QUEUED`] alerts at once (each its own group), then times their delivery while
/// live events go on raising alerts (timed until stored: the rules are not held up).
fn drain(
    tcp: SocketAddr,
    db_path: &Path,
    got: &Mutex<Received>,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let before = got.lock().unwrap_or_else(|e| e.into_inner()).alerts;
    let mut db = AlertDb::open(db_path, chrono::Duration::hours(1))?;
    let now = Utc::now();
    let started = Instant::now();
    for chunk in (0..QUEUED).collect::<Vec<_>>().chunks(5_000) {
        let alerts: Vec<rules::Alert> = chunk
            .iter()
            .map(|i| rules::Alert {
                rule: "bulk_export".into(),
                severity: rules::Severity::High,
                user: Some(format!("q{i:06}")),
                site: None,
                first_seen: now,
                last_seen: now,
                count: 1,
                explanation: format!("q{i:06} queued"),
                evidence: Vec::new(),
                subject: None,
                private: Vec::new(),
            })
            .collect();
        db.record_all(&alerts)?;
    }
    let mut stream = TcpStream::connect(tcp)?;
    let mut live = Vec::new();
    let mut i = 0;
    loop {
        let done = got.lock().unwrap_or_else(|e| e.into_inner()).alerts - before;
        if done >= QUEUED {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "{done} of {QUEUED} delivered after 900 s"
        );
        if live.len() < 20 {
            live.push(stored(&mut stream, &format!("live{i:04}"), &db)?);
            i += 1;
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    live.sort();
    Ok((started.elapsed(), live))
}
