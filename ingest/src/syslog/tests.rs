//! The parser on the real files in ../shared/samples/syslog, with values checked by hand.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::framing::Framer;

fn sample(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/samples/syslog")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn origin() -> Origin {
    Origin {
        transport: "udp",
        peer_ip: Some("192.0.2.7".into()),
        address: Some("udp://192.0.2.7:514".into()),
    }
}

fn tokyo() -> SyslogParser {
    SyslogParser::new(chrono_tz::Asia::Tokyo)
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()
}

fn parse_line(line: &[u8]) -> Event {
    tokyo().parse(line, &origin(), received())
}

#[test]
fn rfc3164_example_from_the_rfc() {
    let raw = sample("rfc3164/rsyslog_fuzz_rfc3164-basic.log");
    let e = parse_line(raw.trim_ascii_end());
    assert_eq!(e.host.as_deref(), Some("mymachine"));
    assert_eq!(e.process.as_deref(), Some("su"));
    assert_eq!(e.message, "'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(e.labels["syslog.facility"], "auth");
    assert_eq!(e.labels["syslog.severity"], "crit");
    // Oct 11 22:14:15 in Tokyo, read in November 2026: this year.
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 10, 11, 13, 14, 15).unwrap()
    );
    assert!(e.tags.is_empty());
    assert_eq!(e.dataset, "syslog");
    assert_eq!(e.log_source.as_deref(), Some("udp://192.0.2.7:514"));
}

#[test]
fn rfc3164_double_space_day_and_no_newline() {
    let e = parse_line(&sample("rfc3164/telegraf_rfc3164_strict_udp.txt"));
    assert_eq!(
        (e.host.as_deref(), e.process.as_deref(), e.message.as_str()),
        (Some("host"), Some("app"), "Test")
    );
    assert_eq!(e.labels["syslog.facility"], "user");
    assert_eq!(e.labels["syslog.severity"], "notice");
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 12, 2, 7, 31, 3).unwrap()
    );
}

#[test]
fn a_december_line_read_in_january_is_last_year() {
    let january = Utc.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap();
    let e = tokyo().parse(b"<13>Dec 31 23:59:00 host app: late", &origin(), january);
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 12, 31, 14, 59, 0).unwrap()
    );
    let december = Utc.with_ymd_and_hms(2026, 12, 31, 14, 0, 0).unwrap();
    let e = tokyo().parse(b"<13>Jan  1 00:10:00 host app: early", &origin(), december);
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 12, 31, 15, 10, 0).unwrap()
    );
}

#[test]
fn rfc5424_structured_data_becomes_labels() {
    let raw = sample("rfc5424/rsyslog_fuzz_rfc5424-basic.log");
    let e = parse_line(raw.trim_ascii_end());
    assert_eq!(e.host.as_deref(), Some("mymachine.example.com"));
    assert_eq!(e.process.as_deref(), Some("evntslog"));
    assert_eq!(e.labels["syslog.msgid"], "ID47");
    assert_eq!(e.labels["exampleSDID@32473.iut"], "3");
    assert_eq!(e.labels["exampleSDID@32473.eventSource"], "Application");
    assert_eq!(e.labels["syslog.facility"], "local4");
    assert_eq!(e.message, "An application event log entry");
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2003, 10, 11, 22, 14, 15).unwrap() + chrono::Duration::milliseconds(3)
    );
}

#[test]
fn rfc5424_escaped_sd_values_are_unescaped() {
    let raw = sample("rfc5424/rsyslog_fuzz_rfc5424-escaped-sd.log");
    let e = parse_line(raw.trim_ascii_end());
    assert_eq!(e.labels["meta@32473.value"], "escaped]bracket");
    assert_eq!(e.labels["meta@32473.quote"], "\"");
    assert_eq!(e.labels["syslog.procid"], "123");
    assert_eq!(e.message, "payload");
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 7, 23, 7, 30, 45).unwrap()
    );
}

#[test]
fn rfc5424_bom_long_appname_and_multiple_sd_elements() {
    let raw = sample("rfc5424/telegraf_rfc5424_long_appname.txt");
    let e = parse_line(raw.trim_ascii_end());
    assert_eq!(
        e.process.as_deref(),
        Some("ALongApplicationNameContainingExactly48Character")
    );
    assert!(
        e.message
            .ends_with("'su root' failed for lonvick on /dev/pts/8"),
        "{}",
        e.message
    );

    let raw = sample("rfc5424/telegraf_rfc5424_strict_udp_average.txt");
    let e = parse_line(raw.trim_ascii_end());
    assert_eq!(e.host.as_deref(), Some("web1"));
    assert_eq!(e.labels["meta.sequence"], "14125553");
    assert_eq!(e.labels["meta.service"], "someservice");
    assert!(e.message.starts_with("\"GET /v1/ok HTTP/1.1\" 200"));
}

#[test]
fn octet_counted_and_lf_framed_sample_streams() {
    for (file, octet) in [
        (
            "rfc5424/telegraf_octet_counting_strict_tcp_1st_min_ok_2nd_min_ok.txt",
            true,
        ),
        (
            "rfc5424/telegraf_non_transparent_strict_tcp_1st_min_ok_2nd_min_ok.txt",
            false,
        ),
    ] {
        let mut framer = Framer::new(65_536);
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        framer.push(&sample(file), &mut frames, &mut errors);
        assert_eq!(framer.is_octet_counting(), octet, "{file}");
        framer.finish(&mut frames);
        let texts: Vec<_> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .collect();
        assert_eq!(texts, ["<1>2 - - - - - -", "<4>11 - - - - - -"], "{file}");
        for frame in &frames {
            let e = parse_line(&frame.bytes);
            assert_eq!(e.original, String::from_utf8_lossy(&frame.bytes));
        }
    }
}

#[test]
fn the_loghub_linux_file_parses_whole_with_logins_recognised() {
    let raw = sample("rfc3164/loghub_Linux_2k.log");
    let lines: Vec<&[u8]> = raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 2000);
    let events: Vec<Event> = lines.iter().map(|l| parse_line(l)).collect();
    assert!(
        events.iter().all(|e| e.tags.is_empty()),
        "every line is RFC 3164 file format"
    );
    assert!(events.iter().all(|e| e.host.as_deref() == Some("combo")));
    let first = &events[0];
    assert_eq!(first.process.as_deref(), Some("sshd(pam_unix)"));
    assert_eq!(first.labels["syslog.procid"], "19939");
    assert_eq!(first.action, "login_failed");
    assert_eq!(first.source_ip.as_deref(), Some("218.188.2.4"));
    // June, read in November: this year, 15:16:01 Tokyo time.
    assert_eq!(
        first.timestamp,
        Utc.with_ymd_and_hms(2026, 6, 14, 6, 16, 1).unwrap()
    );
    let failures = events.iter().filter(|e| e.action == "login_failed").count();
    assert_eq!(failures, 490, "each 'authentication failure' line");
    let with_user = events
        .iter()
        .filter(|e| e.action == "login_failed" && e.user.is_some())
        .count();
    assert!(with_user > 0 && with_user < failures);
}

#[test]
fn access_fields_come_from_structured_data_and_key_values() {
    let line = br#"<174>1 2025-03-01T00:00:00.008640Z ehr-app03 EpicAudit 4242 AUDIT [ehr@32473 user="u000042" patient="P0000077" action="VIEW_CHART"] src=10.1.2.3 dept=CARD ws=WS0042 sess=0badf00d result=OK"#;
    let e = parse_line(line);
    assert_eq!(e.user.as_deref(), Some("u000042"));
    assert_eq!(e.patient.as_deref(), Some("P0000077"));
    assert_eq!(e.action, "record.view");
    assert_eq!(e.code.as_deref(), Some("VIEW_CHART"));
    assert_eq!(e.source_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(e.outcome, store::Outcome::Success);
    assert_eq!(e.roles, ["CARD"]);

    let e = parse_line(b"<86>Nov 22 10:00:01 gw sshd[77]: Accepted password for tanaka from 10.0.0.8 port 5122 ssh2");
    assert_eq!(
        (e.action.as_str(), e.user.as_deref(), e.source_ip.as_deref()),
        ("login", Some("tanaka"), Some("10.0.0.8"))
    );
}

#[test]
fn what_is_not_syslog_is_kept_as_text_and_tagged() {
    for raw in [
        &b"hello world"[..],
        b"\xff\xfe\x00garbage\x80",
        b"<999>nonsense",
        b"   ",
    ] {
        let e = parse_line(raw);
        let mut expected = vec![PARSE_FAILURE_TAG];
        if std::str::from_utf8(raw).is_err() {
            expected.push(INVALID_UTF8_TAG);
        }
        assert_eq!(e.tags, expected, "{raw:?}");
        assert_eq!(e.original, String::from_utf8_lossy(raw));
        assert_eq!(e.timestamp, received(), "no time in it: the arrival time");
        assert_eq!(e.host.as_deref(), Some("192.0.2.7"), "placed at the sender");
    }
}

#[test]
fn lines_that_differ_only_in_bytes_that_are_not_utf8_stay_two_events() {
    let a = parse_line(b"<13>1 2026-11-24T10:00:00Z pc1 ehr - - - user=\xff");
    let b = parse_line(b"<13>1 2026-11-24T10:00:00Z pc1 ehr - - - user=\xfe");
    let c = parse_line("<13>1 2026-11-24T10:00:00Z pc1 ehr - - - user=\u{fffd}".as_bytes());
    assert_eq!(a.original, b.original, "both shown with U+FFFD");
    assert_eq!(a.original, c.original);
    assert_ne!(a.id, b.id);
    assert_ne!(a.id, c.id);
    assert!(a.tags.iter().any(|t| t == INVALID_UTF8_TAG));
    assert!(
        !c.tags.iter().any(|t| t == INVALID_UTF8_TAG),
        "valid UTF-8: no tag"
    );
}

#[test]
fn the_same_bytes_from_the_same_sender_get_the_same_id() {
    let line = b"<13>Nov 22 10:00:01 gw app: x";
    let a = parse_line(line);
    let later = tokyo().parse(line, &origin(), received() + chrono::Duration::hours(1));
    assert_eq!(a.id, later.id);
    let other = Origin {
        peer_ip: Some("192.0.2.8".into()),
        ..origin()
    };
    assert_ne!(a.id, tokyo().parse(line, &other, received()).id);
}

proptest! {
    #[test]
    fn no_input_panics_and_the_original_is_kept(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let e = parse_line(&raw);
        prop_assert_eq!(e.original, String::from_utf8_lossy(&raw).trim_start_matches('\u{feff}').to_owned());
        prop_assert!(e.labels.len() <= MAX_LABELS);
    }

    #[test]
    fn syslog_shaped_input_never_panics(
        pri in 0u32..300, host in "[a-z0-9.-]{0,20}", msg in "\\PC{0,100}", sd in "[a-z@0-9 =\"\\]\\[\\\\]{0,40}"
    ) {
        let line = format!("<{pri}>1 2026-11-22T10:00:00Z {host} app - - {sd} {msg}");
        let e = parse_line(line.as_bytes());
        prop_assert_eq!(e.original, line);
    }
}
