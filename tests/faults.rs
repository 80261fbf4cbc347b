//! Fault injection against the built binary: every promise of the store under the faults it
//! was designed for (ARCHITECTURE.md, "Invariants"). Needs root for the small filesystem.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Server, http_get, http_post, token};

const INGEST: &str = "ingest_tokens = [\"t0ken-for-faults\"]";
const AUTH: (&str, &str) = ("Authorization", "Bearer t0ken-for-faults");

/// A server with lines added to `[storage]`, not started yet.
fn with_storage(extra_storage: &str, extra_http: &str) -> Server {
    let server = Server::prepare("", extra_http, "");
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        config.replacen("[storage]\n", &format!("[storage]\n{extra_storage}\n"), 1),
    )
    .unwrap();
    server
}

/// Sends one syslog line with a fresh token and waits until it is searchable; the token.
fn stored_marker(server: &Server) -> String {
    let tok = token();
    send_tcp(
        server,
        &[format!("<13>1 2026-11-24T10:00:00Z host app - - - {tok}")],
    );
    assert_eq!(server.wait_for(&tok, 1).len(), 1, "{}", server.log());
    tok
}

fn send_tcp(server: &Server, lines: &[String]) {
    let mut s = TcpStream::connect(server.tcp).unwrap();
    for line in lines {
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
    }
}

fn ingest(server: &Server, body: &[u8]) -> Option<(u16, String)> {
    http_post(server.http, "/api/v1/ingest?format=ndjson", &[AUTH], body)
}

fn wal_segments(server: &Server) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(server.data_dir().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    out.sort();
    out
}

/// The words of the stored messages that start with `tok` (the markers a test sent).
fn markers(hits: &[serde_json::Value], tok: &str) -> Vec<String> {
    let mut out: Vec<String> = hits
        .iter()
        .filter_map(|h| h["message"].as_str())
        .flat_map(|m| {
            m.split(' ')
                .filter(|w| w.starts_with(tok))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn an_oversized_record_is_cut_to_fit_and_collection_goes_on() {
    let server = Server::start_full("", INGEST, "");
    let tok = token();
    // One quoted CSV field of 6 MB of control bytes (6x that as JSON), dropped in the spool.
    let mut csv = format!(
        "timestamp,user,action,patient,message\n2026-11-24T10:00:00+09:00,u1,view,P1,\"{tok}-poison "
    );
    for _ in 0..1500 {
        csv.push_str(&"\u{1}".repeat(4095));
        csv.push('\n');
    }
    csv.push_str("\"\n");
    std::fs::write(server.data_dir().join("spool").join("poison.csv"), &csv).unwrap();
    // And the same over HTTP, where it must be answered (and acknowledged) as one record.
    let body = csv.replace("-poison", "-big");
    let (status, answer) = http_post(
        server.http,
        "/api/v1/ingest?format=csv",
        &[AUTH],
        body.as_bytes(),
    )
    .expect("an answer");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"accepted\":1"), "{answer}");
    // A line over the line limit is a reject with its location, not a stop.
    let long = format!("{{\"message\":\"{}\"}}\n", "y".repeat(3 << 20));
    let (status, answer) = ingest(&server, long.as_bytes()).expect("an answer");
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("line 1: line longer than"), "{answer}");
    send_tcp(
        &server,
        &[format!(
            "<13>1 2026-11-24T10:00:00Z host app - - - {tok}-after"
        )],
    );
    assert_eq!(
        server.wait_for(&format!("{tok}-after"), 1).len(),
        1,
        "{}",
        server.log()
    );
    let big = server.wait_for(&format!("{tok}-big"), 1);
    assert_eq!(big.len(), 1);
    assert!(
        big[0]["tags"].to_string().contains("truncated_too_long"),
        "{}",
        big[0]["tags"]
    );
    let poison = server.wait_for(&format!("{tok}-poison"), 1);
    assert_eq!(poison.len(), 1, "the spooled file was stored too");
    let (status, health) = http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains("\"wal-writer\":{\"status\":\"running\"}"),
        "{health}"
    );
    assert!(server.metric("mimamori_events_cut_to_fit_total") >= 2.0);
}

/// Mounts a tmpfs of `size` on `dir` (the test needs root); unmounted when the guard drops.
fn small_filesystem(dir: &Path, size: &str) -> impl Drop {
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test makes a small filesystem and needs root"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    Unmount(dir.to_owned())
}

#[test]
fn sigterm_stops_a_server_whose_disk_is_full_while_syslog_waits() {
    let mut server = with_storage("", "");
    let data = server.data_dir();
    let _unmount = small_filesystem(&data, "16m");
    server.spawn();
    let (tcp, tok) = (server.tcp, token());
    let sender = std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(tcp) else {
            return;
        };
        for i in 0..40_000 {
            let line = format!(
                "<13>1 2026-11-24T10:00:00Z h app - - - {tok}-{i} {}\n",
                "h".repeat(2000)
            );
            if s.write_all(line.as_bytes()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("mimamori_storage_refusing") < 1.0 {
        assert!(Instant::now() < deadline, "the disk never filled");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2)); // syslog held, the channel backing up
    let mut child = server.child.take().unwrap();
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM did not stop the server: {}", server.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sender.join().unwrap();
    assert!(
        server
            .log()
            .contains("unacknowledged syslog events were not written"),
        "the loss of held syslog is said: {}",
        server.log()
    );
}

#[test]
fn a_full_disk_refuses_then_recovers_and_every_acknowledged_event_survives() {
    let mut server = with_storage("", INGEST);
    let data = server.data_dir();
    let _unmount = small_filesystem(&data, "24m");
    common::web::add_user(&server, "admin", "admin", common::web::ADMIN_PASSWORD);
    server.spawn();
    let tok = token();
    let mut acked: Vec<String> = Vec::new();
    let mut refused = 0;
    let filler = "z".repeat(2000);
    for round in 0..400 {
        let mut body = String::new();
        for i in 0..50 {
            body.push_str(&format!("{{\"timestamp\":\"2026-11-24T10:00:00Z\",\"user\":\"u\",\"action\":\"view\",\"message\":\"{tok}-r{round}-{i} {filler}\"}}\n"));
        }
        match ingest(&server, body.as_bytes()) {
            Some((200, _)) => acked.extend((0..50).map(|i| format!("{tok}-r{round}-{i}"))),
            Some((503, answer)) => {
                assert!(answer.contains("store_unavailable"), "{answer}");
                refused += 1;
                if refused > 3 {
                    break;
                }
            }
            other => panic!("unexpected answer {other:?}: {}", server.log()),
        }
    }
    assert!(refused > 0, "the disk never filled");
    assert!(!acked.is_empty());
    let (status, health) = http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 503, "healthz says the log refuses data: {health}");
    assert!(server.metric("mimamori_storage_refusing") >= 1.0);
    // No sign-in that would go unrecorded: the right password is refused, no session given
    // (by the audit trail, or before it by the account database on the same full disk).
    let mut browser = common::web::Browser::new(server.http);
    let page = browser.get("/login");
    let answer = browser.post(
        "/login",
        &[
            ("csrf", &page.csrf()),
            ("name", "admin"),
            ("password", common::web::ADMIN_PASSWORD),
            ("next", "/search"),
        ],
    );
    assert!(
        [500, 503].contains(&answer.status),
        "{}: {}",
        answer.status,
        answer.body
    );
    assert_eq!(browser.get("/search").status, 303, "to the sign-in page");
    // Space again: collection resumes by itself.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=256m"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(grown.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let body = format!(
            "{{\"timestamp\":\"2026-11-24T10:00:00Z\",\"user\":\"u\",\"action\":\"view\",\"message\":\"{tok}-space-back\"}}\n"
        );
        match ingest(&server, body.as_bytes()) {
            Some((200, _)) => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    };
    assert!(after, "ingest did not resume: {}", server.log());
    // The refusal was an alert too (stored once the alert database had room again).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.cli(&["alerts", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("\"rule\":\"storage\"") {
            assert!(text.contains("空き容量"), "said in Japanese first: {text}");
            break;
        }
        assert!(Instant::now() < deadline, "no storage alert: {text}");
        std::thread::sleep(Duration::from_millis(300));
    }
    server.stop();
    server.spawn();
    let hits = server.wait_for(&tok, acked.len() + 1);
    let mut found: Vec<String> = markers(&hits, &format!("{tok}-r"));
    let before = found.len();
    found.dedup();
    assert_eq!(before, found.len(), "no event twice");
    let lost: Vec<&String> = acked
        .iter()
        .filter(|m| found.binary_search(m).is_err())
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost ({} found), e.g. {:?}: {}",
        lost.len(),
        acked.len(),
        found.len(),
        lost.first(),
        server.log()
    );
    assert_eq!(server.search(&format!("{tok}-space-back")).len(), 1);
    server.stop();
}

#[test]
fn a_flipped_byte_costs_one_record_and_verify_names_changes_removals_and_insertions() {
    let mut server = Server::start_full("", INGEST, "");
    let tok = token();
    let lines: Vec<String> = (0..600)
        .map(|i| format!("<13>1 2026-11-24T10:00:00Z host app - - - {tok} n{i:04}"))
        .collect();
    send_tcp(&server, &lines);
    assert_eq!(server.wait_for(&tok, 600).len(), 600);
    server.stop();
    let verify = |server: &Server| {
        let out = server.cli(&["verify"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = verify(&server);
    assert_eq!(code, Some(0), "a clean store verifies: {text}");
    assert!(text.contains("verified"), "{text}");

    let segs = wal_segments(&server);
    assert_eq!(segs.len(), 1, "one segment, plain (the one being written)");
    let saved: Vec<Vec<u8>> = segs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    // One flipped byte in the middle of the active segment: the server starts, nothing cut,
    // and a rebuilt index holds every record but the damaged one.
    let active = segs.last().unwrap();
    let len = std::fs::metadata(active).unwrap().len() as usize;
    flip(active, len / 2);
    server.spawn();
    server.stop();
    assert_eq!(
        std::fs::metadata(active).unwrap().len() as usize,
        len,
        "nothing cut"
    );
    let out = server.cli(&["reindex"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.spawn();
    assert_eq!(server.wait_for(&tok, 599).len(), 599);
    server.stop();
    let (code, text) = verify(&server);
    assert_eq!(code, Some(1));
    assert!(text.contains("FINDING Damaged"), "{text}");
    std::fs::write(active, &saved[saved.len() - 1]).unwrap();

    // A byte changed with a valid checksum (as someone editing the file would) is named by
    // the hash chain; so is a removed record and an inserted one.
    let first = &segs[0];
    let bytes = &saved[0];
    let records = record_offsets(bytes);
    let (at, len) = records[3];
    let mut changed = bytes.clone();
    let payload = at + 52;
    let i = payload
        + changed[payload..at + len]
            .iter()
            .position(|&b| b == b'n')
            .unwrap();
    changed[i] = b'N';
    fix_crc(&mut changed[at..at + len]);
    std::fs::write(first, &changed).unwrap();
    let (code, text) = verify(&server);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("FINDING Changed") && text.contains("record 4 was changed"),
        "{text}"
    );

    let mut removed = bytes[..records[5].0].to_vec();
    removed.extend_from_slice(&bytes[records[6].0..]);
    std::fs::write(first, &removed).unwrap();
    let (_, text) = verify(&server);
    assert!(
        text.contains("FINDING Removed") && text.contains("record 6 lost"),
        "{text}"
    );

    let mut inserted = bytes[..records[8].0].to_vec();
    inserted.extend_from_slice(&bytes[records[2].0..records[2].0 + records[2].1]);
    inserted.extend_from_slice(&bytes[records[8].0..]);
    std::fs::write(first, &inserted).unwrap();
    let (_, text) = verify(&server);
    assert!(
        text.contains("FINDING Inserted") && text.contains("record 3 out of order"),
        "{text}"
    );

    std::fs::write(first, bytes).unwrap();
    // The index was rebuilt while record 300 was damaged: verify says so, reindex mends it.
    let (_, text) = verify(&server);
    assert!(
        text.contains("FINDING IndexMissing: record 300 is in the log but not in the index"),
        "{text}"
    );
    assert!(server.cli(&["reindex"]).status.success());
    let (code, text) = verify(&server);
    assert_eq!(code, Some(0), "{text}");
}

/// Runs `serve` on the server's config, expecting it to refuse to start: its error output.
fn refused_start(server: &Server) -> String {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&server.config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "serve exits 1");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (offset, length) of each record of a segment.
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 16;
    while at + 52 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, 52 + len));
        at += 52 + len;
    }
    out
}

/// Recomputes a record's CRC after an edit, as a careful forger would.
fn fix_crc(record: &mut [u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record[4..16]);
    crc.update(&record[16..48]);
    crc.update(&record[52..]);
    let sum = crc.finalize().to_le_bytes();
    record[48..52].copy_from_slice(&sum);
}

#[test]
fn an_unreadable_index_is_refused_with_the_way_out_or_rebuilt_when_allowed() {
    let mut server = Server::start("");
    let tok = stored_marker(&server);
    server.stop();
    std::fs::write(
        server.data_dir().join("index").join("meta.json"),
        b"garbage{",
    )
    .unwrap();
    let err = refused_start(&server);
    assert!(
        err.contains("mimamori reindex") && err.contains("auto_reindex"),
        "{err}"
    );
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(
        &server.config,
        config.replacen("[storage]\n", "[storage]\nauto_reindex = true\n", 1),
    )
    .unwrap();
    server.spawn();
    assert_eq!(server.wait_for(&tok, 1).len(), 1, "rebuilt from the log");
    server.stop();
}

/// A server started on a copy of `tests/fixtures/NAME`, a data directory an older release wrote.
fn started_on_fixture(name: &str) -> Server {
    let mut server = Server::prepare("", "", "");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", fixture.display()))
        .arg(server.data_dir())
        .status()
        .unwrap();
    assert!(copied.success());
    server.spawn();
    server
}

/// After a migration: a new event is stored, and `verify` passes once the server stopped.
fn new_events_flow_then_the_store_verifies(server: &mut Server) {
    stored_marker(server);
    server.stop();
    let out = server.cli(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_data_directory_of_the_previous_release_opens_and_verifies() {
    let mut server = started_on_fixture("data-v0.1.0");
    let hits = server.wait_for("fixture-v1", 5);
    assert_eq!(hits.len(), 5, "{}", server.log());
    new_events_flow_then_the_store_verifies(&mut server);
    assert!(
        server.data_dir().join("wal-v1").exists(),
        "the old log is kept"
    );
    // A data directory from a newer release is refused, saying so.
    std::fs::write(server.data_dir().join("FORMAT"), "mimamori-data 9\n").unwrap();
    assert!(refused_start(&server).contains("newer mimamori"));
}

#[test]
fn a_data_directory_of_format_2_with_sealed_segments_opens_searches_and_verifies() {
    // Written by the release before the sealed log lost its per-record headers and the index
    // its stored events: records 1-48 in two sealed segments of the old block format, 49-60
    // in a plain one, and an index that stores every event.
    let mut server = started_on_fixture("data-v0.2.0");
    let hits = server.wait_for("fixture-v2", 60);
    assert_eq!(hits.len(), 60, "{}", server.log());
    assert!(
        hits.iter()
            .any(|e| e["message"].as_str() == Some("fixture-v2 event 0 user=u0")),
        "the oldest record, in the first sealed segment, is read"
    );
    new_events_flow_then_the_store_verifies(&mut server);
    assert_eq!(
        std::fs::read_to_string(server.data_dir().join("FORMAT")).unwrap(),
        "mimamori-data 4\n"
    );
}

#[test]
fn a_data_directory_of_format_3_opens_finds_events_by_id_and_verifies() {
    // Written by the release whose sealed blocks kept every event id and whose index held the
    // ids' terms: records 1-55 in five sealed segments, 56-60 in a plain one.
    let mut server = started_on_fixture("data-v0.3.0");
    let hits = server.wait_for("fixture-v3", 60);
    assert_eq!(hits.len(), 60, "{}", server.log());
    let oldest = hits
        .iter()
        .find(|e| e["message"].as_str() == Some("fixture-v3 event 0 user=u0"))
        .expect("the oldest record, in the first sealed segment, is read");
    // The rebuilt index finds an event of a sealed segment by its id, through the column.
    let id = oldest["event.id"].as_str().unwrap();
    let by_id = server.search(&format!("event.id:{id}"));
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert_eq!(by_id[0]["message"], oldest["message"]);
    new_events_flow_then_the_store_verifies(&mut server);
    assert_eq!(
        std::fs::read_to_string(server.data_dir().join("FORMAT")).unwrap(),
        "mimamori-data 4\n"
    );
}

#[test]
fn kill_9_at_100_moments_under_mixed_load_loses_and_repeats_no_acknowledged_event() {
    let mut server = Server::start_full("", INGEST, "");
    let tok = token();
    let mut acked: Vec<String> = Vec::new();
    let mut last_failure = None;
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (tcp, udp, http) = (server.tcp, server.udp, server.http);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let noise = std::thread::spawn(move || {
            let mut t = TcpStream::connect(tcp).ok();
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut i = 0;
            // Steady syslog beside the HTTP load (about 2,000 a second each way).
            while !s2.load(std::sync::atomic::Ordering::Relaxed) && i < 2_000 {
                let line = format!("<13>1 2026-11-24T10:00:00Z h app - - - noise {i}\n");
                if let Some(s) = t.as_mut() {
                    let _ = s.write_all(line.as_bytes());
                }
                let _ = u.send_to(line.as_bytes(), udp);
                i += 1;
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // Four HTTP clients at once, each posting until the kill cuts it off.
        let posters: Vec<_> = (0..4)
            .map(|p| {
                let tok2 = tok.clone();
                std::thread::spawn(move || {
                    let mut ok = Vec::new();
                    let mut last = None;
                    for b in 0..1000 {
                        let mut body = String::new();
                        for i in 0..20 {
                            body.push_str(&format!("{{\"timestamp\":\"2026-11-24T10:00:00Z\",\"user\":\"u\",\"action\":\"view\",\"message\":\"{tok2}-k{round}-{p}-{b}-{i}\"}}\n"));
                        }
                        match http_post(
                            http,
                            "/api/v1/ingest?format=ndjson",
                            &[AUTH],
                            body.as_bytes(),
                        ) {
                            Some((200, _)) => ok.extend(
                                (0..20).map(|i| format!("{tok2}-k{round}-{p}-{b}-{i}")),
                            ),
                            other => {
                                last = other;
                                break;
                            }
                        }
                    }
                    (ok, last)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + seed % 600));
        server.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for poster in posters {
            let (ok, last) = poster.join().unwrap();
            acked.extend(ok);
            last_failure = last.or(last_failure);
        }
        noise.join().unwrap();
        server.spawn();
    }
    assert!(
        acked.len() > 500,
        "load reached the server ({}; last refusal {last_failure:?})",
        acked.len()
    );
    let hits = server.wait_for(&tok, acked.len());
    let mut found = markers(&hits, &tok);
    let n = found.len();
    found.dedup();
    assert_eq!(n, found.len(), "no acknowledged event twice");
    for marker in &acked {
        assert!(
            found.binary_search(marker).is_ok(),
            "acknowledged {marker} lost"
        );
    }
    server.stop();
    let out = server.cli(&["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
