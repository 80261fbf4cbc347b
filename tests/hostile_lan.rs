//! An attacker on the LAN, and a careless sender: made-up label values, headers trickled a
//! byte at a time, tokens in odd cases, searches for everything, terminal escapes in messages,
//! floods of bad rows, the same body twice at once. Each gets a bounded, clear answer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, http_get_with, http_post, token};

const INGEST: &str = "ingest-token-0123456789";
const READ: &str = "read-token-0123456789ab";

fn server() -> Server {
    Server::start_full(
        "",
        &format!(
            "ingest_tokens = [\"{INGEST}\"]\nread_tokens = [\"{READ}\"]\nheader_timeout_secs = 2\n"
        ),
        "[detections]\nlateness_seconds = 1\n",
    )
}

/// POSTs JSON lines with the ingest token; the answer, which must be 200.
fn ingest(server: &Server, body: &str) -> serde_json::Value {
    let auth = format!("Bearer {INGEST}");
    let (status, answer) = http_post(
        server.http,
        "/api/v1/ingest?format=ndjson",
        &[("Authorization", &auth)],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).unwrap()
}

/// How many series a metric has in /metrics.
fn series(server: &Server, name: &str) -> usize {
    let (_, text) = common::http_get(server.http, "/metrics").unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .count()
}

#[test]
fn made_up_channel_names_and_hosts_add_no_metric_series_beyond_a_bound() {
    let server = server();
    let tok = token();
    let mut s = TcpStream::connect(server.tcp).unwrap();
    for i in 0..400 {
        // Each host a new channel, and its record numbers jump (a gap per host).
        for record in [1, 3] {
            s.write_all(
                format!(
                    "<14>Nov 24 10:00:00 H{i} MSWinEventLog\t1\tChannel{i}\t{record}\tTue Nov 24 10:00:00 2026\t4798\tX\tN/A\tN/A\tSuccess Audit\tH{i}\tUser\t\t{tok} enumerated.   Subject:  Account Name: u{i}\t1\n"
                )
                .as_bytes(),
            )
            .unwrap();
        }
    }
    drop(s);
    assert_eq!(server.wait_for(&tok, 800).len(), 800);
    assert!(
        series(&server, "mimamori_events_accepted_total") <= 20,
        "one series per made-up channel"
    );
    assert!(series(&server, "mimamori_sequence_gaps_total") <= 101);
    assert!(
        !server.log().contains('\u{1b}'),
        "no colour codes in a log file"
    );
}

#[test]
fn headers_trickled_a_byte_at_a_time_are_cut_off() {
    let server = server();
    let mut slow = TcpStream::connect(server.http).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut closed = false;
    for b in request {
        // Every byte is progress, so the idle timer alone would never fire.
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("answered a request whose headers took too long"),
            Err(_) => {} // nothing yet
        }
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(server.metric("mimamori_http_slow_headers_total") >= 1.0);
    // A normal request on a fresh connection is answered.
    let (status, _) = common::http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn tokens_are_checked_whatever_the_scheme_case_and_reads_need_one() {
    let server = server();
    let path = "/api/v1/search?q=*";
    let (status, _) = common::http_get(server.http, path).unwrap();
    assert_eq!(status, 401, "read tokens set: a read needs one");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} {READ}");
        let (status, body) = http_get_with(server.http, path, &[("Authorization", &auth)]).unwrap();
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    for wrong in [
        format!("Bearer {READ}x"),
        format!("Bearer {}", &READ[..10]),
        "Basic abc".to_owned(),
    ] {
        let (status, _) = http_get_with(server.http, path, &[("Authorization", &wrong)]).unwrap();
        assert_eq!(status, 401, "{wrong}");
    }
}

#[test]
fn a_search_counts_every_match_unless_asked_to_stop_and_then_says_so() {
    let server = server();
    let tok = token();
    let n = 30_000;
    let body: String = (0..n)
        .map(|i| {
            format!(
                "{{\"timestamp\":\"2026-11-24T{:02}:{:02}:{:02}+09:00\",\"user\":\"u{i}\",\"action\":\"VIEW\",\"message\":\"{tok}\"}}\n",
                9 + i / 3600,
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    ingest(&server, &body);
    let read = format!("Bearer {READ}");
    let search = |extra: &str| -> serde_json::Value {
        let (status, text) = http_get_with(
            server.http,
            &format!("/api/v1/search?q={tok}&limit=50{extra}"),
            &[("Authorization", &read)],
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let users = |page: &serde_json::Value| -> Vec<String> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["user.name"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest: Vec<String> = (n - 50..n).rev().map(|i| format!("u{i}")).collect();
    let all = search("");
    assert_eq!(all["total_exact"], true);
    assert_eq!(all["total"], n);
    assert_eq!(users(&all), newest);
    let counted = search("&total_up_to=10000");
    assert_eq!(counted["total_exact"], false, "{}", counted["total"]);
    let total = counted["total"].as_u64().unwrap();
    assert!((10_000..n).contains(&total), "{total}");
    assert_eq!(users(&counted), newest, "the newest page all the same");
    assert_eq!(counted["next_offset"], 50);
    // Deep pages are the same events either way, and counted past the page.
    let deep = search("&offset=25000&total_up_to=10");
    assert_eq!(users(&deep), users(&search("&offset=25000")));
    assert_eq!(users(&deep)[0], format!("u{}", n - 1 - 25_000));
    assert_eq!(deep["next_offset"], 25_050);
    // A page that reaches the end is counted whole.
    let last = search("&offset=29990&total_up_to=10");
    assert_eq!(last["total_exact"], true);
    assert_eq!(last["total"], n);
    assert_eq!(last["next_offset"], serde_json::Value::Null);
}

#[test]
fn a_search_for_everything_comes_in_bounded_pages() {
    let server = server();
    let tok = token();
    // 300 events of about 40 KiB each: 12 MiB, more than one answer may hold.
    let filler = "x".repeat(40 << 10);
    let body: String = (0..300)
        .map(|i| {
            format!("{{\"timestamp\":\"2026-11-24T09:{:02}:{:02}+09:00\",\"user\":\"u{i}\",\"action\":\"VIEW\",\"message\":\"{tok} {filler}\"}}\n", i / 60, i % 60)
        })
        .collect();
    ingest(&server, &body);
    let read = format!("Bearer {READ}");
    let page = |offset: usize| -> serde_json::Value {
        let (status, text) = http_get_with(
            server.http,
            &format!("/api/v1/search?q={tok}&limit=100000&original=true&offset={offset}"),
            &[("Authorization", &read)],
        )
        .unwrap();
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let first = page(0);
    assert_eq!(first["total"], 300);
    assert_eq!(first["truncated"], true, "12 MiB do not fit one answer");
    let returned = first["returned"].as_u64().unwrap();
    assert!((100..300).contains(&returned), "{returned}");
    assert_eq!(first["next_offset"], returned);
    // Paging on from there gives the rest, each event once.
    let mut seen: Vec<String> = Vec::new();
    let mut offset = 0;
    loop {
        let p = page(offset);
        for e in p["events"].as_array().unwrap() {
            seen.push(e["user.name"].as_str().unwrap().to_owned());
        }
        match p["next_offset"].as_u64() {
            Some(n) => offset = n as usize,
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 300);
}

#[test]
fn terminal_escapes_in_messages_are_printed_escaped() {
    let server = server();
    let tok = token();
    let mut s = TcpStream::connect(server.tcp).unwrap();
    s.write_all(
        format!("<13>Nov 22 10:00:00 host app: {tok} \u{1b}]0;owned\u{7} \u{1b}[2J done\n")
            .as_bytes(),
    )
    .unwrap();
    drop(s);
    server.wait_for(&tok, 1);
    let out = server.cli(&["search", &tok]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&tok), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}]0;owned\\u{7}"), "{text}");
}

#[test]
fn the_same_body_posted_twice_at_once_is_stored_once_and_neither_waits_for_the_other() {
    let server = server();
    let tok = token();
    let body: String = (0..3000)
        .map(|i| format!("{{\"timestamp\":\"2026-11-24T09:00:00+09:00\",\"user\":\"u{i}\",\"action\":\"VIEW\",\"message\":\"{tok} {i}\"}}\n"))
        .collect();
    let post = || {
        let v = ingest(&server, &body);
        (
            v["accepted"].as_u64().unwrap(),
            v["duplicates"].as_u64().unwrap(),
        )
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(post);
        let b = s.spawn(post);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.0 + b.0, 3000, "{a:?} {b:?}");
    assert_eq!(a.1 + b.1, 3000, "{a:?} {b:?}");
    assert_eq!(server.wait_for(&tok, 3000).len(), 3000);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.search(&tok).len(), 3000, "each event once");
}

#[test]
fn a_flood_of_bad_rows_in_the_spool_gives_a_bounded_note() {
    let server = server();
    let spool = server.data_dir().join("spool");
    let mut csv = String::from("timestamp,user,action\n");
    for i in 0..150_000 {
        csv.push_str(&format!("not a time {i},u,VIEW\n"));
    }
    csv.push_str("2026-11-24 09:00:00,good,VIEW\n");
    std::fs::write(spool.join(".tmp-bad.csv"), csv).unwrap();
    std::fs::rename(spool.join(".tmp-bad.csv"), spool.join("bad.csv")).unwrap();
    let note = spool.join("done/bad.csv.rejects");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !note.exists() {
        assert!(Instant::now() < deadline, "no note: {}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&note).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        100_001,
        "100,000 listed and a count of the rest"
    );
    assert!(
        lines[100_000].contains("50000 more not listed"),
        "{}",
        lines[100_000]
    );
    assert!(!spool.join(".bad.csv.rejects.partial").exists());
}

#[test]
fn one_host_cannot_take_every_http_slot() {
    let server = server();
    // Forty connections from one address, saying nothing: it gets 32.
    let held: Vec<TcpStream> = (0..40)
        .map(|_| common::connect_from([127, 0, 0, 20], server.http))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.metric("mimamori_http_connections_refused_total") >= 8.0);
    // Another host is answered.
    let mut other = common::connect_from([127, 0, 0, 30], server.http);
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = other.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}

#[test]
fn alerts_print_terminal_escapes_escaped_and_end_quietly_on_a_closed_pipe() {
    let server = server();
    let evil = "\u{1b}[2Jbob\u{1b}]0;X\u{7}";
    let mut s = TcpStream::connect(server.tcp).unwrap();
    for i in 0..6 {
        s.write_all(format!("<38>1 2026-12-01T01:0{i}:00Z pc1 sshd - - - Failed password for {evil} from 10.0.0.8 port 22 ssh2\n").as_bytes())
            .unwrap();
    }
    s.write_all(format!("<38>1 2026-12-01T01:07:00Z pc1 sshd - - - Accepted password for {evil} from 10.0.0.8 port 22 ssh2\n").as_bytes())
        .unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let out = server.cli(&["alerts", "--since", "2000-01-01"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("login_failures") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(listed.contains("login_failures"), "{listed}");
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\u{7}'),
        "{listed:?}"
    );
    assert!(listed.contains("\\u{1b}[2Jbob"), "{listed}");
    // `| head -1` closes the pipe early: no panic, no backtrace.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' alerts show 1 | head -c 1 >/dev/null",
            common::BIN
        ))
        .env("MIMAMORI_DATA_DIR", server.data_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
