//! Import throughput, as `mimamori import` runs it (a child process on a fresh data directory):
//! Winlogbeat JSON, EHR CSV in Shift_JIS and FHIR ndjson files generated from the real samples
//! with unique record numbers, ids and times; EVTX (which cannot be generated) is timed as
//! parsing the real 1.1 MB sample repeatedly. Peak RSS of each import is read from /proc.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples")
}

/// Runs every import benchmark; `mb` is the size of each generated file.
pub fn run(work: &Path, mb: u64, big_file_mb: u64) -> anyhow::Result<()> {
    let target = mb << 20;
    let files = [
        ("Winlogbeat JSON", "winlogbeat", winlogbeat(work, target)?),
        (
            "EHR CSV (Shift_JIS)",
            "ehr-csv",
            ehr_csv(work, "ehr.csv", target)?,
        ),
        ("FHIR ndjson", "fhir", fhir(work, target)?),
    ];
    for (name, format, file) in files {
        let r = import(work, &file, format)?;
        r.print(name);
        std::fs::remove_file(&file).ok();
    }
    evtx_parse()?;
    if big_file_mb > 0 {
        let file = winlogbeat(work, big_file_mb << 20)?;
        let r = import(work, &file, "winlogbeat")?;
        r.print(&format!("one {big_file_mb} MB winlogbeat file"));
        std::fs::remove_file(&file).ok();
    }
    Ok(())
}

struct Run {
    bytes: u64,
    read: u64,
    accepted: u64,
    elapsed: Duration,
    peak_rss_kib: u64,
}

impl Run {
    fn print(&self, name: &str) {
        let s = self.elapsed.as_secs_f64();
        println!(
            "import:  {name:<28} {:>8.0} records/s  {:>6.1} MB/s  ({} records, {} stored, {:.0} MB, peak RSS {} MiB)",
            self.read as f64 / s,
            self.bytes as f64 / 1e6 / s,
            self.read,
            self.accepted,
            self.bytes as f64 / 1e6,
            self.peak_rss_kib / 1024
        );
    }
}

fn import(work: &Path, file: &Path, format: &str) -> anyhow::Result<Run> {
    let data = work.join(format!("import-{format}"));
    let bytes = std::fs::metadata(file)?.len();
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .env("MIMAMORI_DATA_DIR", &data)
        .args(["import", "--allow-rejects", "--format", format])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mimamori import")?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait()?.is_none() {
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| vm_hwm_kib(&s))
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |name: &str| {
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next()?.parse::<u64>().ok())?
            })
            .unwrap_or(0)
    };
    std::fs::remove_dir_all(&data).ok();
    Ok(Run {
        bytes,
        read: number("read"),
        accepted: number("accepted"),
        elapsed,
        peak_rss_kib: peak,
    })
}

fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn writer(path: &Path) -> anyhow::Result<BufWriter<std::fs::File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path)?,
    ))
}

/// The real Winlogbeat lines again and again, each with its own record number and time.
fn winlogbeat(work: &Path, target: u64) -> anyhow::Result<PathBuf> {
    let path = work.join("winlogbeat.jsonl");
    let sample = std::fs::read_to_string(samples().join(
        "windows/json-winlogbeat/empire_enable_rdp_2019-05-18203650.security-excerpt.jsonl",
    ))?;
    let lines: Vec<Value> = sample
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let base = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")?.with_timezone(&Utc);
    ndjson(&path, target, |i| {
        let mut v = lines[(i % lines.len() as u64) as usize].clone();
        v["record_number"] = Value::String((i + 1).to_string());
        v["@timestamp"] =
            Value::String((base + chrono::Duration::milliseconds(i as i64 * 37)).to_rfc3339());
        v
    })?;
    Ok(path)
}

/// Writes `line(0)`, `line(1)`, ... one JSON value per line, until the file holds `target` bytes.
fn ndjson(path: &Path, target: u64, mut line: impl FnMut(u64) -> Value) -> anyhow::Result<()> {
    let mut out = writer(path)?;
    let (mut written, mut i) = (0u64, 0u64);
    while written < target {
        let text = serde_json::to_string(&line(i))?;
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        written += text.len() as u64 + 1;
        i += 1;
    }
    out.flush()?;
    Ok(())
}

/// An EHR access export in Shift_JIS with the usual Japanese headers.
fn ehr_csv(work: &Path, name: &str, target: u64) -> anyhow::Result<PathBuf> {
    let path = work.join(name);
    let mut out = writer(&path)?;
    let header = "日時,利用者ID,利用者名,職種,端末,IPアドレス,患者ID,操作,件数,結果,種別\r\n";
    let actions = [
        "カルテ参照",
        "カルテ更新",
        "処方入力",
        "予約参照",
        "印刷",
        "CSV出力",
        "ログイン",
        "ログアウト",
    ];
    let roles = ["医師", "看護師", "受付", "事務"];
    let categories = ["診療録", "処方", "予約", "患者基本情報", "会計"];
    let mut written = 0u64;
    out.write_all(&encoding_rs::SHIFT_JIS.encode(header).0)?;
    let base = DateTime::parse_from_rfc3339("2026-03-01T00:00:00+09:00")?;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut i = 0u64;
    while written < target {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = base + chrono::Duration::milliseconds(i as i64 * 250);
        let row = format!(
            "{},n{:03},職員{:03},{},MAIN-PC{:02},10.10.1.{},P{:07},{},{},成功,{}\r\n",
            t.format("%Y/%m/%d %H:%M:%S"),
            x % 300,
            x % 300,
            roles[(x % 4) as usize],
            x % 40,
            x % 250 + 1,
            x % 200_000,
            actions[(x >> 8) as usize % actions.len()],
            1 + (x >> 16) % 3,
            categories[(x >> 20) as usize % categories.len()],
        );
        let encoded = encoding_rs::SHIFT_JIS.encode(&row).0;
        out.write_all(&encoded)?;
        written += encoded.len() as u64;
        i += 1;
    }
    out.flush()?;
    Ok(path)
}

/// The R4 example AuditEvent with its id, time, user and patient varied, one per line.
fn fhir(work: &Path, target: u64) -> anyhow::Result<PathBuf> {
    let path = work.join("fhir.ndjson");
    let sample: Value = serde_json::from_str(&std::fs::read_to_string(
        samples().join("ehr/fhir/r5ballot_AuditEvent-example-rest.json"),
    )?)?;
    let base = DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")?.with_timezone(&Utc);
    ndjson(&path, target, |i| {
        let mut v = sample.clone();
        v["id"] = Value::String(format!("bench-{i}"));
        v["recorded"] =
            Value::String((base + chrono::Duration::milliseconds(i as i64 * 100)).to_rfc3339());
        if let Some(e) = v.pointer_mut("/entity/0/what/reference") {
            *e = Value::String(format!("Patient/P{:07}/_history/1", i % 200_000));
        }
        v
    })?;
    Ok(path)
}

/// EVTX parsing and normalization of the real multi-chunk sample, repeated.
fn evtx_parse() -> anyhow::Result<()> {
    let bytes = std::fs::read(samples().join("windows/evtx/Security_with_size_t.evtx"))?;
    let parsers = ingest::import::Parsers {
        syslog: ingest::SyslogParser::new(chrono_tz::Asia::Tokyo),
        ehr: ingest::ehr::EhrMapping::default(),
        filter: ingest::windows::NoiseFilter::default(),
        zone: chrono_tz::Asia::Tokyo,
    };
    let rounds = 30;
    let started = Instant::now();
    let mut records = 0u64;
    for _ in 0..rounds {
        parsers
            .read_evtx(
                std::io::Cursor::new(&bytes),
                bytes.len() as u64,
                Utc::now(),
                &mut |_| records += 1,
            )
            .map_err(anyhow::Error::msg)?;
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "import:  {:<28} {:>8.0} records/s  {:>6.1} MB/s  (parse and normalize only: the real 1.1 MB sample {rounds} times)",
        "EVTX",
        records as f64 / s,
        (bytes.len() * rounds) as f64 / 1e6 / s
    );
    Ok(())
}
