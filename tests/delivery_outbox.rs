//! Delivery's promises across faults and time: a receiver that fails and comes back, a
//! `kill -9` with messages queued (nothing lost, nothing taken sent again), the live SSE stream
//! resumed with `Last-Event-ID`, status changes told to the channels that were told, silences,
//! and quiet hours.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::delivery::{ROSTER, SECRET_A, alerts, raise_alerts, wait, webhook_alert_ids};
use common::receiver::Receiver;
use common::{Server, http_get, http_post};

#[test]
fn a_receiver_that_fails_then_recovers_and_a_kill_9_lose_nothing_and_resend_nothing_taken() {
    // The receiver's port is known but nothing listens yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let channels = format!(
        "[delivery]\ngroup_wait_seconds = 0\n[[channels]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecrets = [\"{SECRET_A}\"]\n"
    );
    let mut server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    wait("a failed attempt", 30, &|| {
        server.metric("mimamori_delivery_retries_total") >= 1.0
    });
    let (_, health) = http_get(server.http, "/healthz").unwrap();
    assert!(health.contains("delivery soc"), "{health}");
    // Killed with messages queued; the receiver comes up answering 500, 500, then 429.
    server.kill9();
    let rx = Receiver::on(std::net::TcpListener::bind(addr).unwrap());
    rx.answer_next(&[(500, None), (500, None), (429, Some(("Retry-After", "1")))]);
    server.spawn();
    wait("every alert delivered after the restart", 90, &|| {
        webhook_alert_ids(&rx.accepted("/hook")).len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    let accepted = rx.accepted("/hook");
    let all = rx.requests();
    assert!(
        all.iter().filter(|r| r.answered >= 500).count() >= 2,
        "{all:#?}"
    );
    // A message tried again carries its first idempotency key; each is taken once.
    let mut keys: Vec<&str> = accepted
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a message the receiver took was sent again");
    for failed in all.iter().filter(|r| r.answered >= 300) {
        let key = failed.header("webhook-id").unwrap();
        assert!(
            keys.contains(&key),
            "a retried message never arrived: {key}"
        );
    }
    // Another restart sends nothing already taken.
    server.stop();
    server.spawn();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.accepted("/hook").len(), n, "resent after a restart");
    let out = server.cli_config(&["alerts", "deliveries", "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("\"state\":\"sent\""))
            .count(),
        n,
        "{listed}"
    );
}

/// Reads SSE events (id, data) until `n` arrived.
fn read_events(
    stream: &mut BufReader<std::net::TcpStream>,
    n: usize,
) -> Vec<(i64, serde_json::Value)> {
    let mut out = Vec::new();
    let mut id = None;
    while out.len() < n {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).unwrap() > 0, "stream ended");
        let line = line.trim_end();
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            out.push((id.unwrap(), serde_json::from_str(v.trim()).unwrap()));
        }
    }
    out
}

fn open_stream(server: &Server, token: &str, last: Option<i64>) -> BufReader<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let resume = last.map_or(String::new(), |l| format!("Last-Event-ID: {l}\r\n"));
    write!(
        s,
        "GET /api/v1/alerts/stream?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    reader
}

#[test]
fn the_live_stream_resumes_with_last_event_id_and_a_subscriber_acknowledges_by_name() {
    let token = common::token() + "-soc-subscriber";
    let server = Server::start_full(
        "",
        "",
        &format!("{ROSTER}[[subscribers]]\nname = \"vendor-soc\"\ntoken = \"{token}\"\n"),
    );
    let (status, _) = http_get(server.http, "/api/v1/alerts/stream").unwrap();
    assert_eq!(status, 401, "the stream needs a token");
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    let mut stream = open_stream(&server, &token, None);
    let first = read_events(&mut stream, 3);
    assert!(
        first
            .iter()
            .all(|(_, d)| d["change"] == "raised" && d["schema"] == "mimamori.alert.v1")
    );
    assert!(!first.iter().any(|(_, d)| d.to_string().contains("P0099")));
    drop(stream);
    // While the subscriber is away: the subscriber's own acknowledgement and a close.
    let id = first[0].1["alert_id"].as_i64().unwrap();
    let (status, body) = http_post(
        server.http,
        &format!("/api/v1/alerts/{id}/status"),
        &[("Authorization", &format!("Bearer {token}"))],
        br#"{"status":"acknowledged","by":"analyst 7"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("analyst 7 (subscriber vendor-soc)"), "{body}");
    // A subscriber's answer withholds patient data, as its stream does.
    let vip = alerts(&server)
        .into_iter()
        .find(|a| a["rule"] == "sensitive_records")
        .unwrap();
    let (status, body) = http_post(
        server.http,
        &format!("/api/v1/alerts/{}/status", vip["id"]),
        &[("Authorization", &format!("Bearer {token}"))],
        br#"{"status":"acknowledged"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("P0099") && body.contains("withheld"),
        "{body}"
    );
    let last = first[2].0;
    let mut stream = open_stream(&server, &token, Some(last));
    let rest = read_events(&mut stream, 1);
    assert_eq!(
        rest[0].0,
        last + 1,
        "resumed right after the last event seen"
    );
    assert_eq!(rest[0].1["change"], "acknowledged");
    assert_eq!(rest[0].1["changed_by"], "analyst 7 (subscriber vendor-soc)");
    // An id from before a restore (beyond the newest) resumes at the newest.
    let mut stream = open_stream(&server, &token, Some(1_000_000));
    http_post(
        server.http,
        &format!("/api/v1/alerts/{id}/status"),
        &[("Authorization", &format!("Bearer {token}"))],
        br#"{"status":"open"}"#,
    )
    .unwrap();
    let next = read_events(&mut stream, 1);
    assert_eq!(next[0].1["change"], "reopened");
}

#[test]
fn status_changes_silences_and_quiet_hours_reach_only_whom_they_should() {
    let rx = Receiver::start();
    let admin = common::token() + "-admin-token";
    // Quiet hours around now (Tokyo): every alert below critical is held for the digest.
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let hm = |t: chrono::DateTime<chrono_tz::Tz>| t.format("%H:%M").to_string();
    let quiet = format!(
        "{}-{}",
        hm(now - chrono::Duration::hours(1)),
        hm(now + chrono::Duration::hours(2))
    );
    let channels = format!(
        r#"
[delivery]
group_wait_seconds = 0
[[channels]]
name = "soc"
kind = "webhook"
url = "{hook}"
secrets = ["{SECRET_A}"]
[[channels]]
name = "night"
kind = "slack"
url = "{slack}"
quiet_hours = "{quiet}"
quiet_min_severity = "critical"
"#,
        hook = rx.url("/hook"),
        slack = rx.url("/slack"),
    );
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{admin}\"]"),
        &format!("{ROSTER}{channels}"),
    );
    let auth = format!("Bearer {admin}");
    // n002 is on a night duty swap: her alerts are muted for two hours.
    let (status, body) = http_post(
        server.http,
        "/api/v1/silences",
        &[("Authorization", &auth)],
        br#"{"user":"n002","duration_minutes":120,"comment":"night duty swap","created_by":"tanaka"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = http_post(server.http, "/api/v1/silences", &[], b"{}").unwrap();
    assert_eq!(status, 401, "adding a silence needs an admin token");
    let listed = server.cli_config(&["alerts", "silence", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("night duty swap"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    wait("r001's alerts at the SOC", 30, &|| {
        webhook_alert_ids(&rx.accepted("/hook")).len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let raised = alerts(&server);
    let id_of = |user: &str| -> Vec<i64> {
        raised
            .iter()
            .filter(|a| a["user"] == user)
            .map(|a| a["id"].as_i64().unwrap())
            .collect()
    };
    let (r001, n002) = (id_of("r001"), id_of("n002"));
    let mut told = webhook_alert_ids(&rx.accepted("/hook"));
    told.sort();
    let mut expected = r001.clone();
    expected.sort();
    assert_eq!(told, expected, "the silenced alert is not sent");
    // The silenced one is recorded, not lost; the quiet channel holds everything for its digest.
    let (_, listed) = http_get(server.http, "/api/v1/deliveries?limit=100").unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let deliveries = listed["deliveries"].as_array().unwrap();
    let silenced: Vec<&serde_json::Value> = deliveries
        .iter()
        .filter(|d| d["state"] == "silenced")
        .collect();
    assert_eq!(silenced.len(), 2, "one per channel: {listed:#}");
    assert!(
        silenced
            .iter()
            .all(|d| d["items"][0]["alert_id"] == n002[0])
    );
    let held: Vec<&serde_json::Value> = deliveries
        .iter()
        .filter(|d| d["channel"] == "night" && d["state"] == "pending")
        .collect();
    assert_eq!(held.len(), 1, "{listed:#}");
    assert_eq!(held[0]["group_key"], "digest");
    assert_eq!(
        held[0]["items"].as_array().unwrap().len(),
        2,
        "both of r001's alerts"
    );
    assert!(
        rx.accepted("/slack").is_empty(),
        "nothing sent in quiet hours"
    );
    // Closing an alert is told to the channel that was told of it, with who and why.
    let (status, body) = http_post(
        server.http,
        &format!("/api/v1/alerts/{}/status", r001[0]),
        &[("Authorization", &auth)],
        br#"{"status":"closed","reason":"export approved by the director","by":"tanaka"}"#,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    wait("the closing at the SOC", 30, &|| {
        rx.accepted("/hook")
            .iter()
            .any(|r| r.json()["type"] == "alert.closed")
    });
    let closed = rx
        .accepted("/hook")
        .into_iter()
        .find(|r| r.json()["type"] == "alert.closed")
        .unwrap()
        .json();
    let doc = &closed["data"]["alerts"][0];
    assert_eq!(doc["alert_id"], r001[0]);
    assert_eq!(doc["status"], "closed");
    assert_eq!(doc["changed_by"], "tanaka (api)");
    assert_eq!(doc["status_reason"], "export approved by the director");
    // The muted alert's closing is not told: no channel heard of it.
    http_post(
        server.http,
        &format!("/api/v1/alerts/{}/status", n002[0]),
        &[("Authorization", &auth)],
        br#"{"status":"closed","reason":"swap","by":"tanaka"}"#,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !webhook_alert_ids(&rx.accepted("/hook")).contains(&n002[0]),
        "a silenced alert's closing was sent"
    );
}

#[test]
fn an_automatic_response_runs_once_per_alert_and_its_result_is_kept_with_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let script = dir.path().join("disable-account");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s %s %s\\n' \"$MIMAMORI_RULE\" \"$MIMAMORI_USER\" \"$1\" >> {seen}\ncat >> {seen}.json\necho \"disabled $MIMAMORI_USER in the EHR\"\n",
            seen = seen.display()
        ),
    )
    .unwrap();
    // A program that leaves a child running (holding our pipe) and exits 0.
    let leaving = dir.path().join("notify-and-leave");
    let child_pid = dir.path().join("child.pid");
    std::fs::write(
        &leaving,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\necho notified\n",
            child_pid.display()
        ),
    )
    .unwrap();
    let failing = dir.path().join("block-address");
    std::fs::write(
        &failing,
        "#!/bin/sh\necho 'UTM refused the login' >&2\nexit 3\n",
    )
    .unwrap();
    for f in [&script, &failing, &leaving] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let channels = format!(
        r#"
[[channels]]
name = "disable"
kind = "command"
command = ["{script}", "--reason=mimamori"]
rules = ["bulk_export"]
[[channels]]
name = "block"
kind = "command"
command = ["{failing}"]
rules = ["sensitive_records"]
[[channels]]
name = "leave"
kind = "command"
command = ["{leaving}"]
rules = ["access_outside_role"]
"#,
        script = script.display(),
        failing = failing.display(),
        leaving = leaving.display()
    );
    let server = Server::start_full("", "", &format!("{ROSTER}{channels}"));
    raise_alerts(&server);
    wait("three alerts", 30, &|| alerts(&server).len() >= 3);
    wait("the response ran", 30, &|| seen.exists());
    let bulk = alerts(&server)
        .into_iter()
        .find(|a| a["rule"] == "bulk_export")
        .unwrap();
    let id = bulk["id"].as_i64().unwrap().to_string();
    let shown = || {
        let out = server.cli_config(&["alerts", "show", &id, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    wait("the result recorded", 30, &|| {
        shown()["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["state"] == "sent"))
    });
    let v = shown();
    let d = &v["deliveries"][0];
    assert_eq!(d["channel"], "disable");
    assert_eq!(d["answer"], "exit 0: disabled r001 in the EHR");
    // Once, for the rule it is set for, with the account in its environment (not its arguments).
    std::thread::sleep(Duration::from_secs(2));
    let runs = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(runs, "bulk_export r001 --reason=mimamori\n");
    let stdin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("seen.json")).unwrap())
            .unwrap();
    assert_eq!(stdin["alerts"][0]["rule"], "bulk_export");
    // Exit 0 is done at once, though a child it left holds the output open; the child is
    // stopped with its group.
    let outside = alerts(&server)
        .into_iter()
        .find(|a| a["rule"] == "access_outside_role")
        .unwrap();
    let outside_id = outside["id"].as_i64().unwrap().to_string();
    wait("the leaving program's result", 20, &|| {
        let out = server.cli_config(&["alerts", "show", &outside_id]);
        String::from_utf8_lossy(&out.stdout).contains("sent to leave: exit 0: notified")
    });
    let pid = std::fs::read_to_string(&child_pid).unwrap();
    // Gone, or a zombie waiting for init to reap it.
    let stat = format!("/proc/{}/stat", pid.trim());
    wait("its child stopped", 10, &|| {
        std::fs::read_to_string(&stat).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    });
    // A response that fails is dead at once, with what it said, and listed as failed.
    wait("the failed response", 30, &|| {
        let out = server.cli_config(&["alerts", "deliveries", "--failed"]);
        String::from_utf8_lossy(&out.stdout).contains("exit 3: UTM refused the login")
    });
}

#[test]
fn status_changes_hammered_from_the_cli_and_the_api_neither_stop_the_service_nor_flood() {
    let rx = Receiver::start();
    let admin = common::token() + "-admin-token";
    let channels = format!(
        "[delivery]\ngroup_wait_seconds = 0\ngroup_interval_seconds = 60\n[[channels]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"{}\"\nsecrets = [\"{SECRET_A}\"]\n",
        rx.url("/hook")
    );
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{admin}\"]"),
        &format!("{ROSTER}{channels}"),
    );
    raise_alerts(&server);
    wait("three alerts told", 30, &|| {
        webhook_alert_ids(&rx.accepted("/hook")).len() >= 3
    });
    let before = rx.accepted("/hook").len();
    let ids: Vec<String> = alerts(&server)
        .iter()
        .map(|a| a["id"].as_i64().unwrap().to_string())
        .collect();
    // The API and the command line change the same alerts at once, many times.
    let http = server.http;
    let (api_ids, auth) = (ids.clone(), format!("Bearer {admin}"));
    let api = std::thread::spawn(move || {
        for round in 0..40 {
            for id in &api_ids {
                let status = if round % 2 == 0 {
                    "acknowledged"
                } else {
                    "open"
                };
                http_post(
                    http,
                    &format!("/api/v1/alerts/{id}/status"),
                    &[("Authorization", &auth)],
                    format!("{{\"status\":\"{status}\",\"by\":\"api\"}}").as_bytes(),
                );
            }
        }
    });
    for round in 0..15 {
        let change = if round % 2 == 0 { "ack" } else { "reopen" };
        server.cli_config(&["alerts", change, &ids[0]]);
    }
    api.join().unwrap();
    // Still running, every stage healthy.
    std::thread::sleep(Duration::from_secs(2));
    let (status, health) = http_get(server.http, "/healthz").unwrap();
    assert_eq!(status, 200, "{health}");
    assert!(!server.log().contains("a stage died"), "{}", server.log());
    // A no-op change is refused, and is not told.
    let (status, body) = http_post(
        server.http,
        &format!("/api/v1/alerts/{}/status", ids[1]),
        &[("Authorization", &format!("Bearer {admin}"))],
        br#"{"status":"open"}"#,
    )
    .unwrap();
    if status == 400 {
        assert!(body.contains("already open"), "{body}");
    }
    // At most one status message per alert per group_interval (60 s): not one per change.
    let told = rx.accepted("/hook").len() - before;
    assert!(
        told <= ids.len(),
        "{told} status messages for {} alerts",
        ids.len()
    );
}

#[test]
fn a_flood_of_accounts_is_a_few_messages_and_a_404_during_maintenance_is_retried() {
    let rx = Receiver::start();
    // The proxy in front of the SOC is under maintenance for the first answers.
    rx.answer_next(&[(404, None), (503, None)]);
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = dir.path().join("disable");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$MIMAMORI_USER\" >> {}\n", runs.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let admin = common::token() + "-admin-token";
    let channels = format!(
        "[delivery]\ngroup_wait_seconds = 1\n[[channels]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"{}\"\nsecrets = [\"{SECRET_A}\"]\n\
         [[channels]]\nname = \"disable\"\nkind = \"command\"\ncommand = [\"{}\"]\nrules = [\"bulk_export\"]\n",
        rx.url("/hook"),
        script.display()
    );
    let server = Server::start_full(
        "",
        &format!("admin_tokens = [\"{admin}\"]"),
        &format!("{ROSTER}{channels}"),
    );
    // One sender spoofing 120 accounts, each exporting: 120 alerts.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    for i in 0..120 {
        writeln!(
            tcp,
            "<134>1 {now} ehr01 ehr - - - user=x{i:03} action=EXPORT count=300"
        )
        .unwrap();
    }
    drop(tcp);
    wait("120 alerts", 30, &|| alerts(&server).len() >= 120);
    let raised = alerts(&server).len();
    wait("every alert at the SOC", 60, &|| {
        webhook_alert_ids(&rx.accepted("/hook")).len() >= raised
    });
    let messages = rx.accepted("/hook");
    // storm_limit (10) groups of their own, then the rest together, at most 50 a message.
    assert!(
        messages.len() <= 10 + raised.div_ceil(50) + 1,
        "{} messages",
        messages.len()
    );
    assert!(messages.iter().any(|r| r.json()["data"]["storm"] == true));
    let refused: Vec<u16> = rx
        .requests()
        .iter()
        .map(|r| r.answered)
        .filter(|s| *s >= 300)
        .collect();
    assert_eq!(refused, [404, 503], "both tried again, not given up on");
    // The automatic response does not disable 120 accounts: past storm_limit it is recorded,
    // not run.
    std::thread::sleep(Duration::from_secs(2));
    let ran = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert!((1..=10).contains(&ran), "{ran} responses ran");
    let failed = server.cli_config(&[
        "alerts",
        "deliveries",
        "--failed",
        "--channel",
        "disable",
        "--limit",
        "500",
    ]);
    let failed = String::from_utf8_lossy(&failed.stdout);
    let not_run = failed
        .lines()
        .filter(|l| l.contains("not run: more than 10"))
        .count();
    assert!(not_run >= 100, "{failed}");
    // Closing the flood's alerts is a few messages too.
    let before = rx.accepted("/hook").len();
    let auth = format!("Bearer {admin}");
    for a in alerts(&server) {
        http_post(
            server.http,
            &format!("/api/v1/alerts/{}/status", a["id"]),
            &[("Authorization", &auth)],
            br#"{"status":"closed","reason":"a spoofing sender, blocked at the switch"}"#,
        )
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let closing = rx.accepted("/hook").len() - before;
    let (_, listed) = http_get(server.http, "/api/v1/deliveries?channel=soc&limit=60").unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let groups: Vec<String> = listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {}",
                d["group_key"],
                d["state"],
                d["items"].as_array().unwrap().len(),
                d["created_at"]
            )
        })
        .collect();
    assert!(
        (1..=15).contains(&closing),
        "{closing} messages for closing 120 alerts: {groups:#?}"
    );
}
