//! The alert database: continuing alerts, replays, triage history, schema versions and the
//! migration from the first schema.

use alerting::db::{AlertDb, AlertDbError, AlertFilter, AlertStatus, Recorded, SCHEMA_VERSION};
use chrono::{DateTime, Duration, Utc};
use rules::{Alert, Severity};
use rusqlite::Connection;
use store::EventId;

fn alert(user: &str, at: &str, evidence: &str) -> Alert {
    let t = DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&Utc);
    Alert {
        rule: "off_hours_login".into(),
        severity: Severity::Medium,
        user: Some(user.into()),
        site: Some("main".into()),
        first_seen: t,
        last_seen: t,
        count: 1,
        explanation: format!("{user} at {at}"),
        evidence: vec![EventId::from_hex(evidence.into())],
        subject: None,
        private: Vec::new(),
    }
}

#[test]
fn a_continuing_condition_updates_one_alert_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    let mut db = AlertDb::open(&path, Duration::hours(1)).unwrap();
    let (a, new) = db
        .record(&alert("n002", "2026-11-24T22:40:00Z", "e1"))
        .unwrap();
    assert_eq!(new, Recorded::New);
    let (b, changed) = db
        .record(&alert("n002", "2026-11-24T23:10:00Z", "e2"))
        .unwrap();
    assert_eq!((a, changed), (b, Recorded::Continued), "continued");
    let (c, changed) = db
        .record(&alert("n002", "2026-11-24T23:10:00Z", "e2"))
        .unwrap();
    assert_eq!(
        (c, changed),
        (a, Recorded::Known),
        "the same evidence again changes nothing"
    );
    let (d, _) = db
        .record(&alert("n002", "2026-11-25T05:00:00Z", "e3"))
        .unwrap();
    assert_ne!(d, a, "after the dedup window a new alert starts");
    db.set_checkpoint(42).unwrap();
    drop(db);
    let mut db = AlertDb::open(&path, Duration::hours(1)).unwrap();
    assert_eq!(db.checkpoint().unwrap(), 42);
    let got = db.get(a).unwrap();
    assert_eq!(got.alert.count, 2);
    assert_eq!(got.alert.evidence.len(), 2);
    assert_eq!(got.status, AlertStatus::Open);
    let all = db.list(&AlertFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, d, "newest first");
    let since = DateTime::parse_from_rfc3339("2026-11-25T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(
        db.list(&AlertFilter {
            since: Some(since),
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    assert!(matches!(db.get(999), Err(AlertDbError::NotFound(999))));
    let t = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut db2 = AlertDb::open(&path, Duration::hours(1)).unwrap();
    db2.save_activity(&[("n002".into(), t)]).unwrap();
    db2.save_activity(&[("n002".into(), t - Duration::days(3))])
        .unwrap();
    assert_eq!(
        db2.activity().unwrap(),
        [("n002".to_owned(), t)],
        "only ever later"
    );
    db2.save_machines(&[("n002".into(), 3, vec!["main-pc03".into()])])
        .unwrap();
    db2.save_machines(&[(
        "n002".into(),
        4,
        vec!["main-pc03".into(), "annex-pc01".into()],
    )])
    .unwrap();
    assert_eq!(
        db2.machines().unwrap(),
        [(
            "n002".to_owned(),
            4,
            vec!["main-pc03".to_owned(), "annex-pc01".to_owned()]
        )]
    );
    drop(db2);
    assert!(matches!(
        db.set_status(a, AlertStatus::Closed, Some("  "), "tanaka"),
        Err(AlertDbError::Invalid(m)) if m.contains("needs a reason")
    ));
    assert!(matches!(
        "done".parse::<AlertStatus>(),
        Err(AlertDbError::Invalid(m)) if m.contains("open, acknowledged or closed")
    ));
    assert!(matches!(
        db.set_status(999, AlertStatus::Acknowledged, None, "tanaka"),
        Err(AlertDbError::NotFound(999))
    ));
    db.set_status(a, AlertStatus::Acknowledged, None, "tanaka")
        .unwrap();
    let closed = db
        .set_status(
            a,
            AlertStatus::Closed,
            Some("night duty swap, approved"),
            "suzuki",
        )
        .unwrap();
    assert_eq!(
        closed.status_reason.as_deref(),
        Some("night duty swap, approved")
    );
    let history: Vec<(&str, Option<&str>, &str)> = closed
        .history
        .iter()
        .map(|c| (c.status.as_str(), c.reason.as_deref(), c.by.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            ("acknowledged", None, "tanaka"),
            ("closed", Some("night duty swap, approved"), "suzuki")
        ],
        "refused changes leave no trace"
    );
    assert!(
        db.list(&AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .iter()
        .all(|a| a.history.is_empty()),
        "lists leave the history out"
    );
    drop(db);
    let mut db = AlertDb::open(&path, Duration::hours(1)).unwrap();
    let (e, _) = db
        .record(&alert("n002", "2026-11-24T23:20:00Z", "e9"))
        .unwrap();
    assert_ne!(e, a, "a closed alert is not continued");
    let replayed = db
        .record(&alert("n002", "2026-11-24T23:05:00Z", "e1"))
        .unwrap();
    assert_eq!(
        replayed,
        (a, Recorded::Known),
        "events it already holds change nothing"
    );
}

#[test]
fn alerts_about_different_subjects_are_not_continued_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = AlertDb::open(&dir.path().join("alerts.db"), Duration::hours(1)).unwrap();
    let spray = |address: &str, evidence: &str| {
        let mut a = alert("x", "2026-11-24T10:00:00Z", evidence);
        a.rule = "password_spray".into();
        a.user = None;
        a.subject = Some(address.into());
        a
    };
    let (first, _) = db.record(&spray("10.10.1.250", "s1")).unwrap();
    let (second, what) = db.record(&spray("10.10.1.251", "s2")).unwrap();
    assert_ne!(first, second);
    assert_eq!(what, Recorded::New);
    let (again, what) = db.record(&spray("10.10.1.250", "s3")).unwrap();
    assert_eq!((again, what), (first, Recorded::Continued));
}

#[test]
fn a_database_of_a_newer_schema_is_refused_and_the_first_is_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    drop(AlertDb::open(&path, Duration::hours(1)).unwrap());
    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    conn.execute_batch("PRAGMA user_version = 9;").unwrap();
    drop(conn);
    let err = AlertDb::open(&path, Duration::hours(1))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("newer mimamori") && err.contains("schema 9"),
        "{err}"
    );
}

#[test]
fn a_first_schema_database_is_migrated_and_keeps_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, severity TEXT NOT NULL,
                 user TEXT, site TEXT, dedup_key TEXT NOT NULL, first_seen TEXT NOT NULL,
                 last_seen TEXT NOT NULL, count INTEGER NOT NULL, explanation TEXT NOT NULL,
                 evidence TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open', status_reason TEXT);
             CREATE TABLE status_changes (alert_id INTEGER NOT NULL, at TEXT NOT NULL,
                 status TEXT NOT NULL, reason TEXT, by TEXT NOT NULL);
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE activity (user TEXT PRIMARY KEY, last_active TEXT NOT NULL);
             CREATE TABLE machines (user TEXT PRIMARY KEY, logins INTEGER NOT NULL, hosts TEXT NOT NULL);
             INSERT INTO alerts (rule, severity, user, site, dedup_key, first_seen, last_seen, count,
                 explanation, evidence) VALUES ('off_hours_login', 'medium', 'n002', 'main',
                 'off_hours_login|n002|main', '2026-11-24T22:40:00+00:00',
                 '2026-11-24T22:40:00+00:00', 1, 'n002 at night', '[\"e1\"]');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let mut db = AlertDb::open(&path, Duration::hours(1)).unwrap();
    let old = db.get(1).unwrap();
    assert_eq!(old.alert.explanation, "n002 at night");
    assert!(old.alert.private.is_empty());
    // The new tables work: a status change is written to the outbox with it.
    db.set_status(1, AlertStatus::Acknowledged, None, "tanaka")
        .unwrap();
    let changes = alerting::outbox::after(db.conn_for_reading(), 0, 10).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].change, alerting::outbox::Change::Acknowledged);
    assert_eq!(changes[0].by.as_deref(), Some("tanaka"));
    let version: u32 = db
        .conn_for_reading()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn new_alerts_are_sent_before_a_backlog_of_status_changes_and_severe_ones_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = AlertDb::open(&dir.path().join("alerts.db"), Duration::hours(1)).unwrap();
    let conn = db.conn_for_reading();
    let old = "2026-11-24T00:00:00+00:00";
    // 100 status changes queued first (priority 2: a medium alert's status), then a new
    // medium alert (3) and a new critical one (7).
    for i in 0..100 {
        conn.execute(
            "INSERT INTO deliveries (channel, group_key, items, state, created_at, due_at, next_attempt_at, priority)
             VALUES ('c', ?1, '[]', 'pending', ?2, ?2, ?2, 2)",
            rusqlite::params![format!("status:{i}"), old],
        )
        .unwrap();
    }
    for (group, priority) in [("rule=a", 3), ("rule=b", 7)] {
        conn.execute(
            "INSERT INTO deliveries (channel, group_key, items, state, created_at, due_at, next_attempt_at, priority)
             VALUES ('c', ?1, '[]', 'pending', ?2, ?2, ?2, ?3)",
            rusqlite::params![group, Utc::now().to_rfc3339(), priority],
        )
        .unwrap();
    }
    let due = alerting::delivery::store::due(conn, "x", "c", Utc::now(), 3).unwrap();
    let groups: Vec<&str> = due.iter().map(|d| d.group_key.as_str()).collect();
    assert_eq!(groups, ["rule=b", "rule=a", "status:0"]);
}

#[test]
fn an_investigation_keeps_every_step_with_who_and_the_judgement() {
    use alerting::triage::{ChangeKind, Resolution, Step};
    let dir = tempfile::tempdir().unwrap();
    let mut db = AlertDb::open(&dir.path().join("alerts.db"), Duration::hours(1)).unwrap();
    let (a, _) = db
        .record(&alert("n002", "2026-11-24T22:40:00Z", "e1"))
        .unwrap();
    db.investigate(a, Step::Assign("suzuki"), "tanaka").unwrap();
    assert!(matches!(
        db.investigate(a, Step::Assign("suzuki"), "tanaka"),
        Err(AlertDbError::Invalid(_))
    ));
    assert!(matches!(
        db.investigate(a, Step::Comment("   "), "tanaka"),
        Err(AlertDbError::Invalid(m)) if m.contains("empty")
    ));
    db.investigate(a, Step::Comment("asked the ward"), "suzuki")
        .unwrap();
    assert!(matches!(
        db.investigate(
            a,
            Step::Status {
                status: AlertStatus::Acknowledged,
                resolution: Some(Resolution::Allowed),
                reason: None
            },
            "suzuki"
        ),
        Err(AlertDbError::Invalid(m)) if m.contains("only a closed alert")
    ));
    let closed = db
        .investigate(
            a,
            Step::Status {
                status: AlertStatus::Closed,
                resolution: Some(Resolution::Allowed),
                reason: Some("emergency admission"),
            },
            "suzuki",
        )
        .unwrap();
    assert_eq!(closed.resolution, Some(Resolution::Allowed));
    assert_eq!(closed.assignee.as_deref(), Some("suzuki"));
    let steps: Vec<(ChangeKind, &str, Option<&str>)> = closed
        .history
        .iter()
        .map(|h| (h.kind, h.by.as_str(), h.reason.as_deref()))
        .collect();
    assert_eq!(
        steps,
        [
            (ChangeKind::Assigned, "tanaka", None),
            (ChangeKind::Comment, "suzuki", Some("asked the ward")),
            (ChangeKind::Status, "suzuki", Some("emergency admission")),
        ]
    );
    // Reopening clears the judgement; the history keeps it.
    let reopened = db.set_status(a, AlertStatus::Open, None, "tanaka").unwrap();
    assert_eq!(reopened.resolution, None);
    assert_eq!(reopened.history[2].resolution, Some(Resolution::Allowed));
    // Only status changes reach the outbox (and so the channels).
    let told: i64 = db
        .conn_for_reading()
        .query_row(
            "SELECT count(*) FROM outbox WHERE alert_id = ?1",
            [a],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(told, 3, "raised, closed, reopened");
    let counts = db.counts().unwrap();
    assert_eq!(counts, [(AlertStatus::Open, 1)]);
}

#[test]
fn a_batch_continuing_one_alert_writes_it_once_and_a_replay_of_the_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = AlertDb::open(&dir.path().join("alerts.db"), Duration::hours(1)).unwrap();
    let minute = |m: u32| format!("2026-11-24T22:{m:02}:00Z");
    // A sender whose rule fires on every event: 300 in one batch, within the window.
    let batch: Vec<Alert> = (0..300)
        .map(|i| alert("n002", &minute(i / 10), &format!("a{i:04}")))
        .collect();
    let results = db.record_all(&batch).unwrap();
    assert_eq!(results[0].1, Recorded::New);
    assert!(
        results[1..]
            .iter()
            .all(|r| *r == (results[0].0, Recorded::Continued))
    );
    let got = db.get(results[0].0).unwrap();
    assert_eq!(got.alert.count, 300, "every continuation counted");
    assert_eq!(
        got.alert.evidence.len(),
        100,
        "evidence kept up to its limit"
    );
    assert_eq!(
        got.alert.last_seen.to_rfc3339(),
        "2026-11-24T22:29:00+00:00"
    );
    assert_eq!(got.alert.explanation, format!("n002 at {}", minute(29)));
    let notices = alerting::outbox::after(db.conn_for_reading(), 0, 1000).unwrap();
    assert_eq!(notices.len(), 1, "one notice for the batch: {notices:?}");
    // The next batch continues it with one `updated` notice.
    let next: Vec<Alert> = (0..50)
        .map(|i| alert("n002", &minute(30 + i / 10), &format!("b{i:04}")))
        .collect();
    assert!(
        db.record_all(&next)
            .unwrap()
            .iter()
            .all(|r| r.1 == Recorded::Continued)
    );
    // A replay of what the alert holds as evidence (the first hundred).
    let replay = db.record_all(&batch[..10]).unwrap();
    assert!(replay.iter().all(|r| r.1 == Recorded::Known), "{replay:?}");
    assert_eq!(db.get(results[0].0).unwrap().alert.count, 350);
    let notices = alerting::outbox::after(db.conn_for_reading(), 0, 1000).unwrap();
    let changes: Vec<_> = notices.iter().map(|n| n.change.as_str()).collect();
    assert_eq!(changes, ["raised", "updated"]);
    // A batch spanning more than the window starts a new alert part way, as one by one would.
    let long = [
        alert("k100", "2026-11-24T08:00:00Z", "c1"),
        alert("k100", "2026-11-24T08:30:00Z", "c2"),
        alert("k100", "2026-11-24T10:00:00Z", "c3"),
        alert("k100", "2026-11-24T10:10:00Z", "c4"),
    ];
    let ids: Vec<_> = db.record_all(&long).unwrap();
    assert_eq!(ids[0].0, ids[1].0);
    assert_ne!(ids[1].0, ids[2].0, "{ids:?}");
    assert_eq!(ids[2], (ids[3].0, Recorded::New));
    assert_eq!(ids[3].1, Recorded::Continued);
    assert_eq!(db.get(ids[0].0).unwrap().alert.count, 2);
    assert_eq!(db.get(ids[2].0).unwrap().alert.count, 2);
}
