//! Bad input gets a clear answer and loses nothing else.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Server, token};

#[test]
fn garbage_huge_cut_and_empty_input_is_kept_or_counted_and_others_get_through() {
    let server = Server::start("max_message_bytes = 65536\n");
    let tok = token();

    // A 1 MiB line: cut to 64 KiB, tagged, counted; the line after it is whole.
    let mut s = TcpStream::connect(server.tcp).unwrap();
    let mut big = format!("<13>Nov 22 10:00:00 host app: {tok}-big ").into_bytes();
    big.resize(1 << 20, b'x');
    big.extend_from_slice(format!("\n<13>Nov 22 10:00:01 host app: {tok}-after\n\n\n").as_bytes());
    s.write_all(&big).unwrap();
    drop(s);

    // Binary garbage: kept as text, tagged as a parse failure.
    let mut s = TcpStream::connect(server.tcp).unwrap();
    s.write_all(&[0x80, 0xff, 0xfe, b'g', b'a', b'r', b'b', 0x00, 0x01, b' '])
        .unwrap();
    s.write_all(format!("{tok}-garbage\n").as_bytes()).unwrap();
    drop(s);

    // An octet-count frame announcing 10 MB, then a disconnect after 2 KB.
    let mut s = TcpStream::connect(server.tcp).unwrap();
    let mut head =
        format!("10000000 <13>1 2026-11-22T01:00:00Z h app - - - {tok}-huge ").into_bytes();
    head.resize(2048, b'y');
    s.write_all(&head).unwrap();
    drop(s);

    // An ordinary client meanwhile.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        format!("<13>Nov 22 10:00:02 host app: {tok}-udp").as_bytes(),
        server.udp,
    )
    .unwrap();
    udp.send_to(b"", server.udp).unwrap();

    let big_hit = server.wait_for(&format!("{tok}-big"), 1);
    assert_eq!(big_hit.len(), 1);
    assert!(
        big_hit[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "truncated_too_long")
    );
    assert!(
        big_hit[0].get("event.original").is_none(),
        "left out unless asked for"
    );
    let with_original = server.search_with(&format!("{tok}-big"), &["--original"]);
    assert_eq!(
        with_original[0]["event.original"].as_str().unwrap().len(),
        65_536
    );
    assert_eq!(server.wait_for(&format!("{tok}-after"), 1).len(), 1);
    let garbage = server.wait_for(&format!("{tok}-garbage"), 1);
    assert_eq!(garbage.len(), 1);
    assert!(
        garbage[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "syslog_parse_failure")
    );
    let huge = server.wait_for(&format!("{tok}-huge"), 1);
    assert_eq!(huge.len(), 1, "the cut-off frame is kept");
    assert!(
        huge[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "truncated_cut_off")
    );
    assert_eq!(server.wait_for(&format!("{tok}-udp"), 1).len(), 1);

    assert!(
        server.metric("mimamori_events_truncated_total{reason=\"too_long\",transport=\"tcp\"}")
            >= 1.0
    );
    assert!(
        server.metric("mimamori_events_truncated_total{reason=\"cut_off\",transport=\"tcp\"}")
            >= 1.0
    );
    assert!(
        server.metric("mimamori_events_rejected_total{reason=\"empty\",transport=\"tcp\"}") >= 2.0
    );
    assert!(
        server.metric("mimamori_events_rejected_total{reason=\"empty\",transport=\"udp\"}") >= 1.0
    );
    assert!(server.metric("mimamori_parse_failures_total") >= 1.0);
}

#[test]
fn a_thousand_idle_connections_from_one_address_do_not_keep_out_a_sender() {
    let server = Server::start("max_connections_per_peer = 50\nfirst_frame_timeout_secs = 2\n");
    // One host opens a thousand connections and says nothing: it gets fifty.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.tcp).unwrap())
        .collect();
    // One of the held ones sends half a line and stalls.
    let mut stalled = TcpStream::connect(server.tcp).unwrap();
    stalled
        .write_all(b"<13>Nov 22 10:00:00 host app: half a li")
        .unwrap();
    let tok = token();
    // A real sender on another address gets through at once.
    let mut s = common::connect_from([127, 0, 0, 2], server.tcp);
    for i in 0..100 {
        s.write_all(format!("<13>Nov 22 10:00:00 host app: {tok} n{i}\n").as_bytes())
            .unwrap();
    }
    drop(s);
    let hits = server.wait_for(&tok, 100);
    assert_eq!(hits.len(), 100);
    // Fifty held at a time (more once the first fifty time out); the rest refused.
    assert!(server.metric("mimamori_tcp_connections ") <= 51.0);
    assert!(server.metric("mimamori_tcp_connections_refused_total") >= 500.0);
    // Without a whole first message within two seconds, the held ones are closed, and the
    // first host may send again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.metric("mimamori_tcp_connections ") > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle connections still open"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.metric("mimamori_tcp_idle_closed_total") >= 50.0);
    let mut s = TcpStream::connect(server.tcp).unwrap();
    s.write_all(format!("<13>Nov 22 10:00:00 host app: {tok} again\n").as_bytes())
        .unwrap();
    drop(s);
    assert_eq!(server.wait_for(&format!("{tok} again"), 1).len(), 1);
    drop(idle);
    drop(stalled);
}

#[test]
fn connections_beyond_the_limit_are_refused_and_counted() {
    let server = Server::start("max_connections = 5\n");
    let held: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(server.tcp).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let extra = TcpStream::connect(server.tcp).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    use std::io::Read;
    assert_eq!(
        (&extra).read(&mut buf).unwrap_or(0),
        0,
        "closed by the server"
    );
    assert_eq!(server.metric("mimamori_tcp_connections_refused_total"), 1.0);
    drop(held);
}

#[test]
fn http_connections_are_limited_and_idle_or_stalled_ones_are_closed() {
    use std::io::Read;
    // Idle 8 s: a fifth given a slot would be held that long, so "closed within 4 s" tells a
    // refusal from an idle close by seconds even on a loaded CI machine (one that boots a
    // container beside it needed more than a second to take the first four).
    let server = Server::start_full("", "max_connections = 4\nidle_timeout_secs = 8\n", "");
    let closed_within = |s: &TcpStream, secs: u64| {
        s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
        // EOF or a reset: either way the server let go.
        !matches!((&*s).read_to_end(&mut Vec::new()), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut)
    };
    // Three say nothing; one stalls in the middle of its request line (slowloris).
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.http).unwrap())
        .collect();
    let mut stalled = TcpStream::connect(server.http).unwrap();
    stalled.write_all(b"GET /api/v1/sea").unwrap();
    held.push(stalled);
    // The four must hold the four slots: one refused because the start-up's readiness probe
    // still held a slot (its close is seen asynchronously) is opened again, and counted.
    let mut reopened = 0u32;
    let open = |s: &TcpStream| {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        matches!((&*s).read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut)
    };
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        let mut all_open = true;
        for (i, s) in held.iter_mut().enumerate() {
            if !open(s) {
                all_open = false;
                *s = TcpStream::connect(server.http).unwrap();
                if i == 3 {
                    s.write_all(b"GET /api/v1/sea").unwrap();
                }
                reopened += 1;
            }
        }
        if all_open {
            break;
        }
    }
    // Time for the server to take them all (more under a loaded CI), well under the idle 8 s.
    std::thread::sleep(Duration::from_millis(1500));
    let extra = TcpStream::connect(server.http).unwrap();
    assert!(closed_within(&extra, 4), "the fifth is closed at once");
    for s in &held {
        assert!(closed_within(s, 20), "closed after 8 s without progress");
    }
    assert_eq!(
        server.metric("mimamori_http_connections_refused_total"),
        1.0 + f64::from(reopened)
    );
    assert!(server.metric("mimamori_http_idle_closed_total") >= 4.0);
    let (status, _) = common::http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 200, "and the slots are free again");
}

#[test]
fn bad_config_and_bad_arguments_get_clear_errors_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[syslog]\nmax_mesage_bytes = 100\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("line 2") && err.contains("max_mesage_bytes"),
        "{err}"
    );

    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .env("MIMAMORI_DATA_DIR", &data)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["search", "x", "--from", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`yesterday` is not a time"));

    // A data dir that cannot be created: a message, exit 1, no panic.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let out = Command::new(BIN)
        .env("MIMAMORI_DATA_DIR", dir.path().join("file/data"))
        .arg("serve")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("file/data") && err.contains("not usable") && !err.contains("panicked"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        include_str!("../deploy/mimamori.toml")
    );
}

#[test]
fn bad_queries_exit_2_and_answer_400() {
    let server = Server::start("");
    for query in ["user.name:(", "nosuchfield:x"] {
        let out = server.cli(&["search", query]);
        assert_eq!(out.status.code(), Some(2), "{query}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad query"));
    }
    let (status, body) = common::http_get(server.http, "/api/v1/search?q=nosuchfield:x").unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("\"code\":\"bad_query\"") && body.contains("unknown field `nosuchfield`"),
        "{body}"
    );
    let (status, body) = common::http_get(server.http, "/api/v1/search?q=x&from=soon").unwrap();
    assert_eq!(status, 400, "{body}");
    // Nesting deep enough to overflow a worker's stack in the parser is refused, and the
    // server goes on.
    let deep = format!("*%20AND%20{}x", "NOT%20".repeat(600));
    let (status, body) =
        common::http_get(server.http, &format!("/api/v1/search?q={deep}")).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 64"), "{body}");
    let (status, body) =
        common::http_get(server.http, "/api/v1/search?q=event.id:5092dd02").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("one whole id"), "{body}");
    assert_eq!(common::http_get(server.http, "/healthz").unwrap().0, 200);
}
