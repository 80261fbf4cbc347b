//! Rule cost and alert latency: the engine with the four detections and 46 custom rules (50 in
//! all) timed per event in memory; then a running server, fed over TCP, timed from sending an
//! event that must raise an alert until that alert is in the alert database.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use alerting::db::{AlertDb, AlertFilter};
use chrono::Utc;
use rules::engine::{CustomRule, CustomRuleConfig};
use store::{Event, Outcome};

use crate::config::Config;
use crate::serve::{runtime, start};

const ACTIONS: &[&str] = &[
    "login",
    "logout",
    "record.view",
    "record.update",
    "record.print",
    "record.export",
];

fn custom_rules(n: usize) -> Vec<CustomRule> {
    (0..n)
        .map(|i| {
            let (filter, distinct) = match i % 4 {
                0 => (
                    format!(
                        "event.action:{} AND user.name:u{:03}*",
                        ACTIONS[i % ACTIONS.len()],
                        i
                    ),
                    None,
                ),
                1 => ("event.action:login_failed".to_owned(), None),
                2 => (format!("record.count:[{} TO *]", 10 + i), None),
                _ => (
                    "event.action:record.view".to_owned(),
                    Some("patient.id".to_owned()),
                ),
            };
            let config = CustomRuleConfig {
                name: format!("bench_{i}"),
                filter,
                group_by: vec!["user.name".into()],
                distinct,
                threshold: 1_000_000,
                window_minutes: 60,
                severity: rules::Severity::Low,
                explanation: None,
            };
            CustomRule::new(i, &config).expect("valid bench rule")
        })
        .collect()
}

fn event(i: u64) -> Event {
    let mut e = Event::new("bench", "ehr.audit", format!("bench {i}"), Utc::now());
    e.timestamp = Utc::now() - chrono::Duration::seconds(100_000 - (i % 100_000) as i64);
    e.ingested = e.timestamp;
    e.user = Some(format!("u{:05}", i % 300));
    e.action = ACTIONS[(i % ACTIONS.len() as u64) as usize].into();
    e.outcome = Outcome::Success;
    e.patient = Some(format!("P{:07}", i * 7919 % 200_000));
    e.source_ip = Some(format!("10.10.{}.{}", 1 + i % 2, 1 + i % 250));
    e.record_count = Some(1 + i % 5);
    e.message = format!("bench event {i}");
    e
}

pub fn run(work: &Path) -> anyhow::Result<()> {
    let mut checked = Config::load(None, Some(&work.join("rules-data")))?;
    checked.custom_rules = custom_rules(46);
    let mut engine = checked.engine();
    let events: Vec<Event> = (0..200_000).map(event).collect();
    let started = Instant::now();
    let mut alerts = 0usize;
    for e in &events {
        alerts += engine.process(e).len();
    }
    let per_event = started.elapsed().as_secs_f64() / events.len() as f64;
    println!(
        "rules:   50 rules active: {:.1} µs per event ({:.0} events/s on one core; {} events, {alerts} alerts)",
        per_event * 1e6,
        1.0 / per_event,
        events.len()
    );

    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    checked.config.syslog.tcp_listen = vec![any];
    checked.config.syslog.udp_listen = Vec::new();
    checked.config.http.listen = any;
    checked.config.storage.commit_interval_ms = 1000;
    // The pipeline's own latency; live, an event alone also waits detections.lateness_seconds.
    let lateness = checked.config.detections.lateness_seconds;
    checked.config.detections.lateness_seconds = 0;
    let rt = runtime()?;
    rt.block_on(async {
        let running = start(&checked, prometheus::Registry::new()).await?;
        let addr = running.tcp_addrs[0];
        let db_path = alerting::runner::alerts_db_path(&checked.config.storage.data_dir);
        let latencies = tokio::task::spawn_blocking(move || latency(addr, &db_path)).await??;
        running.shutdown().await?;
        let mut l = latencies;
        l.sort();
        let pct = |p: f64| l[((l.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
        println!(
            "alerts:  event sent until its alert is stored: p50 {:.1} ms  p95 {:.1} ms  ({} alerts; with lateness 0, the default {lateness} s adds up to that much)",
            pct(0.5),
            pct(0.95),
            l.len()
        );
        Ok::<(), anyhow::Error>(())
    })
}

/// Sends exports of 500 records by distinct users, one at a time, and waits for each alert.
fn latency(addr: SocketAddr, db_path: &Path) -> anyhow::Result<Vec<Duration>> {
    let mut tcp = TcpStream::connect(addr)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Opened once the server has created it.
    while !db_path.exists() {
        anyhow::ensure!(Instant::now() < deadline, "no alert database");
        std::thread::sleep(Duration::from_millis(10));
    }
    let db = AlertDb::open(db_path, chrono::Duration::hours(1))?;
    for i in 0..200 {
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let sent = Instant::now();
        writeln!(
            tcp,
            "<134>1 {now} ehr01 ehr - - - user=lat{i:04} action=EXPORT count=500"
        )?;
        loop {
            let n = db.list(&AlertFilter {
                limit: 1,
                ..AlertFilter::default()
            })?;
            if n.first().and_then(|a| a.alert.user.as_deref()) == Some(&format!("lat{i:04}")) {
                out.push(sent.elapsed());
                break;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "alert {i} not stored in 10 s"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok(out)
}
