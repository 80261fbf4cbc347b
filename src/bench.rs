//! `mimamori bench`: the real pipeline in this process, fed over TCP by a generator thread, on a
//! throw-away data directory. Prints ingest throughput end to end (sent until searchable),
//! search latency percentiles, index and log bytes per event, and peak RSS.

use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use store::SearchRequest;

use crate::config::Config;
use crate::serve::{runtime, start};

const USERS: u64 = 20_000;
const PATIENTS: u64 = 2_000_000;
const ACTIONS: &[&str] = &[
    "VIEW_CHART",
    "VIEW_NOTE",
    "EDIT_NOTE",
    "PRINT",
    "EXPORT",
    "LOGIN",
    "LOGOUT",
    "SEARCH_PT",
];
/// 2026-03-01T00:00:00Z; events are 8.64 ms apart (10,000 a day... per 86.4 s).
const BASE_MICROS: i64 = 1_772_323_200_000_000;
const STEP_MICROS: i64 = 8_640;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn message(i: u64, rng: &mut Rng, out: &mut Vec<u8>) {
    let t = DateTime::<Utc>::from_timestamp_micros(BASE_MICROS + i as i64 * STEP_MICROS)
        .expect("in range");
    let (user, patient) = (1 + rng.below(USERS), 1 + rng.below(PATIENTS));
    let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
    let ip = (rng.below(256), rng.below(256), 1 + rng.below(254));
    let _ = write!(
        out,
        "<174>1 {} ehr-app{:02} EhrAudit {} AUDIT [ehr@32473 user=\"u{user:06}\" patient=\"P{patient:07}\" \
         action=\"{action}\"] src=10.{}.{}.{} ws=WS{:04} result=OK 患者カルテ参照",
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        1 + rng.below(24),
        1000 + rng.below(9000),
        ip.0,
        ip.1,
        ip.2,
        rng.below(5000),
    );
}

/// Sends `n` messages octet-counted; returns the bytes of the messages (the raw log received).
fn send(addr: SocketAddr, n: u64) -> anyhow::Result<u64> {
    let stream = TcpStream::connect(addr)?;
    let mut w = BufWriter::with_capacity(256 << 10, stream);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut msg = Vec::with_capacity(512);
    let mut raw = 0;
    for i in 0..n {
        msg.clear();
        message(i, &mut rng, &mut msg);
        write!(w, "{} ", msg.len())?;
        w.write_all(&msg)?;
        raw += msg.len() as u64;
    }
    w.flush()?;
    Ok(raw)
}

/// The sustained UDP rate the bench holds, and for how long.
const UDP_RATE: u64 = 50_000;
const UDP_SECONDS: u64 = 10;

/// Sends `n` RFC 5424 datagrams paced at `rate` per second; returns how many were sent and
/// their bytes.
fn send_udp(addr: SocketAddr, n: u64, rate: u64) -> anyhow::Result<(u64, u64)> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    let mut rng = Rng(0x5151_7a7a_1234_abcd);
    let mut msg = Vec::with_capacity(512);
    let mut raw = 0;
    let started = Instant::now();
    for i in 0..n {
        if i % 500 == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        msg.clear();
        // Later timestamps than the TCP part, so no datagram repeats a TCP message.
        message(100_000_000 + i, &mut rng, &mut msg);
        socket.send(&msg)?;
        raw += msg.len() as u64;
    }
    Ok((n, raw))
}

/// Bytes per record of the log's sealed (compressed) segments: what the log costs once the
/// segment being written is full.
fn sealed_bytes_per_record(wal: &Path) -> Option<f64> {
    let mut segments: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(wal)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_stem()?.to_str()?.parse().ok()?;
            Some((stem, path))
        })
        .collect();
    segments.sort();
    let (mut bytes, mut records) = (0u64, 0u64);
    for pair in segments.windows(2) {
        if pair[0].1.extension().is_some_and(|e| e == "walz") {
            bytes += std::fs::metadata(&pair[0].1).ok()?.len();
            records += pair[1].0 - pair[0].0;
        }
    }
    (records > 0).then(|| bytes as f64 / records as f64)
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub fn run(
    events: u64,
    searches: usize,
    import_mb: u64,
    big_file_mb: u64,
    keep: bool,
) -> anyhow::Result<()> {
    let work = tempfile_dir()?;
    let mut checked = Config::load(None, Some(&work.join("data")))?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    checked.config.syslog.tcp_listen = vec![any];
    checked.config.syslog.udp_listen = vec![any];
    checked.config.http.listen = any;
    let rt = runtime()?;
    let result = rt.block_on(async {
        let registry = prometheus::Registry::new();
        let running = start(&checked, registry.clone()).await?;
        let addr = running.tcp_addrs[0];
        println!("mimamori bench: {events} RFC 5424 access-log messages over TCP (octet counting) into {}", work.display());
        let started = Instant::now();
        let sender = std::thread::spawn(move || send(addr, events));
        let index = running.index().clone();
        loop {
            if index.num_events() >= events {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not all events searchable after 600 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let raw_tcp = sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
        println!(
            "ingest:  {:.0} events/s end to end (sent until searchable), {events} events in {:.2} s",
            events as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        // The live rules read the log behind the index: how long until they have every event.
        let rules_read = || metric_sum(&registry, "mimamori_rules_events_total") + metric_sum(&registry, "mimamori_rules_held_events");
        while rules_read() < events as f64 && started.elapsed() < Duration::from_secs(1800) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let rules_elapsed = started.elapsed();
        println!(
            "rules:   {:.0} events/s (every event read by the live rules {:.1} s after the last was searchable)",
            rules_read().min(events as f64) / rules_elapsed.as_secs_f64(),
            (rules_elapsed - elapsed).as_secs_f64()
        );
        let index_for_search = index.clone();
        let timings = tokio::task::spawn_blocking(move || time_searches(&index_for_search, events, searches)).await??;
        print_timings(timings);
        let (index_for_review, clinic) = (index.clone(), checked.clinic.clone());
        tokio::task::spawn_blocking(move || time_review(&index_for_review, &clinic, events)).await??;
        let udp_addr = running.udp_addrs[0];
        let before = index.num_events();
        let udp_events = UDP_RATE * UDP_SECONDS;
        let drops_before = ingest::udp_kernel_drops(udp_addr).unwrap_or(0);
        let sender = std::thread::spawn(move || send_udp(udp_addr, udp_events, UDP_RATE));
        let (sent, raw_udp) = sender.join().map_err(|_| anyhow::anyhow!("udp sender panicked"))??;
        // Wait until the index has stopped growing: everything received is searchable.
        let mut last = (index.num_events(), Instant::now());
        while last.1.elapsed() < Duration::from_secs(3) && index.num_events() - before < sent {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = index.num_events();
            if now != last.0 {
                last = (now, Instant::now());
            }
        }
        let received = index.num_events() - before;
        let drops = ingest::udp_kernel_drops(udp_addr).unwrap_or(0) - drops_before;
        println!(
            "udp:     {sent} datagrams at {UDP_RATE}/s for {UDP_SECONDS} s: {received} searchable, {} missing, {drops} counted as kernel drops",
            sent - received
        );
        running.shutdown().await?;
        // The raw bytes of what was stored: datagrams the kernel dropped are not in the store.
        Ok::<u64, anyhow::Error>(raw_tcp + raw_udp * received / sent.max(1))
    });
    let data = work.join("data");
    let (index_bytes, wal_bytes) = (dir_bytes(&data.join("index")), dir_bytes(&data.join("wal")));
    // TCP and UDP events together.
    let stored = store::EventIndex::open_read_only(&data).map_or(events, |i| i.num_events());
    let raw = *result.as_ref().unwrap_or(&0);
    println!(
        "size:    index {:.0} bytes/event, write-ahead log {:.0} bytes/event ({stored} events); raw messages {:.0} bytes/event; log + index = {:.2}x the raw bytes received",
        index_bytes as f64 / stored.max(1) as f64,
        wal_bytes as f64 / stored.max(1) as f64,
        raw as f64 / stored.max(1) as f64,
        (index_bytes + wal_bytes) as f64 / raw.max(1) as f64
    );
    if let Ok(index) = store::EventIndex::open_read_only(&data) {
        print_index_parts(&index);
    }
    if let Some(sealed) = sealed_bytes_per_record(&data.join("wal")) {
        let index = index_bytes as f64 / stored.max(1) as f64;
        println!(
            "size:    sealed log segments {sealed:.0} bytes/event (the one being written is plain until full); index + sealed log = {:.2}x the raw bytes",
            (index + sealed) / (raw as f64 / stored.max(1) as f64)
        );
    }
    println!("memory:  peak RSS {:.0} MiB", peak_rss_mib());
    let result = result
        .and_then(|_| crate::bench_import::run(&work, import_mb, big_file_mb))
        .and_then(|()| crate::bench_rules::run(&work))
        .and_then(|()| crate::bench_delivery::run(&work));
    if keep {
        println!("kept:    {}", work.display());
    } else {
        std::fs::remove_dir_all(&work).ok();
    }
    result
}

/// Times the weekly review of the week holding the bench's events (all of them, in a few
/// hours: the densest week a store of this size can have).
fn time_review(
    index: &store::EventIndex,
    clinic: &rules::clinic::Clinic,
    events: u64,
) -> anyhow::Result<()> {
    let first = DateTime::<Utc>::from_timestamp_micros(BASE_MICROS).expect("in range");
    let week = report::Period::of(
        first.with_timezone(&clinic.zone).date_naive(),
        clinic.zone,
        report::Span::Week,
    );
    let sources = report::weekly::Sources {
        index,
        alerts: None,
        clinic,
        archive: None,
        signoff_days: 7,
        dormant_days: 30,
        appointments: None,
    };
    let started = Instant::now();
    let review = report::WeeklyReport::build(&sources, week, Utc::now())?;
    let built = started.elapsed();
    let html = report::render(&review, report::Format::Html, report::Lang::Ja)?;
    println!(
        "review:  the weekly review of {} ({} events, {events} in the store) built in {:.2} s, its HTML {} KiB",
        review.week,
        review.events,
        built.as_secs_f64(),
        html.len() / 1024
    );
    Ok(())
}

type Timings = Vec<(&'static str, Vec<Duration>)>;

/// A kind of search: its name, how to make a query, and whether it has a 24 h time range.
type SearchKind = (&'static str, fn(&mut Rng) -> String, bool);

/// The search timings alone, over `dir`, the data directory of a kept bench of `events`.
pub fn searches_only(dir: &std::path::Path, events: u64, searches: usize) -> anyhow::Result<()> {
    let index = store::EventIndex::open_read_only(&dir.join("data"))
        .or_else(|_| store::EventIndex::open_read_only(dir))
        .with_context(|| format!("no bench data directory at {}", dir.display()))?;
    println!(
        "mimamori bench: searches over {} ({} events)",
        dir.display(),
        index.num_events()
    );
    print_index_parts(&index);
    print_timings(time_searches(&index, events, searches)?);
    Ok(())
}

/// Where the index's bytes go, per event: the parts of at least 0.5 bytes.
fn print_index_parts(index: &store::EventIndex) {
    let Ok(parts) = index.space_usage() else {
        return;
    };
    let events = index.num_events().max(1) as f64;
    let shown: Vec<String> = parts
        .iter()
        .map(|(part, bytes)| (part, *bytes as f64 / events))
        .filter(|(_, per_event)| *per_event >= 0.5)
        .map(|(part, per_event)| format!("{part} {per_event:.1}"))
        .collect();
    println!("index:   bytes/event by part: {}", shown.join(", "));
}

/// The sum of a metric's series in `registry` (0 when it has none).
fn metric_sum(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn print_timings(timings: Timings) {
    for (name, mut t) in timings {
        t.sort();
        println!(
            "search:  {name:<34} p50 {:.2} ms  p95 {:.2} ms  ({} queries)",
            percentile(&t, 0.50),
            percentile(&t, 0.95),
            t.len()
        );
    }
}

fn time_searches(index: &store::EventIndex, events: u64, n: usize) -> anyhow::Result<Timings> {
    let mut rng = Rng(42);
    let span_micros = events as i64 * STEP_MICROS;
    let mut out: Timings = Vec::new();
    // As in a running server, each segment's time columns are open before the first search
    // timed (a fresh process opens them on its first search: 70 ms over ten million events).
    index
        .search(&SearchRequest::newest("*", 1))
        .context("bench search")?;
    let kinds: [SearchKind; 4] = [
        (
            "user term",
            |r| format!("user.name:u{:06}", 1 + r.below(USERS)),
            false,
        ),
        (
            "user term + 24h range",
            |r| format!("user.name:u{:06}", 1 + r.below(USERS)),
            true,
        ),
        (
            "patient term + 24h range",
            |r| format!("patient.id:P{:07}", 1 + r.below(PATIENTS)),
            true,
        ),
        ("word in message + 24h range", |_| "カルテ".to_owned(), true),
    ];
    for (name, query, ranged) in kinds {
        let mut timings = Vec::with_capacity(n);
        for _ in 0..n {
            let (from, to) = if ranged {
                let start = BASE_MICROS + (rng.below(span_micros.max(1) as u64) as i64);
                (
                    DateTime::from_timestamp_micros(start),
                    DateTime::from_timestamp_micros(start + 86_400_000_000),
                )
            } else {
                (None, None)
            };
            let request = SearchRequest {
                query: query(&mut rng),
                from,
                to,
                limit: 100,
                offset: 0,
                max_bytes: store::MAX_RESULT_BYTES,
                // As the search page asks for its rows (and the API with total_up_to): the
                // count stops at 10,000.
                count_up_to: Some(store::COUNTED_MATCHES),
            };
            let t = Instant::now();
            index.search(&request).context("bench search")?;
            timings.push(t.elapsed());
        }
        out.push((name, timings));
    }
    // The web UI's work per page: the search page (50 rows, the histogram, five facets) over
    // 24 hours, and a patient's access report over a year (up to 5,000 accesses).
    let mut page = Vec::with_capacity(n);
    let mut report = Vec::with_capacity(n);
    for _ in 0..n {
        let start = BASE_MICROS + (rng.below(span_micros.max(1) as u64) as i64);
        let from = DateTime::from_timestamp_micros(start).context("bench time")?;
        let to = from + chrono::Duration::hours(24);
        let t = Instant::now();
        index
            .search(&SearchRequest {
                count_up_to: Some(store::COUNTED_MATCHES),
                ..SearchRequest::newest("*", 50).between(from, to)
            })
            .context("bench page")?;
        index
            .facets(&store::FacetRequest {
                query: "*".into(),
                from,
                to,
                fields: [
                    "user.name",
                    "event.action",
                    "host.name",
                    "site",
                    "event.dataset",
                ]
                .map(String::from)
                .to_vec(),
                size: 8,
                bucket_secs: 864,
            })
            .context("bench facets")?;
        page.push(t.elapsed());
        let patient = format!(
            "patient.id:P{:07} AND event.dataset:*",
            1 + rng.below(PATIENTS)
        );
        let year_from = DateTime::from_timestamp_micros(BASE_MICROS).context("bench time")?;
        let t = Instant::now();
        index
            .search(&SearchRequest {
                max_bytes: store::MAX_RESULT_BYTES * 4,
                ..SearchRequest::newest(patient, 5000)
                    .between(year_from, year_from + chrono::Duration::days(365))
            })
            .context("bench report")?;
        report.push(t.elapsed());
    }
    // The UI's histogram alone over a week that holds every event: all events per hour.
    let mut week = Vec::with_capacity(n);
    let from = DateTime::from_timestamp_micros(BASE_MICROS).context("bench time")?;
    for _ in 0..n {
        let t = Instant::now();
        let counted = index
            .facets(&store::FacetRequest {
                query: "*".into(),
                from,
                to: from + chrono::Duration::days(7),
                fields: Vec::new(),
                size: 1,
                bucket_secs: 3600,
            })
            .context("bench histogram")?;
        week.push(t.elapsed());
        anyhow::ensure!(counted.histogram.len() == 168, "a week has 168 hours");
    }
    out.push(("UI search page (50 rows, histogram, 5 facets), 24h", page));
    out.push(("histogram of a week, all events per hour", week));
    out.push(("UI patient access report, a year", report));
    Ok(out)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mimamori-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
