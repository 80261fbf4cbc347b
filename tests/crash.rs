//! kill -9 under load: every event the log accepted is searchable exactly once after restart.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, token};

/// Records in the write-ahead log, read with the store's own reader.
fn wal_records(server: &Server) -> u64 {
    store::replay(&server.data_dir(), 1)
        .map_while(Result::ok)
        .count() as u64
}

#[test]
fn kill_9_under_load_then_restart_loses_and_repeats_nothing() {
    let mut server = Server::start("");
    let tok = token();
    let addr = server.tcp;
    let sender = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for i in 0..50_000 {
            let line = format!(
                "<134>1 2026-11-22T01:00:00.000Z pc1 ehr - - - crash {tok}-k{i} user=u{}\n",
                i % 50
            );
            if s.write_all(line.as_bytes()).is_err() {
                return i;
            }
        }
        50_000
    });
    std::thread::sleep(Duration::from_millis(700));
    server.kill9();
    let sent = sender.join().unwrap();
    let accepted = wal_records(&server);
    assert!(accepted > 0, "some events were accepted before the kill");
    server.spawn();
    let tok_query = format!("crash AND {}", server_token(&server, accepted));
    let hits = server.wait_for(&tok_query, accepted as usize);
    let mut ids: Vec<String> = hits
        .iter()
        .map(|h| h["message"].as_str().unwrap().to_owned())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event twice");
    assert_eq!(
        n as u64, accepted,
        "every accepted event is searchable (sent {sent})"
    );
    // And new events still flow after the restart.
    let mut s = TcpStream::connect(server.tcp).unwrap();
    s.write_all(b"<13>Nov 22 10:00:00 host app: after-restart-marker\n")
        .unwrap();
    drop(s);
    assert_eq!(server.wait_for("after-restart-marker", 1).len(), 1);
    server.stop();
}

/// The token of the run (read back from the first stored event).
fn server_token(server: &Server, _accepted: u64) -> String {
    let hit = &server.wait_for("crash", 1)[0];
    let message = hit["message"].as_str().unwrap();
    let word = message.split_whitespace().nth(1).unwrap();
    word.rsplit_once("-k").unwrap().0.to_owned()
}

#[test]
fn records_an_import_stored_but_had_not_indexed_when_killed_are_not_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The index commits rarely: what the import writes stays unindexed until its end.
    std::fs::write(
        d.join("m.toml"),
        format!(
            "[storage]\ndata_dir = \"{}\"\ncommit_interval_ms = 60000\n",
            d.join("data").display()
        ),
    )
    .unwrap();
    let lines: String = (0..60_000)
        .map(|i| format!("<13>Nov 22 10:00:00 h0 app: reimport-marker line {i} of the file\n"))
        .collect();
    std::fs::write(d.join("big.log"), lines).unwrap();
    let import = || {
        let mut c = std::process::Command::new(common::BIN);
        c.arg("--config")
            .arg(d.join("m.toml"))
            .arg("import")
            .arg(d.join("big.log"));
        c
    };
    let mut first = import()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let data = d.join("data");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let n = store::replay(&data, 1).map_while(Result::ok).count();
        if n > 0 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        stored > 0,
        "the import stored something before it was killed"
    );
    let out = import().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = std::process::Command::new(common::BIN)
        .arg("--config")
        .arg(d.join("m.toml"))
        .args(["search", "reimport-marker", "--limit", "100000", "--json"])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event.id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 60_000, "every line stored");
    assert_eq!(
        ids.len(),
        60_000,
        "and none twice ({stored} were stored before the kill)"
    );
}
