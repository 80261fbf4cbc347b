//! What `serve` takes in besides plain syslog: the spool directory, POST /api/v1/ingest,
//! syslog over TLS (with a real openssl client), known senders with their own parser and time
//! zone, ATNA in syslog, and Snare with its record numbers followed for gaps.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, http_post, make_cert, samples};

const TOKEN: &str = "test-token-0123456789abcdef";

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn spooled_files_are_imported_and_moved_out_of_the_way() {
    let server = Server::start_full(
        "",
        "",
        "[import]\nspool_poll_secs = 1\nspool_settle_secs = 1\n",
    );
    let spool = server.data_dir().join("spool");
    std::fs::copy(
        samples().join("windows/evtx/CA_4624_4625_LogonType2_LogonProc_chrome.evtx"),
        spool.join("export.evtx"),
    )
    .unwrap();
    std::fs::write(
        spool.join("bomb.xml"),
        r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><Event><System><EventID>1</EventID></System></Event>"#,
    )
    .unwrap();
    std::fs::write(
        spool.join("partly.csv"),
        "日時,利用者ID,操作\n2026/11/24 09:00,n1,参照\nyesterday,n1,参照\n",
    )
    .unwrap();
    wait_until("the spool to empty", || {
        ["export.evtx", "bomb.xml", "partly.csv"]
            .iter()
            .all(|f| !spool.join(f).exists())
    });
    assert!(spool.join("done/export.evtx").exists());
    assert_eq!(server.wait_for("user.name:IEUser", 3).len(), 3);
    assert!(spool.join("failed/bomb.xml").exists());
    let why = std::fs::read_to_string(spool.join("failed/bomb.xml.error")).unwrap();
    assert!(why.contains("DOCTYPE"), "{why}");
    assert!(spool.join("done/partly.csv").exists());
    let rejects = std::fs::read_to_string(spool.join("done/partly.csv.rejects")).unwrap();
    assert!(
        rejects.contains("line 3") && rejects.contains("yesterday"),
        "{rejects}"
    );
    assert_eq!(server.wait_for("user.name:n1", 1).len(), 1);
}

#[test]
fn http_ingest_answers_after_the_log_has_the_events() {
    let server = Server::start_full(
        "",
        &format!("ingest_tokens = [\"{TOKEN}\"]\nmax_body_bytes = 200000\n"),
        "",
    );
    let url = "/api/v1/ingest?format=ndjson";
    let body =
        std::fs::read(samples().join(
            "windows/json-winlogbeat/empire_enable_rdp_2019-05-18203650.security-excerpt.jsonl",
        ))
        .unwrap();
    let small: Vec<u8> = body
        .split(|&b| b == b'\n')
        .take(40)
        .collect::<Vec<_>>()
        .join(&b'\n');

    let (status, text) = http_post(server.http, url, &[], &small).unwrap();
    assert_eq!(status, 401, "{text}");
    let bearer = format!("Bearer {TOKEN}");
    let (status, text) = http_post(
        server.http,
        url,
        &[("Authorization", "Bearer wrong-token-but-long-enough")],
        &small,
    )
    .unwrap();
    assert_eq!(status, 401, "{text}");

    let (status, text) =
        http_post(server.http, url, &[("Authorization", &bearer)], &small).unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let accepted = answer["accepted"].as_u64().unwrap();
    let filtered = answer["filtered"].as_u64().unwrap();
    assert_eq!(accepted + filtered, 40, "{answer}");
    assert!(accepted > 0);
    // Durable before the answer, and searchable right after it (the import waits for the index).
    assert_eq!(
        server.search("event.dataset:windows.security").len() as u64,
        accepted
    );

    // The same again adds nothing.
    let (_, text) = http_post(server.http, url, &[("Authorization", &bearer)], &small).unwrap();
    let again: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"].as_u64().unwrap(), accepted);

    // gzip, CSV, per-record errors.
    let csv =
        "日時,利用者ID,患者ID,操作\n2026/11/24 09:15:02,n002,P1,参照\nnot a time,n002,P2,参照\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let (status, text) = http_post(
        server.http,
        "/api/v1/ingest?format=csv",
        &[("Authorization", &bearer), ("Content-Encoding", "gzip")],
        &gz,
    )
    .unwrap();
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert_eq!(answer["rejected"], 1);
    let error = answer["errors"][0].as_str().unwrap();
    assert!(
        error.contains("line 3") && error.contains("not a time"),
        "{error}"
    );

    // Over the limit: 413, also when only the decompressed body is too big.
    let (status, text) = http_post(server.http, url, &[("Authorization", &bearer)], &body).unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_body_bytes"), "{text}");
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b'\n'; 5_000_000]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 200_000);
    let (status, _) = http_post(
        server.http,
        url,
        &[("Authorization", &bearer), ("Content-Encoding", "gzip")],
        &bomb,
    )
    .unwrap();
    assert_eq!(status, 413);
    let (status, text) = http_post(
        server.http,
        "/api/v1/ingest?format=pdf",
        &[("Authorization", &bearer)],
        b"x",
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    // The names are the import command's: it lists them.
    assert!(
        text.contains("ehr-csv (csv)") && text.contains("ndjson"),
        "{text}"
    );
}

#[test]
fn http_ingest_is_off_without_tokens() {
    let server = Server::start("");
    let (status, text) = http_post(
        server.http,
        "/api/v1/ingest",
        &[("Authorization", "Bearer x")],
        b"{}",
    )
    .unwrap();
    assert_eq!(status, 403);
    assert!(
        text.contains("HTTP ingest is off: set http.ingest_tokens"),
        "{text}"
    );
    // Changing alerts and rules has tokens of its own, and is off without them too.
    for path in ["/api/v1/alerts/1/status", "/api/v1/rules/reload"] {
        let (status, text) =
            http_post(server.http, path, &[("Authorization", "Bearer x")], b"{}").unwrap();
        assert_eq!(status, 403, "{path}");
        assert!(text.contains("set http.admin_tokens"), "{path}: {text}");
    }
}

#[test]
fn syslog_over_tls_with_snare_windows_events_and_gaps() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(&format!(
        "tls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"
    ));
    let lines = std::fs::read(
        samples().join("syslog/rfc3164/rsyslog_snare_sample-windows2025-security.log"),
    )
    .unwrap();
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-connect",
            &format!("127.0.0.1:{tls_port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    client.stdin.take().unwrap().write_all(&lines).unwrap();
    let status = client.wait().unwrap();
    assert!(status.success());
    // 101 lines: 38 kept, the rest machine/service accounts; plus gap events.
    let found = server.wait_for("event.dataset:windows.security", 38);
    assert_eq!(found.len(), 38);
    let logoff = server.search("event.code:4647");
    assert_eq!(logoff[0]["user.name"], "al");
    assert!(
        logoff[0]["log.source.address"]
            .as_str()
            .unwrap()
            .starts_with("tls://127.0.0.1:")
    );
    assert!(server.metric("mimamori_events_filtered_total") >= 63.0);
    assert!(server.metric("mimamori_sequence_gaps_total") >= 1.0);
    assert!(!server.search("event.action:sequence_gap").is_empty());

    // A plain-TCP client on the TLS port is refused and counted; the listener carries on.
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    plain
        .write_all(b"<14>Nov 22 10:00:00 host app: not TLS\n")
        .unwrap();
    drop(plain);
    wait_until("the failed handshake to be counted", || {
        server.metric("mimamori_tls_handshake_failures_total") >= 1.0
    });
}

#[test]
fn known_senders_get_their_parser_and_time_zone() {
    let server = Server::start(
        "[[syslog.sources]]\nname = \"EHR server\"\nhostnames = [\"ehr*\"]\nformat = \"atna\"\n\
         [[syslog.sources]]\nname = \"UTM\"\nhostnames = [\"utm01\"]\ntimezone = \"UTC\"\n",
    );
    // ATNA in an RFC 5424 message over TCP.
    let atna =
        std::fs::read_to_string(samples().join("ehr/atna/openatna_msgs_partid.xml")).unwrap();
    let atna = atna.replace('\n', " ");
    let mut tcp = TcpStream::connect(server.tcp).unwrap();
    let msg = format!("<85>1 2026-11-22T10:00:00+09:00 ehr01 ehr-audit - IHE+RFC-3881 - {atna}");
    write!(tcp, "{} {msg}", msg.len()).unwrap();
    drop(tcp);
    let found = server.wait_for("event.dataset:ehr.atna", 1);
    assert_eq!(found[0]["user.name"], "asaip");
    assert_eq!(found[0]["event.action"], "record.export");
    assert_eq!(found[0]["labels"]["log.source.name"], "EHR server");
    assert_eq!(
        found[0]["@timestamp"], "2010-02-08T20:13:47Z",
        "the audit message's own time"
    );

    // RFC 3164 carries no zone: utm01 writes UTC, everyone else clinic time (Asia/Tokyo).
    let mut tcp = TcpStream::connect(server.tcp).unwrap();
    tcp.write_all(b"<14>Nov 22 10:00:00 utm01 fw: rule 7 allow src=10.1.1.1\n<14>Nov 22 10:00:00 pc01 app: hello\n").unwrap();
    drop(tcp);
    let utm = server.wait_for("host.name:utm01", 1);
    let t = utm[0]["@timestamp"].as_str().unwrap();
    assert!(t.ends_with("-11-22T10:00:00Z"), "{t}");
    assert_eq!(utm[0]["labels"]["log.source.name"], "UTM");
    let pc = server.wait_for("host.name:pc01", 1);
    let t = pc[0]["@timestamp"].as_str().unwrap();
    assert!(t.ends_with("-11-22T01:00:00Z"), "{t}");
}

#[test]
fn a_bad_tls_or_source_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("m.toml");
    std::fs::write(&config, "[syslog]\ntls_listen = [\"127.0.0.1:6514\"]\n").unwrap();
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("syslog.tls_cert"), "{err}");
    std::fs::write(
        &config,
        "[syslog]\n[[syslog.sources]]\nname = \"x\"\naddresses = [\"10.0.0.300\"]\n",
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("syslog.sources[0].addresses")
            && err.contains("10.0.0.300")
            && err.contains("line 4"),
        "{err}"
    );
    std::fs::write(&config, "[syslog]\ntls_listen = [\"127.0.0.1:0\"]\ntls_cert = \"/nonexistent.crt\"\ntls_key = \"/nonexistent.key\"\n").unwrap();
    let out = Command::new(common::BIN)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent.crt"), "{err}");
}
