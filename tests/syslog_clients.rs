//! Real syslog clients against the real binary: util-linux `logger` in every mode, and rsyslog
//! forwarding with omfwd.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, logger, token};

#[test]
fn logger_in_every_mode_is_searchable_by_word_field_and_japanese() {
    let server = Server::start("");
    let (tcp, udp) = (server.tcp.port().to_string(), server.udp.port().to_string());
    let tok = token();
    logger(&[
        "--rfc5424",
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "ehr",
        &format!("user=tanaka action=view patient=P123 {tok}-a"),
    ]);
    logger(&[
        "--rfc3164",
        "--udp",
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-t",
        "sshd",
        &format!("Accepted password for suzuki from 10.1.2.3 port 22 ssh2 {tok}-b"),
    ]);
    logger(&[
        "--rfc5424",
        "--tcp",
        "--octet-count",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "ehr",
        &format!("octet {tok}-c"),
    ]);
    logger(&[
        "--rfc5424",
        "--udp",
        "-n",
        "127.0.0.1",
        "-P",
        &udp,
        "-t",
        "ehr",
        &format!("udp5424 {tok}-d"),
    ]);
    logger(&[
        "--rfc3164",
        "--tcp",
        "-n",
        "127.0.0.1",
        "-P",
        &tcp,
        "-t",
        "app",
        &format!("山田太郎 カルテ参照 {tok}-e"),
    ]);

    for suffix in ["a", "b", "c", "d", "e"] {
        let hits = server.wait_for(&format!("{tok}-{suffix}"), 1);
        assert_eq!(
            hits.len(),
            1,
            "{tok}-{suffix} not found exactly once; log: {}",
            server.log()
        );
    }
    let view = &server.search(&format!("{tok}-a"))[0];
    assert_eq!(view["user.name"], "tanaka");
    assert_eq!(view["patient.id"], "P123");
    assert_eq!(view["event.action"], "record.view");
    assert_eq!(view["process.name"], "ehr");
    let login = &server.search(&format!("{tok}-b"))[0];
    assert_eq!(login["event.action"], "login");
    assert_eq!(login["source.ip"], "10.1.2.3");
    assert!(
        login["log.source.address"]
            .as_str()
            .unwrap()
            .starts_with("udp://127.0.0.1:")
    );

    assert_eq!(
        server
            .search(&format!("user.name:tanaka AND {tok}-a"))
            .len(),
        1
    );
    assert_eq!(
        server.search(&format!("patient.id:P123 AND {tok}-a")).len(),
        1
    );
    assert_eq!(
        server.search(&format!("山田 AND {tok}-e")).len(),
        1,
        "山田 finds 山田太郎"
    );
    assert_eq!(
        server.search(&format!("\"カルテ参照\" AND {tok}-e")).len(),
        1
    );

    // The HTTP API agrees, with the total.
    let (status, body) =
        common::http_get(server.http, &format!("/api/v1/search?q={tok}-a&limit=5")).unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["total"], 1);
    assert_eq!(json["events"][0]["user.name"], "tanaka");
    assert!(server.metric("mimamori_events_received_total{transport=\"tcp\"}") >= 3.0);
    assert!(server.metric("mimamori_events_received_total{transport=\"udp\"}") >= 2.0);
}

#[test]
fn rsyslog_forwards_rfc5424_over_tcp_in_both_framings() {
    let server = Server::start("");
    let work = tempfile::tempdir().unwrap();
    let udp_in = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port_in = udp_in.local_addr().unwrap().port();
    drop(udp_in);
    let conf = work.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{dir}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port_in}")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="traditional" template="RSYSLOG_SyslogProtocol23Format")
"#,
            dir = work.path().display(),
            tcp = server.tcp.port()
        ),
    )
    .unwrap();
    let rsyslogd = ["/usr/sbin/rsyslogd", "rsyslogd"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-v")
                .stdout(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("rsyslogd is installed (.ci/run installs it)");
    let mut child = Command::new(rsyslogd)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(work.path().join("rsyslog.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tok = token();
    // rsyslog needs a moment to open its input; resend until forwarded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut hits = Vec::new();
    while hits.len() < 2 && Instant::now() < deadline {
        logger(&[
            "--rfc3164",
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &port_in.to_string(),
            "-t",
            "ehr",
            &format!("forwarded user=sato {tok}"),
        ]);
        std::thread::sleep(Duration::from_millis(700));
        hits = server.search(&tok);
    }
    child.kill().ok();
    child.wait().ok();
    assert!(
        hits.len() >= 2,
        "rsyslog's forwards not found: {hits:?}; log: {}",
        server.log()
    );
    for hit in &hits {
        assert_eq!(hit["user.name"], "sato");
        assert_eq!(hit["process.name"], "ehr");
        assert_eq!(
            hit["labels"]["syslog.version"], "1",
            "forwarded as RFC 5424"
        );
    }
}
