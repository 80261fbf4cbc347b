//! Files shaped like real exports from other systems (written here, not copied): the record kind
//! inside the operation word, date and time in two columns, Snare in RFC 5424, the domain
//! controller's Kerberos and NTLM events, ATNA without a zone, a FHIR Bundle with other
//! resources, and over-long CSV lines.

use super::tests::{Read, label, read_bytes};
use super::*;
use crate::config::EhrConfig;
use store::Outcome;

#[test]
fn the_record_kind_comes_from_the_operation_word_when_there_is_no_kind_column() {
    let csv = "日時,利用者ID,職種,患者ID,操作\n\
               2026/11/24 09:00:01,r001,受付,P1,患者基本情報参照\n\
               2026/11/24 09:00:02,r001,受付,P1,予約参照\n\
               2026/11/24 09:00:03,r001,受付,P1,会計参照\n\
               2026/11/24 09:00:04,d001,医師,P1,カルテ参照\n\
               2026/11/24 09:00:05,d001,医師,P1,処方登録\n\
               2026/11/24 09:00:06,d001,医師,,ログイン\n";
    let r = read_bytes("ehr.csv", csv.as_bytes());
    let got: Vec<(&str, Option<&str>)> = r
        .events
        .iter()
        .map(|(e, _)| (e.action.as_str(), e.category.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("record.view", Some("demographics")),
            ("record.view", Some("appointments")),
            ("record.view", Some("billing")),
            ("record.view", Some("clinical_notes")),
            ("record.update", Some("prescriptions")),
            ("login", None),
        ]
    );
    // A kind column, when present, still decides.
    let csv = "日時,利用者ID,操作,種別\n2026/11/24 09:00:01,r001,予約参照,カルテ\n";
    let r = read_bytes("ehr.csv", csv.as_bytes());
    assert_eq!(r.events[0].0.category.as_deref(), Some("clinical_notes"));
    // JSON lines: the message says it when the operation word does not.
    let line = r#"{"timestamp":"2026-11-24T09:15:02+09:00","user":"r001","action":"VIEW","message":"予約一覧を表示"}"#;
    let r = read_bytes("ehr.jsonl", line.as_bytes());
    assert_eq!(r.events[0].0.category.as_deref(), Some("appointments"));
}

#[test]
fn a_mapping_names_an_action_and_a_record_kind() {
    let mut config = EhrConfig::default();
    config
        .actions
        .insert("予約確認".into(), "record.view:appointments".into());
    let mapping = EhrMapping::new(&config).unwrap();
    assert_eq!(mapping.action("予約確認", Outcome::Success), "record.view");
    assert_eq!(mapping.kind_in("予約確認").as_deref(), Some("appointments"));
    config
        .actions
        .insert("謎".into(), "record.view:secrets".into());
    let (key, expected) = EhrMapping::new(&config).unwrap_err();
    assert_eq!(key, "actions.\"謎\"");
    assert!(expected.contains("appointments"), "{expected}");
}

#[test]
fn date_and_time_in_two_columns_are_joined() {
    let csv = "日付,時刻,利用者ID,操作\n2026/11/24,09:15:02,n001,カルテ参照\n";
    let r = read_bytes("audit.csv", csv.as_bytes());
    assert_eq!(r.rejects, []);
    assert_eq!(
        r.events[0].0.timestamp.to_rfc3339(),
        "2026-11-24T00:15:02+00:00"
    );
    // English headers, a compact time, detected as CSV without the file name saying so.
    let csv = "Date,Time,User,Action\n20261124,091502,n001,VIEW\n";
    let r = read_bytes("audit.txt", csv.as_bytes());
    assert_eq!(r.format, Format::EhrCsv);
    assert_eq!(
        r.events[0].0.timestamp.to_rfc3339(),
        "2026-11-24T00:15:02+00:00"
    );
}

#[test]
fn an_over_long_csv_line_is_rejected_and_the_rows_after_it_are_read() {
    let mut csv = b"timestamp,user,action,message\n2026-11-24 09:00:00,n001,VIEW,first\n".to_vec();
    csv.extend_from_slice(b"2026-11-24 09:00:01,n001,VIEW,\"");
    csv.extend(std::iter::repeat_n(b'x', 3 << 20));
    csv.extend_from_slice(b"\"\n");
    for i in 0..100 {
        csv.extend_from_slice(
            format!("2026-11-24 09:01:{:02},n001,VIEW,row {i}\n", i % 60).as_bytes(),
        );
    }
    let r = read_bytes("big.csv", &csv);
    assert_eq!(
        r.events.len(),
        101,
        "the first row and the 100 after the long one"
    );
    assert_eq!(r.rejects.len(), 1, "{:?}", r.rejects);
    assert_eq!(r.rejects[0].0, "line 3");
    assert!(r.rejects[0].1.contains("longer than"), "{:?}", r.rejects);
    assert_eq!(label(&r.events[1].0, "log.file.line"), "4");
    assert!(r.events[100].0.message.contains("row 99"));
}

/// A Snare line as NXLog or rsyslog sends it, tab-separated after the tag.
fn snare(event_id: u32, time: &str, audit: &str, description: &str) -> String {
    format!(
        "MSWinEventLog\t1\tSecurity\t101\t{time}\t{event_id}\tMicrosoft-Windows-Security-Auditing\tN/A\tN/A\t{audit}\tDC01\tKerberos\t\t{description}\t7"
    )
}

#[test]
fn snare_in_rfc5424_takes_the_offset_of_the_header() {
    let line = format!(
        "<14>1 2026-11-24T07:01:00Z PC-07 MSWinEventLog - - - {}\n",
        snare(
            4624,
            "Tue Nov 24 07:01:00 2026",
            "Success Audit",
            "An account was successfully logged on.   New Logon:  Security ID: S-1  Account Name: n003  Account Domain: CLINIC  Logon Type: 2"
        )
    );
    let r = read_bytes("win.log", line.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(e.timestamp.to_rfc3339(), "2026-11-24T07:01:00+00:00");
    // Without a zone in the header (RFC 3164), the sender's zone (Asia/Tokyo here).
    let line = format!(
        "<14>Nov 24 16:01:00 PC-07 {}\n",
        snare(
            4624,
            "Tue Nov 24 16:01:00 2026",
            "Success Audit",
            "New Logon:  Account Name: n003"
        )
    );
    let r = read_bytes("win.log", line.as_bytes());
    assert_eq!(
        r.events[0].0.timestamp.to_rfc3339(),
        "2026-11-24T07:01:00+00:00"
    );
}

#[test]
fn snare_events_without_a_mapping_keep_their_description_and_account() {
    let line = format!(
        "<14>Nov 24 16:01:00 DC01 {}\n",
        snare(
            4798,
            "Tue Nov 24 16:01:00 2026",
            "Success Audit",
            "A user's local group membership was enumerated.   Subject:  Security ID: S-1-5-21-1  Account Name: n003  Account Domain: CLINIC  Logon ID: 0x3E7   User:  Security ID: S-1-5-21-9  Account Name: admin2"
        )
    );
    let r = read_bytes("win.log", line.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(e.action, "windows.4798");
    assert_eq!(e.user.as_deref(), Some("n003"));
    assert_eq!(e.user_domain.as_deref(), Some("CLINIC"));
    assert!(
        e.message.contains("local group membership"),
        "{}",
        e.message
    );
    assert!(e.message.contains("admin2"), "{}", e.message);
}

#[test]
fn domain_controller_kerberos_and_ntlm_events_are_logins_with_reasons() {
    let lines = [
        snare(
            4771,
            "Tue Nov 24 10:00:00 2026",
            "Failure Audit",
            "Kerberos pre-authentication failed.   Account Information:  Security ID: CLINIC\\n003  Account Name: n003   Service Information:  Service Name: krbtgt/CLINIC   Network Information:  Client Address: ::ffff:192.168.10.21  Client Port: 50123   Additional Information:  Ticket Options: 0x40810010  Failure Code: 0x18  Pre-Authentication Type: 2",
        ),
        snare(
            4768,
            "Tue Nov 24 10:01:00 2026",
            "Success Audit",
            "A Kerberos authentication ticket (TGT) was requested.   Account Information:  Account Name: n003  Supplied Realm Name: CLINIC  User ID: CLINIC\\n003   Service Information:  Service Name: krbtgt   Network Information:  Client Address: ::ffff:192.168.10.21  Client Port: 50124   Additional Information:  Ticket Options: 0x40810010  Result Code: 0x0",
        ),
        snare(
            4769,
            "Tue Nov 24 10:02:00 2026",
            "Success Audit",
            "A Kerberos service ticket was requested.   Account Information:  Account Name: n003@CLINIC.LOCAL  Account Domain: CLINIC.LOCAL   Service Information:  Service Name: EHR01$   Network Information:  Client Address: ::ffff:192.168.10.21  Client Port: 50125   Additional Information:  Ticket Options: 0x40810000  Failure Code: 0x0",
        ),
        snare(
            4776,
            "Tue Nov 24 10:03:00 2026",
            "Failure Audit",
            "The computer attempted to validate the credentials for an account.   Authentication Package: MICROSOFT_AUTHENTICATION_PACKAGE_V1_0  Logon Account: ghost  Source Workstation: PC-09  Error Code: 0xC0000064",
        ),
    ];
    let text: String = lines
        .iter()
        .map(|l| format!("<14>Nov 24 10:00:00 DC01 {l}\n"))
        .collect();
    let r = read_bytes("dc.log", text.as_bytes());
    type Row<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a str);
    let got: Vec<Row> = r
        .events
        .iter()
        .map(|(e, _)| {
            (
                e.code.as_deref().unwrap_or(""),
                e.action.as_str(),
                e.user.as_deref(),
                e.source_ip.as_deref(),
                label(e, "event.reason"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "4771",
                "login_failed",
                Some("n003"),
                Some("192.168.10.21"),
                "bad_password"
            ),
            ("4768", "login", Some("n003"), Some("192.168.10.21"), ""),
            ("4769", "login", Some("n003"), Some("192.168.10.21"), ""),
            ("4776", "login_failed", Some("ghost"), None, "unknown_user"),
        ]
    );
    assert_eq!(r.events[2].0.user_domain.as_deref(), Some("CLINIC.LOCAL"));
    assert!(r.events[3].0.message.contains("reason unknown_user"));
    assert!(r.events[3].0.message.contains("PC-09"));
    // The same from Winlogbeat: event data by name, a failed TGT for a locked account.
    let json = r#"{"@timestamp":"2026-11-24T01:00:00Z","winlog":{"event_id":4768,"channel":"Security","computer_name":"DC01","event_data":{"TargetUserName":"n004","TargetDomainName":"CLINIC","Status":"0x12","IpAddress":"::ffff:192.168.10.30"}}}"#;
    let r = read_bytes("wlb.json", json.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(
        (e.action.as_str(), e.outcome, label(e, "event.reason")),
        (
            "login_failed",
            Outcome::Failure,
            "account_locked_or_disabled"
        )
    );
}

#[test]
fn windows_accounts_are_split_into_name_and_domain() {
    let json = r#"{"@timestamp":"2026-11-24T01:00:00Z","winlog":{"event_id":1149,"channel":"Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational","computer_name":"PC-01","user_data":{"Param1":"n003","Param2":"CLINIC","Param3":"192.168.10.21"}}}"#;
    let r = read_bytes("rdp.json", json.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(
        (e.user.as_deref(), e.user_domain.as_deref()),
        (Some("n003"), Some("CLINIC"))
    );
}

#[test]
fn atna_without_a_zone_is_read_in_the_clinic_zone_and_tagged() {
    let xml = r#"<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2009-11-29T15:15:19" EventOutcomeIndicator="0"><EventID code="110110" codeSystemName="DCM" displayName="Patient Record"/></EventIdentification><ActiveParticipant UserID="n003" UserIsRequestor="true"/></AuditMessage>"#;
    let r = read_bytes("atna.xml", xml.as_bytes());
    assert_eq!(r.rejects, []);
    let e = &r.events[0].0;
    assert_eq!(e.timestamp.to_rfc3339(), "2009-11-29T06:15:19+00:00");
    assert!(
        e.tags.iter().any(|t| t == "timezone_assumed"),
        "{:?}",
        e.tags
    );
}

#[test]
fn a_fhir_bundle_gives_every_audit_event_and_counts_the_rest() {
    let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"AuditEvent","recorded":"2026-11-24T09:00:00+09:00","action":"R",
          "agent":[{"who":{"identifier":{"value":"n003"}},"requestor":true}],
          "entity":[{"what":{"reference":"Patient/P1"}}]}},
        {"resource":{"resourceType":"Provenance","recorded":"2026-11-24T09:00:00+09:00"}},
        {"resource":{"resourceType":"AuditEvent","recorded":"2026-11-24T09:05:00+09:00","action":"U",
          "agent":[{"who":{"identifier":{"value":"n003"}},"requestor":true}],
          "entity":[{"what":{"reference":"Patient/P2"}}]}}
    ]}"#;
    let r = read_bytes("bundle.json", bundle.as_bytes());
    assert_eq!(r.rejects, []);
    let patients: Vec<Option<&str>> = r.events.iter().map(|(e, _)| e.patient.as_deref()).collect();
    assert_eq!(patients, [Some("P1"), Some("P2")]);
    assert_eq!(r.filtered, ["fhir_resource_type"]);
}

#[test]
fn an_event_start_followed_by_megabytes_of_newlines_is_one_reject_and_reading_goes_on() {
    // Each new line used to mean a search of everything buffered: quadratic in the lines.
    let mut xml = b"<Events><Event>".to_vec();
    xml.extend(std::iter::repeat_n(b'\n', 3 << 20));
    xml.extend_from_slice(
        br#"<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><EventID>4624</EventID><TimeCreated SystemTime="2026-11-24T00:00:00Z"/><Computer>PC-01</Computer><Channel>Security</Channel></System><EventData><Data Name="TargetUserName">n003</Data></EventData></Event></Events>"#,
    );
    let r = read_bytes("flood.xml", &xml);
    assert_eq!(r.rejects.len(), 1, "{:?}", r.rejects);
    assert!(
        r.rejects[0].1.contains("no </Event> within"),
        "{:?}",
        r.rejects
    );
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].0.user.as_deref(), Some("n003"));
}

/// A Snare record behind an RFC 5424 header with this time and APP-NAME.
fn snare_5424(header: &str, app: &str, payload_time: &str, event_id: u32, text: &str) -> String {
    format!(
        "<13>1 {header} PC-07 {app} - - - {}\n",
        snare(event_id, payload_time, "Success Audit", text)
    )
}

/// The one event a Snare record on a domain controller becomes (an RFC 5424 header in UTC).
fn one_event(event_id: u32, text: &str) -> Read {
    read_bytes(
        "dc.log",
        snare_5424(
            "2026-11-30T07:01:00Z",
            "-",
            "Mon Nov 30 07:01:00 2026",
            event_id,
            text,
        )
        .as_bytes(),
    )
}

#[test]
fn snare_behind_a_zoned_header_takes_the_whole_hour_difference_as_its_zone() {
    let logon =
        "An account was successfully logged on.   New Logon:  Account Name: n020  Logon Type: 2";
    let at = |line: String| {
        read_bytes("win.log", line.as_bytes()).events[0]
            .0
            .timestamp
            .to_rfc3339()
    };
    // A PC on Japan time behind a relay that writes UTC; the relay five minutes late.
    for (header, payload) in [
        ("2026-12-01T03:00:00.000Z", "Tue Dec 01 12:00:00 2026"),
        ("2026-12-01T03:05:00Z", "Tue Dec 01 12:00:00 2026"),
        ("2026-12-01T12:00:00+09:00", "Tue Dec 01 03:00:00 2026"),
        ("2026-12-01T03:00:00Z", "Tue Dec 01 03:00:00 2026"),
    ] {
        assert_eq!(
            at(snare_5424(header, "-", payload, 4624, logon)),
            "2026-12-01T03:00:00+00:00",
            "{header} {payload}"
        );
    }
    // APP-NAME `MSWinEventLog` is the header's, not the record's start.
    let r = read_bytes(
        "win.log",
        snare_5424(
            "2026-11-30T07:01:00Z",
            "MSWinEventLog",
            "Mon Nov 30 16:01:00 2026",
            4624,
            logon,
        )
        .as_bytes(),
    );
    let e = &r.events[0].0;
    assert_eq!(
        (e.action.as_str(), e.user.as_deref()),
        ("login", Some("n020"))
    );
    assert_eq!(e.timestamp.to_rfc3339(), "2026-11-30T07:01:00+00:00");
    assert!(e.tags.is_empty(), "{:?}", e.tags);
}

#[test]
fn a_description_value_ends_at_the_next_label_even_an_unlisted_one() {
    let text = "A Kerberos service ticket was requested.  Account Information:  Account Name:  n003@CLINIC.LOCAL  Account Domain:  CLINIC.LOCAL  Logon GUID:  {00000000-0000-0000-0000-000000000000}  Service Information:  Service Name:  EHR-SRV$  Service ID:  S-1-5-21-9  Network Information:  Client Address:  ::ffff:192.168.10.21  Client Port:  50125";
    let r = one_event(4769, text);
    let e = &r.events[0].0;
    assert_eq!(e.user_domain.as_deref(), Some("CLINIC.LOCAL"));
    assert_eq!(label(e, "winlog.event_data.ServiceName"), "EHR-SRV$");
    assert!(!e.message.contains("GUID"), "{}", e.message);
    let text = "A Kerberos authentication ticket (TGT) was requested.  Account Information:  Account Name: n003 Supplied Realm Name: CLINIC.LOCAL User ID: CLINIC\\n003";
    let r = one_event(4768, text);
    assert_eq!(r.events[0].0.user_domain.as_deref(), Some("CLINIC.LOCAL"));
}

#[test]
fn the_account_comes_from_a_bare_account_name_or_snares_user_column() {
    // No `New Logon:` block: the user column says who.
    let line = "<13>1 2026-11-30T07:01:00Z PC-07 - - - - MSWinEventLog\t1\tSecurity\t9\tMon Nov 30 07:01:00 2026\t4624\tX\tCLINIC\\n013\tN/A\tSuccess Audit\tPC-07\tLogon\t\tAn account was logged on.  Logon Type: 2\t9\n";
    let r = read_bytes("win.log", line.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(
        (e.user.as_deref(), e.user_domain.as_deref()),
        (Some("n013"), Some("CLINIC"))
    );
    // An unmapped event naming a plain `Account Name`.
    let r = one_event(4799, "Something happened.  Account Name: zzuniqueacct");
    assert_eq!(r.events[0].0.user.as_deref(), Some("zzuniqueacct"));
}

#[test]
fn cancelling_an_appointment_is_an_update_of_appointments() {
    let csv = "日時,利用者ID,操作\n2026/11/24 09:00:01,r001,予約取消\n";
    let r = read_bytes("ops.csv", csv.as_bytes());
    let e = &r.events[0].0;
    assert_eq!(
        (e.action.as_str(), e.category.as_deref()),
        ("record.update", Some("appointments"))
    );
    assert!(
        e.tags.iter().any(|t| t == "timezone_assumed"),
        "a local time is tagged"
    );
}

#[test]
fn a_minified_bundle_over_a_mebibyte_on_one_line_is_read_whole() {
    let entry = |i: usize| {
        format!(
            r#"{{"resource":{{"resourceType":"AuditEvent","recorded":"2026-11-24T09:00:00","action":"R","agent":[{{"who":{{"identifier":{{"value":"n{i:04}"}}}},"requestor":true}}],"entity":[{{"what":{{"reference":"Patient/P{i}"}}}}],"outcome":"0","note":"{}"}}}}"#,
            "x".repeat(400)
        )
    };
    let entries: Vec<String> = (0..4000).map(entry).collect();
    let bundle = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{},{{"resource":{{"resourceType":"Provenance"}}}}]}}"#,
        entries.join(",")
    );
    assert!(bundle.len() > 1 << 20);
    let r = read_bytes("bundle.json", bundle.as_bytes());
    assert_eq!(r.rejects, []);
    assert_eq!(r.events.len(), 4000);
    assert_eq!(r.filtered, ["fhir_resource_type"]);
    // `recorded` without an offset is read in the clinic zone and tagged.
    let e = &r.events[0].0;
    assert_eq!(e.timestamp.to_rfc3339(), "2026-11-24T00:00:00+00:00");
    assert!(
        e.tags.iter().any(|t| t == "timezone_assumed"),
        "{:?}",
        e.tags
    );
}

#[test]
fn a_bundle_entry_is_named_by_its_place_in_the_bundle() {
    let bundle = r#"{"resourceType":"Bundle","entry":[
        {"resource":{"resourceType":"Provenance"}},
        {"resource":{"resourceType":"Patient"}},
        {"resource":{"resourceType":"AuditEvent","action":"R"}}
    ]}"#;
    let r = read_bytes("b.json", bundle.as_bytes());
    assert_eq!(r.rejects.len(), 1);
    assert!(r.rejects[0].0.ends_with("entry 3"), "{:?}", r.rejects);
}
