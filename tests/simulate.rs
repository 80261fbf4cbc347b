//! The quality test: a simulated clinic (two sites, a roster, a month of logs in four real
//! formats, injected incidents and the confounders that must stay quiet) through the real
//! pipeline — `mimamori import`, then `mimamori alerts` — with precision and recall of each
//! detection measured against the labels.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, Utc};
use common::BIN;

const DETECTIONS: [&str; 4] = [
    "off_hours_login",
    "access_outside_role",
    "concurrent_sessions",
    "bulk_export",
];

fn mimamori(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.join("mimamori.toml"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn each_detection_has_precision_and_recall_of_at_least_095() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = Command::new(BIN)
        .args(["simulate", "--days", "42", "--seed", "11"])
        .args(["--start", "2026-10-05", "--out"])
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ehr-main.csv",
        "ehr-annex.ndjson",
        "winlogbeat.jsonl",
        "vpn.log",
    ] {
        assert!(d.join("logs").join(f).metadata().unwrap().len() > 0, "{f}");
    }
    let summary = mimamori(d, &["import", d.join("logs").to_str().unwrap()]);
    assert!(
        summary.contains("ehr-csv") && summary.contains("json") && summary.contains("syslog"),
        "{summary}"
    );

    let labels: Vec<(String, String, DateTime<Utc>)> =
        std::fs::read_to_string(d.join("labels.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ',').collect();
                (f[0].to_owned(), f[1].to_owned(), time(f[2]))
            })
            .collect();
    let alerts: Vec<serde_json::Value> = mimamori(d, &["alerts", "--json", "--limit", "100000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let matches = |a: &serde_json::Value, l: &(String, String, DateTime<Utc>)| {
        a["rule"] == l.0.as_str()
            && a["user"] == l.1.as_str()
            && time(a["first_seen"].as_str().unwrap()) - Duration::hours(1) <= l.2
            && l.2 <= time(a["last_seen"].as_str().unwrap()) + Duration::hours(1)
    };
    let mut report = String::new();
    let mut ok = true;
    for rule in DETECTIONS {
        let fired: Vec<_> = alerts.iter().filter(|a| a["rule"] == rule).collect();
        let wanted: Vec<_> = labels.iter().filter(|l| l.0 == rule).collect();
        assert!(wanted.len() >= 5, "{rule}: too few incidents to measure");
        let true_positives = fired
            .iter()
            .filter(|a| wanted.iter().any(|l| matches(a, l)))
            .count();
        let found = wanted
            .iter()
            .filter(|l| fired.iter().any(|a| matches(a, l)))
            .count();
        let precision = true_positives as f64 / fired.len().max(1) as f64;
        let recall = found as f64 / wanted.len() as f64;
        report.push_str(&format!(
            "{rule}: {} alerts, {} incidents, precision {precision:.2}, recall {recall:.2}\n",
            fired.len(),
            wanted.len()
        ));
        ok &= precision >= 0.95 && recall >= 0.95;
    }
    println!("{report}");
    assert!(ok, "{report}");

    // The confounders were there and stayed quiet: the night-shift nurse and the on-call
    // doctor at night, n002 moving from main to the annex at lunch.
    for user in ["n004", "d002"] {
        assert!(
            !alerts
                .iter()
                .any(|a| a["rule"] == "off_hours_login" && a["user"] == user),
            "{user}"
        );
    }
    assert!(
        !alerts
            .iter()
            .any(|a| a["rule"] == "concurrent_sessions" && a["user"] == "n002")
    );
    let night = mimamori(
        d,
        &[
            "search",
            "user.name:n004 AND event.action:login",
            "--from",
            "2000-01-01",
            "--json",
            "--limit",
            "5",
        ],
    );
    assert_eq!(night.lines().count(), 5, "the night shift worked");

    // A backtest over the same log gives what the import gave: same order, same dedup.
    let backtest = mimamori(d, &["rules", "backtest", "--from", "2026-10-01"]);
    assert!(
        backtest.contains(&format!(
            ": {} alert(s) would have been raised",
            alerts.len()
        )),
        "import raised {}; backtest: {}",
        alerts.len(),
        backtest.lines().last().unwrap_or("")
    );
}

#[test]
fn a_simulated_week_ends_yesterday_and_says_what_to_run_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A relative --out: the config it writes still works from anywhere.
    let out = Command::new(BIN)
        .current_dir(d)
        .args(["simulate", "--days", "3", "--out", "sim"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let d = &d.join("sim");
    let config = d.join("mimamori.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains(&format!("data_dir = \"{}", d.display())),
        "{written}"
    );
    assert!(
        said.contains(&format!("mimamori --config {} import", config.display()))
            && said.contains("alerts --since 3d"),
        "{said}"
    );
    // Three days that end yesterday, in the clinic's zone.
    let start = (Utc::now() + Duration::hours(9) - Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        said.contains(&format!("simulated 3 days from {start}")),
        "{said}"
    );
    // A start too late for the days asked is refused with the latest that works.
    let out = Command::new(BIN)
        .args(["simulate", "--days", "3", "--start", "2099-01-01", "--out"])
        .arg(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the latest start is"));
}
