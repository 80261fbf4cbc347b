//! Alerts under volume and across crashes: a burst of alerting events larger than the rules'
//! bounds, a sender whose clock is wrong on every event replayed after `kill -9`, and what the
//! rules learned just before a `kill -9`. Counts are read from `alerts.db` itself (read-only),
//! where the API would page them.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::Server;

/// Sends RFC 5424 lines in one connection.
fn send(server: &Server, lines: &str) {
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    tcp.write_all(lines.as_bytes()).unwrap();
}

/// The server's alert database, read-only.
fn alerts_db(server: &Server) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        server.data_dir().join("alerts.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// (alerts, sum of their counts) of `rule` in the server's alert database.
fn counted(server: &Server, rule: &str) -> (i64, i64) {
    alerts_db(server)
        .query_row(
            "SELECT count(*), coalesce(sum(count), 0) FROM alerts WHERE rule = ?1",
            [rule],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn wait(what: &str, f: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_burst_of_alerting_events_evaluated_at_once_is_counted_whole() {
    let mut server = Server::start_full("", "", "[detections]\nlateness_seconds = 2\n");
    // 30,000 logins at 22:00-22:09 JST on a Wednesday (the demo clinic is closed), 3,000
    // accounts ten times each, one account after another: the last account's first login is
    // the oldest event held until it has waited the lateness, so the rest leave together, more
    // alerts at once than the rules keep waiting for a database that refuses them.
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-25T13:00:00Z").unwrap();
    let mut lines = String::new();
    for i in 0..30_000u32 {
        let at = base + chrono::Duration::minutes(i64::from(i % 10));
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        lines.push_str(&format!(
            "<134>1 {at} MAIN-PC01 ehr - - - user=vb{:04} action=LOGIN result=success\n",
            i / 10
        ));
    }
    send(&server, &lines);
    wait("30,000 off-hours logins counted", &|| {
        counted(&server, "off_hours_login").1 >= 30_000
    });
    assert_eq!(counted(&server, "off_hours_login"), (3_000, 30_000));
    assert!(!server.log().contains("alerts dropped"), "{}", server.log());
    // The position moved past them all: a restart raises nothing again.
    server.stop();
    server.spawn();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(counted(&server, "off_hours_login"), (3_000, 30_000));
}

#[test]
fn a_wrong_clock_replayed_after_kill_9_is_not_counted_again() {
    // A long lateness keeps the events held, so the rules' position stays behind them when the
    // process dies: a restart reads them all again.
    let mut server = Server::start_full("", "", "[detections]\nlateness_seconds = 600\n");
    let ahead = chrono::Utc::now() + chrono::Duration::hours(3);
    // `n` events from a sender three hours ahead, `from` ms after the first.
    let skewed = |from: i64, n: i64| -> String {
        (from..from + n)
            .map(|i| {
                let at = (ahead + chrono::Duration::milliseconds(i))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                format!("<134>1 {at} SKEWPC2 ehr - - - user=ck01 action=VIEW_CHART n={i}\n")
            })
            .collect()
    };
    send(&server, &skewed(0, 1_000));
    wait("one clock alert counting 1,000 events", &|| {
        counted(&server, "clock_check") == (1, 1_000)
    });
    server.kill9();
    server.spawn();
    wait("the events read again after the restart", &|| {
        server.metric("mimamori_rules_held_events") >= 1_000.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counted(&server, "clock_check"),
        (1, 1_000),
        "the arrival checks of events read before the crash are not counted again"
    );
    // New events from the same sender after the restart still count.
    send(&server, &skewed(10_000, 10));
    wait("ten more", &|| {
        counted(&server, "clock_check") == (1, 1_010)
    });
}

#[test]
fn machines_learned_just_before_kill_9_are_kept_with_a_small_rebuild_window() {
    // A restart rebuilds only the 10 events before the rules' position: what the rules learned
    // further back must be in the database by then.
    let mut server = Server::start_full(
        "",
        "",
        "[alerts]\nrebuild_events = 10\n[detections]\nlateness_seconds = 1\n",
    );
    let base = chrono::Utc::now() - chrono::Duration::days(2);
    let line = |minutes: i64, host: &str, user: &str| {
        let at = (base + chrono::Duration::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        format!("<134>1 {at} {host} ehr - - - user={user} action=LOGIN result=success\n")
    };
    let evaluated = |server: &Server, n: f64| server.metric("mimamori_rules_events_total") >= n;
    // nw2 logs in at one machine often enough for a new one to stand out.
    let first: String = (0..25).map(|i| line(i, "MAIN-PC01", "nw2")).collect();
    send(&server, &first);
    wait("25 logins evaluated", &|| evaluated(&server, 25.0));
    // A second machine (an alert), then 20 events of others.
    let mut then = line(30, "MAIN-PC02", "nw2");
    for i in 0..20 {
        then.push_str(&line(31 + i, "MAIN-PC03", &format!("fill{i}")));
    }
    send(&server, &then);
    wait("46 events evaluated", &|| evaluated(&server, 46.0));
    wait("the new machine's alert", &|| {
        counted(&server, "new_workstation").0 >= 1
    });
    let before = counted(&server, "new_workstation");
    server.kill9();
    server.spawn();
    // nw2 at the second machine again, later: it is known now.
    send(&server, &line(120, "MAIN-PC02", "nw2"));
    wait("the login after the restart evaluated", &|| {
        evaluated(&server, 1.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counted(&server, "new_workstation"),
        before,
        "MAIN-PC02 was learned before the crash"
    );
}

/// The rules' position in the log, as stored with their alerts.
fn position(server: &Server) -> u64 {
    alerts_db(server)
        .query_row(
            "SELECT value FROM meta WHERE key = 'rules_wal_seq'",
            [],
            |r| r.get::<_, String>(0),
        )
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn runs_that_each_die_before_saving_still_keep_what_was_learned() {
    // Each run is killed after fewer events than the learned state is saved after (half of
    // `rebuild_events`), while the runs together go further than a restart rebuilds.
    let mut server = Server::start_full(
        "",
        "",
        "[alerts]\nrebuild_events = 100\n[detections]\nlateness_seconds = 1\n",
    );
    let base = chrono::Utc::now() - chrono::Duration::days(2);
    let mut sent = 0u64;
    let mut minute = 0i64;
    let mut send_logins = |server: &Server, host: &str, users: &[String]| {
        let mut lines = String::new();
        for user in users {
            let at = (base + chrono::Duration::minutes(minute))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            lines.push_str(&format!(
                "<134>1 {at} {host} ehr - - - user={user} action=LOGIN result=success\n"
            ));
            minute += 1;
        }
        send(server, &lines);
        sent += users.len() as u64;
        let expected = sent;
        wait("the logins evaluated", &|| position(server) >= expected);
    };
    let fill = |n: usize| -> Vec<String> { (0..n).map(|i| format!("fill{i}")).collect() };
    send_logins(&server, "MAIN-PC01", &vec!["nw3".to_owned(); 25]);
    send_logins(&server, "MAIN-PC03", &fill(60));
    send_logins(&server, "MAIN-PC02", &["nw3".to_owned()]);
    wait("the new machine's alert", &|| {
        counted(&server, "new_workstation").0 >= 1
    });
    let before = counted(&server, "new_workstation");
    for _ in 0..4 {
        send_logins(&server, "MAIN-PC03", &fill(30));
        server.kill9();
        server.spawn();
    }
    send_logins(&server, "MAIN-PC02", &["nw3".to_owned()]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counted(&server, "new_workstation"),
        before,
        "MAIN-PC02 was learned before the crashes"
    );
}

#[test]
fn a_line_repeated_exactly_counts_every_time_it_arrives() {
    // Identical lines are separate events with one id: each is counted, and a restart does not
    // count them again.
    let mut server = Server::start_full("", "", "[detections]\nlateness_seconds = 1\n");
    let line = "<134>1 2026-11-25T13:00:00.000Z MAIN-PC01 ehr - - - user=dupuser action=LOGIN result=success\n";
    send(&server, &line.repeat(50));
    wait("fifty off-hours logins counted", &|| {
        counted(&server, "off_hours_login").1 >= 50
    });
    assert_eq!(counted(&server, "off_hours_login"), (1, 50));
    server.kill9();
    server.spawn();
    send(&server, &line.repeat(5));
    wait("five more", &|| counted(&server, "off_hours_login").1 >= 55);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(counted(&server, "off_hours_login"), (1, 55));
}
