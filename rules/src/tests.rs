//! The detections on hand-made events, with the confounders the issue names.

use chrono::{DateTime, Utc};
use store::{Event, Outcome};

use crate::clinic::{
    Clinic, ClinicConfig, RosterConfig, StaffConfig, default_roles, default_sites,
};
use crate::engine::{DetectionsConfig, Engine};

fn staff(id: &str, roles: &[&str], flags: &[&str], end: Option<&str>) -> StaffConfig {
    StaffConfig {
        id: id.into(),
        name: format!("Name of {id}"),
        roles: roles.iter().map(|r| (*r).into()).collect(),
        site: Some("main".into()),
        start: Some("2020-04-01".into()),
        end: end.map(Into::into),
        flags: flags.iter().map(|f| (*f).into()).collect(),
        patient_id: None,
    }
}

fn engine() -> Engine {
    engine_with(
        vec![
            staff("n002", &["nurse"], &[], None),
            staff("d001", &["doctor"], &["on_call"], None),
            staff("r001", &["reception"], &[], None),
            staff("x009", &["nurse"], &[], Some("2026-10-31")),
        ],
        DetectionsConfig::default(),
    )
}

/// The demo clinic with this roster and these detections.
fn engine_with(staff: Vec<StaffConfig>, detections: DetectionsConfig) -> Engine {
    let roster = RosterConfig { file: None, staff };
    let clinic = Clinic::new(
        &ClinicConfig::default(),
        &default_sites(),
        &default_roles(),
        &roster,
    )
    .unwrap();
    Engine::new(clinic, detections)
}

fn ev(t: &str, user: &str, action: &str, ip: &str) -> Event {
    let mut e = Event::new(
        "test",
        "ehr.audit",
        format!("{t}{user}{action}{ip}"),
        Utc::now(),
    );
    e.timestamp = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    // Imported together: one arrival time for all.
    e.ingested = DateTime::parse_from_rfc3339("2026-11-24T23:59:00+09:00")
        .unwrap()
        .with_timezone(&Utc);
    e.user = Some(user.into());
    e.action = action.into();
    e.outcome = Outcome::Success;
    e.source_ip = Some(ip.into());
    e
}

const MAIN: &str = "10.10.1.20";
const ANNEX: &str = "10.10.2.20";

/// The alert's explanation says `text`.
#[track_caller]
fn says(alert: &crate::Alert, text: &str) {
    assert!(
        alert.explanation.contains(text),
        "{:?} does not say {text:?}",
        alert.explanation
    );
}

fn rules(alerts: &[crate::Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

#[test]
fn off_hours_logins_with_their_confounders() {
    let mut e = engine();
    let a = e.process(&ev("2026-11-24T22:40:00+09:00", "n002", "login", MAIN));
    assert_eq!(rules(&a), ["off_hours_login"]);
    assert_eq!(
        a[0].explanation,
        "n002 (Name of n002) logged in at main at 22:40 on Tuesday 2026-11-24; the clinic is open 08:30-12:30, 14:00-18:30 that day"
    );
    assert!(
        e.process(&ev("2026-11-24T23:10:00+09:00", "d001", "login", MAIN))
            .is_empty(),
        "on call"
    );
    assert!(
        e.process(&ev("2026-11-24T08:05:00+09:00", "r001", "login", MAIN))
            .is_empty(),
        "grace margin"
    );
    // Both came close: the closer grace-margin login is the one kept.
    e.process(&ev("2026-11-24T12:40:00+09:00", "r001", "login", MAIN));
    e.process(&ev("2026-11-24T13:35:00+09:00", "n002", "login", MAIN));
    let grace = &e.near_misses["off_hours_login (grace margin)"];
    assert!(
        grace.what.contains("at 08:05") && grace.what.contains("25 minute(s) outside"),
        "{grace:?}"
    );
    assert!(
        e.near_misses["off_hours_login (exempt)"]
            .what
            .contains("exempt as on_call")
    );
    e.near_misses.clear();
    e.process(&ev("2026-11-24T13:35:00+09:00", "n002", "login", MAIN));
    assert!(
        e.near_misses["off_hours_login (grace margin)"]
            .what
            .contains("25 minute(s) outside"),
        "at lunch, the nearer of closing (12:30) and opening (14:00)"
    );
    let a = e.process(&ev("2026-11-23T10:00:00+09:00", "r001", "login", MAIN));
    assert!(
        a[0].explanation.contains("national holiday (勤労感謝の日)"),
        "a holiday on a Monday"
    );
    let mut failed = ev("2026-11-24T23:00:00+09:00", "r001", "login", MAIN);
    failed.outcome = Outcome::Failure;
    failed.action = "login_failed".into();
    assert!(rules(&e.process(&failed)).is_empty());
    let mut network = ev("2026-11-24T23:00:00+09:00", "r001", "login", MAIN);
    network.dataset = "windows.security".into();
    network
        .labels
        .insert("winlog.logon.type".into(), "3".into());
    assert!(
        e.process(&network).is_empty(),
        "a network logon is not a person at a desk"
    );
}

#[test]
fn access_outside_role_unknown_and_ended_accounts() {
    let mut e = engine();
    let mut view = ev("2026-11-24T10:00:00+09:00", "r001", "record.view", MAIN);
    view.category = Some("clinical_notes".into());
    let a = e.process(&view);
    assert_eq!(rules(&a), ["access_outside_role"]);
    says(&a[0], "(reception) did record.view of clinical_notes");
    let mut ok = ev("2026-11-24T10:01:00+09:00", "r001", "record.view", MAIN);
    ok.category = Some("appointments".into());
    assert!(e.process(&ok).is_empty());
    let export = ev("2026-11-24T10:02:00+09:00", "r001", "record.export", MAIN);
    assert_eq!(rules(&e.process(&export)), ["access_outside_role"]);
    let mut nurse = ev("2026-11-24T10:03:00+09:00", "n002", "record.view", MAIN);
    nurse.category = Some("clinical_notes".into());
    assert!(e.process(&nurse).is_empty());
    let a = e.process(&ev(
        "2026-11-24T10:04:00+09:00",
        "ghost",
        "record.view",
        MAIN,
    ));
    assert!(a[0].explanation.contains("not on the staff roster"));
    let a = e.process(&ev("2026-11-24T10:05:00+09:00", "x009", "login", MAIN));
    says(&a[0], "left on 2026-10-31");
}

#[test]
fn concurrent_sessions_at_two_sites() {
    let mut e = engine();
    assert!(
        e.process(&ev("2026-11-24T09:00:00+09:00", "n002", "login", MAIN))
            .is_empty()
    );
    assert!(
        e.process(&ev(
            "2026-11-24T09:20:00+09:00",
            "n002",
            "record.view",
            MAIN
        ))
        .is_empty()
    );
    let a = e.process(&ev("2026-11-24T09:30:00+09:00", "n002", "login", ANNEX));
    assert_eq!(rules(&a), ["concurrent_sessions"]);
    says(
        &a[0],
        "still logged in at main (since 09:00, last activity 09:20)",
    );
    assert_eq!(a[0].evidence.len(), 2);

    // A logout at one site and a login at the other is how it should be.
    let mut e = engine();
    e.process(&ev("2026-11-24T09:00:00+09:00", "n002", "login", MAIN));
    e.process(&ev("2026-11-24T09:40:00+09:00", "n002", "logout", MAIN));
    assert!(
        e.process(&ev("2026-11-24T10:10:00+09:00", "n002", "login", ANNEX))
            .is_empty()
    );

    // No logout, but idle past the session timeout and past travel time: fine.
    let mut e = engine();
    e.process(&ev("2026-11-24T09:00:00+09:00", "n002", "login", MAIN));
    assert!(
        e.process(&ev("2026-11-24T10:00:00+09:00", "n002", "login", ANNEX))
            .is_empty()
    );
}

#[test]
fn bulk_exports_and_many_patients() {
    let mut e = engine();
    let mut small = ev("2026-11-24T10:00:00+09:00", "d001", "record.export", MAIN);
    small.record_count = Some(12);
    assert!(e.process(&small).is_empty(), "a small export");
    let mut big = ev("2026-11-24T10:01:00+09:00", "d001", "record.export", MAIN);
    big.record_count = Some(500);
    let a = e.process(&big);
    assert_eq!(rules(&a), ["bulk_export"]);
    assert_eq!(
        a[0].explanation,
        "d001 (Name of d001) exported 500 records at once (the limit is 100)"
    );
    let mut fired = Vec::new();
    for i in 0..60 {
        let mut v = ev(
            &format!("2026-11-24T11:{i:02}:00+09:00"),
            "d001",
            "record.view",
            MAIN,
        );
        v.patient = Some(format!("P{i}"));
        fired.extend(e.process(&v));
    }
    assert_eq!(rules(&fired), ["bulk_export"], "once per window");
    assert!(
        fired[0]
            .explanation
            .contains("50 different patients within 60 minutes")
    );
}

#[test]
fn custom_rules_count_and_distinct_over_a_window() {
    use crate::engine::{CustomRule, CustomRuleConfig};
    let failures = CustomRuleConfig {
        name: "repeated_login_failures".into(),
        filter: "event.action:login_failed".into(),
        group_by: vec!["user.name".into()],
        distinct: None,
        threshold: 3,
        window_minutes: 10,
        severity: crate::Severity::Medium,
        explanation: None,
    };
    let hosts = CustomRuleConfig {
        name: "one_user_many_hosts".into(),
        filter: "event.action:login".into(),
        group_by: vec!["user.name".into()],
        distinct: Some("host.name".into()),
        threshold: 3,
        window_minutes: 60,
        severity: crate::Severity::Low,
        explanation: Some("{group}: {count} hosts in {window} min".into()),
    };
    let mut e = engine().with_custom_rules(vec![
        CustomRule::new(0, &failures).unwrap(),
        CustomRule::new(1, &hosts).unwrap(),
    ]);
    let mut fired = Vec::new();
    for (i, minute) in [0, 2, 30, 31, 33].iter().enumerate() {
        let mut f = ev(
            &format!("2026-11-24T10:{minute:02}:00+09:00"),
            "n002",
            "login_failed",
            MAIN,
        );
        f.outcome = Outcome::Failure;
        f.message = format!("attempt {i}");
        fired.extend(e.process(&f));
    }
    assert_eq!(
        rules(&fired),
        ["repeated_login_failures"],
        "3 within 10 min, once"
    );
    says(
        &fired[0],
        "3 events matching `event.action:login_failed` within 10 minutes for user.name=n002",
    );
    let mut fired = Vec::new();
    for (i, host) in ["MAIN-PC01", "MAIN-PC01", "MAIN-PC02", "MAIN-PC03"]
        .iter()
        .enumerate()
    {
        let mut l = ev(
            &format!("2026-11-24T10:{:02}:00+09:00", 40 + i),
            "d001",
            "login",
            MAIN,
        );
        l.host = Some((*host).into());
        fired.extend(
            e.process(&l)
                .into_iter()
                .filter(|a| a.rule == "one_user_many_hosts"),
        );
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].explanation, "user.name=d001: 3 hosts in 60 min");
    let bad = CustomRuleConfig {
        filter: "usr.name:x".into(),
        ..failures
    };
    let (key, why) = CustomRule::new(4, &bad).unwrap_err();
    assert_eq!(key, "custom_rules[4].filter");
    assert!(why.contains("unknown field"), "{why}");
}

#[test]
fn wrong_clocks_are_reported_and_future_events_stay_out_of_the_windows() {
    let mut e = engine();
    let mut future = ev("2026-11-30T22:40:00+09:00", "n002", "login", MAIN);
    future.ingested = DateTime::parse_from_rfc3339("2026-11-24T10:00:00+09:00")
        .unwrap()
        .with_timezone(&Utc);
    future.log_source = Some("udp://10.10.1.23:514".into());
    future.host = Some("MAIN-PC03".into());
    let a = e.process(&future);
    assert_eq!(
        rules(&a),
        ["clock_check"],
        "no off-hours alert from a bad clock"
    );
    says(&a[0], "MAIN-PC03 sends times 6 days ahead");
    // An imported file of old events is history, not a bad clock.
    let mut old = ev("2019-11-24T10:00:00+09:00", "n002", "record.view", MAIN);
    old.ingested = future.ingested;
    assert!(e.process(&old).is_empty());
    // The appliance's clock going back an hour.
    let mut a1 = ev("2026-11-24T10:00:00+09:00", "n002", "record.view", MAIN);
    a1.ingested = DateTime::parse_from_rfc3339("2026-11-24T11:00:00+09:00")
        .unwrap()
        .with_timezone(&Utc);
    let mut a2 = a1.clone();
    a2.ingested = DateTime::parse_from_rfc3339("2026-11-24T10:00:00+09:00")
        .unwrap()
        .with_timezone(&Utc);
    let mut e = engine();
    assert!(e.process(&a1).is_empty());
    let a = e.process(&a2);
    says(&a[0], "clock went back 60 minutes");
    // No user: nothing user-based, and no panic.
    let mut nobody = ev("2026-11-24T22:00:00+09:00", "x", "login", MAIN);
    nobody.user = None;
    assert!(engine().process(&nobody).is_empty());
}

#[test]
fn failures_then_success_new_machines_sensitive_records_and_no_treatment_relationship() {
    let mut e = engine();
    for minute in 0..5 {
        let mut f = ev(
            &format!("2026-11-24T10:0{minute}:00+09:00"),
            "n002",
            "login_failed",
            MAIN,
        );
        f.outcome = Outcome::Failure;
        assert!(e.process(&f).is_empty());
    }
    let a = e.process(&ev("2026-11-24T10:06:00+09:00", "n002", "login", MAIN));
    assert_eq!(rules(&a), ["login_failures"]);
    says(&a[0], "after 5 failed attempts since 10:00");
    assert!(
        e.process(&ev("2026-11-24T10:07:00+09:00", "n002", "login", MAIN))
            .is_empty(),
        "counted once"
    );

    // Twenty logins on MAIN-PC03, then one on another machine.
    let mut e = engine();
    for i in 0..20 {
        let mut l = ev(
            &format!("2026-11-24T09:{i:02}:00+09:00"),
            "n002",
            "login",
            MAIN,
        );
        l.host = Some("MAIN-PC03".into());
        assert!(e.process(&l).is_empty());
    }
    let mut l = ev("2026-11-24T10:30:00+09:00", "n002", "login", MAIN);
    l.host = Some("MAIN-PC09".into());
    let a = e.process(&l);
    assert_eq!(rules(&a), ["new_workstation"]);
    assert!(
        a[0].explanation
            .contains("MAIN-PC09, a machine they have not used before")
    );

    // VIP and a colleague's own record.
    let mut cfg = crate::engine::DetectionsConfig::default();
    cfg.sensitive_records.vip_patients = vec!["P999".into()];
    let mut staff_n002 = staff("n002", &["nurse"], &[], None);
    staff_n002.patient_id = Some("P555".into());
    let mut e = engine_with(vec![staff_n002, staff("d001", &["doctor"], &[], None)], cfg);
    let mut v = ev("2026-11-24T10:00:00+09:00", "d001", "record.view", MAIN);
    v.patient = Some("P999".into());
    assert!(e.process(&v)[0].explanation.contains("flagged VIP"));
    v.patient = Some("P555".into());
    assert!(
        e.process(&v)[0]
            .explanation
            .contains("staff member Name of n002")
    );
    let mut own = ev("2026-11-24T10:05:00+09:00", "n002", "record.view", MAIN);
    own.patient = Some("P555".into());
    assert!(
        e.process(&own).is_empty(),
        "one's own record is not a colleague's"
    );

    // The schedule: P1 has an appointment at main on 11/20, P2 only at the annex.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("appointments.csv");
    std::fs::write(
        &path,
        "patient_id,date,site,doctor\nP1,2026-11-20,main,d001\nP2,2026/11/24,annex,d001\n",
    )
    .unwrap();
    let appointments = crate::engine::Appointments::load(&path).unwrap();
    let mut e = engine().with_appointments(Some(appointments));
    let mut v = ev("2026-11-24T10:00:00+09:00", "d001", "record.view", MAIN);
    v.patient = Some("P1".into());
    assert!(e.process(&v).is_empty());
    v.patient = Some("P2".into());
    let a = e.process(&v);
    assert_eq!(rules(&a), ["treatment_relationship"]);
    assert!(
        a[0].explanation
            .contains("no appointment or visit at main within 30 days")
    );
    std::fs::write(&path, "patient_id,date,site\nP1,yesterday,main\n").unwrap();
    let (key, why) = crate::engine::Appointments::load(&path).unwrap_err();
    assert_eq!(key, "detections.treatment_relationship.appointments_file");
    assert!(why.contains("line 2"), "{why}");
}

#[test]
fn a_dormant_account_that_acts_again() {
    let mut e = engine();
    e.remember_active(
        "n002",
        DateTime::parse_from_rfc3339("2026-06-01T10:00:00+09:00")
            .unwrap()
            .with_timezone(&Utc),
    );
    let a = e.process(&ev(
        "2026-11-24T10:00:00+09:00",
        "n002",
        "record.view",
        MAIN,
    ));
    assert_eq!(rules(&a), ["access_outside_role"]);
    says(
        &a[0],
        "last active on 2026-06-01 and is active again after 176 days",
    );
    assert!(
        e.process(&ev(
            "2026-11-24T10:05:00+09:00",
            "n002",
            "record.view",
            MAIN
        ))
        .is_empty()
    );
    let changed = e.take_changed_activity();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].0, "n002");
    assert!(e.take_changed_activity().is_empty());
}

#[test]
fn a_day_far_above_the_persons_own_baseline() {
    let mut e = engine();
    let mut fired = Vec::new();
    // Ten ordinary days of ~40 chart views, spread over the morning.
    for day in 10..20 {
        for i in 0..40 {
            let mut v = ev(
                &format!(
                    "2026-11-{day:02}T{:02}:{:02}:00+09:00",
                    9 + i / 20,
                    (i % 20) * 3
                ),
                "n002",
                "record.view",
                MAIN,
            );
            v.patient = Some(format!("P{}", i % 30));
            fired.extend(e.process(&v));
        }
    }
    assert!(rules(&fired).is_empty(), "{fired:?}");
    // Then a day of 250, none in a burst that the hourly check would catch.
    for i in 0..250 {
        let mut v = ev(
            &format!("2026-11-20T{:02}:{:02}:00+09:00", 8 + i / 25, (i % 25) * 2),
            "n002",
            "record.view",
            MAIN,
        );
        v.patient = Some(format!("P{}", i % 40));
        fired.extend(e.process(&v));
    }
    assert_eq!(rules(&fired), ["bulk_export"], "once that day");
    assert!(
        fired[0]
            .explanation
            .contains("their daily average of 40 over the previous 10 working days"),
        "{}",
        fired[0].explanation
    );
}

#[test]
fn failed_logins_for_many_accounts_from_one_address_are_a_password_spray() {
    let mut e = engine();
    let failed = |minute: u32, user: &str, ip: &str| {
        let mut f = ev(
            &format!("2026-11-24T10:{minute:02}:00+09:00"),
            user,
            "login_failed",
            ip,
        );
        f.outcome = Outcome::Failure;
        f
    };
    let sprays = |alerts: Vec<crate::Alert>| -> Vec<crate::Alert> {
        alerts
            .into_iter()
            .filter(|a| a.rule == "password_spray")
            .collect()
    };
    // One person mistyping a dozen times is not a spray (login_failures covers that).
    for minute in 0..12 {
        assert!(sprays(e.process(&failed(minute, "n002", MAIN))).is_empty());
    }
    // Nine accounts from one address, and one more from another: below the threshold.
    for i in 0..9 {
        assert!(sprays(e.process(&failed(20 + i, &format!("user{i}"), ANNEX))).is_empty());
    }
    assert!(sprays(e.process(&failed(29, "user9", MAIN))).is_empty());
    // The tenth account from the same address within ten minutes fires, naming the address.
    let a = sprays(e.process(&failed(29, "user9", ANNEX)));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].user, None);
    assert_eq!(a[0].evidence.len(), 10);
    says(
        &a[0],
        "10.10.2.20 failed to log in as 10 different accounts between 10:20 and 10:29",
    );
    // Once per window.
    assert!(sprays(e.process(&failed(30, "user10", ANNEX))).is_empty());
    // Spread over more than the window, the same accounts are not a spray.
    let mut e = engine();
    for i in 0..10 {
        assert!(sprays(e.process(&failed(i * 5, &format!("user{i}"), ANNEX))).is_empty());
    }
}

#[test]
fn ntlm_failures_on_the_domain_controller_are_a_spray_from_their_workstation() {
    // 4776 names the workstation, not an address.
    let mut e = engine();
    let mut fired = Vec::new();
    for i in 0..12 {
        let mut f = ev(
            &format!("2026-11-24T10:00:{i:02}+09:00"),
            &format!("acct{i:02}"),
            "login_failed",
            "",
        );
        f.source_ip = None;
        f.outcome = Outcome::Failure;
        f.labels
            .insert("winlog.event_data.Workstation".into(), "ATTACKER-PC".into());
        fired.extend(
            e.process(&f)
                .into_iter()
                .filter(|a| a.rule == "password_spray"),
        );
    }
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject.as_deref(), Some("workstation ATTACKER-PC"));
    says(
        &fired[0],
        "workstation ATTACKER-PC failed to log in as 10 different accounts",
    );
}

#[test]
fn events_from_any_year_a_clock_can_say_are_evaluated_without_a_panic() {
    let mut e = engine();
    for t in [
        "0001-01-01T00:00:00Z",
        "0001-03-20T23:30:00Z",
        "1900-03-21T10:00:00Z",
        "1948-09-23T22:00:00+09:00",
        "2100-03-20T22:00:00+09:00",
        "2262-04-12T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ] {
        for action in [
            "login_failed",
            "login",
            "record.view",
            "record.export",
            "logout",
        ] {
            for user in ["n002", "d001", "x009", "stranger"] {
                let mut event = ev(t, user, action, MAIN);
                event.patient = Some("P1".into());
                e.process(&event);
            }
        }
    }
}
