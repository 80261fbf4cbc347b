//! Every real sample in `../shared/samples` read through the same readers `mimamori import`
//! uses, with the record counts and field values checked by hand against the files (and the
//! samples README, which enumerated them with python-evtx and evtx_dump).

use std::path::PathBuf;

use super::*;
use crate::ehr::EhrMapping;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples")
}

pub(super) fn parsers() -> Parsers {
    Parsers {
        syslog: SyslogParser::new(chrono_tz::Asia::Tokyo),
        ehr: EhrMapping::default(),
        filter: NoiseFilter::default(),
        zone: chrono_tz::Asia::Tokyo,
    }
}

/// What reading one sample gives: events (with their sequence numbers) and rejects.
pub(super) struct Read {
    pub(super) format: Format,
    pub(super) events: Vec<(Event, Option<(String, u64)>)>,
    pub(super) rejects: Vec<(String, String)>,
    pub(super) filtered: Vec<&'static str>,
}

impl Read {
    fn kept(&self) -> Vec<&Event> {
        let filter = NoiseFilter::default();
        self.events
            .iter()
            .map(|(e, _)| e)
            .filter(|e| filter.reason(e).is_none())
            .collect()
    }

    pub(super) fn find(&self, pred: impl Fn(&Event) -> bool) -> &Event {
        self.events
            .iter()
            .map(|(e, _)| e)
            .find(|e| pred(e))
            .expect("an event like that")
    }
}

pub(super) fn read_bytes(name: &str, bytes: &[u8]) -> Read {
    let p = parsers();
    let format =
        detect(&bytes[..bytes.len().min(64 << 10)], name, &p.ehr).expect("format detected");
    let mut read = Read {
        format,
        events: Vec::new(),
        rejects: Vec::new(),
        filtered: Vec::new(),
    };
    let received = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut sink = |item: Item| match item {
        Item::Record {
            event, sequence, ..
        } => read.events.push((event, sequence)),
        Item::Reject { location, reason } => read.rejects.push((location, reason)),
        Item::Filtered { reason } => read.filtered.push(reason),
    };
    if format == Format::Evtx {
        p.read_evtx(
            std::io::Cursor::new(bytes),
            bytes.len() as u64,
            received,
            &mut sink,
        )
        .unwrap();
    } else {
        p.read_stream(format, &mut &bytes[..], received, name, &mut sink)
            .unwrap();
    }
    read
}

fn read(path: &str) -> Read {
    let bytes = std::fs::read(samples().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    read_bytes(path, &bytes)
}

pub(super) fn label<'a>(e: &'a Event, key: &str) -> &'a str {
    e.labels.get(key).map_or("", String::as_str)
}

#[test]
fn every_sample_file_is_read_with_the_exact_counts() {
    // (file, format, records, rejects, kept after the default noise filter)
    let table: &[(&str, Format, usize, usize, usize)] = &[
        (
            "ehr/atna/openatna_msgs_application-login.xml",
            Format::Atna,
            1,
            0,
            1,
        ),
        (
            "ehr/atna/openatna_msgs_application-start.xml",
            Format::Atna,
            1,
            0,
            1,
        ),
        (
            "ehr/atna/openatna_msgs_create-patient-record.xml",
            Format::Atna,
            1,
            0,
            1,
        ),
        ("ehr/atna/openatna_msgs_partid.xml", Format::Atna, 1, 0, 1),
        (
            "ehr/atna/openatna_www_samples_Registry-ITI-18.xml",
            Format::Atna,
            1,
            0,
            1,
        ),
        (
            "ehr/atna/openatna_www_samples_Repository-ITI-43.xml",
            Format::Atna,
            1,
            0,
            1,
        ),
        (
            "ehr/csv/loghub_HealthApp_2k.log_structured.csv",
            Format::EhrCsv,
            2000,
            0,
            2000,
        ),
        (
            "ehr/fhir/gematik_erp_1.5.2_AuditEvent-9361863d.json",
            Format::Json,
            1,
            0,
            1,
        ),
        (
            "ehr/fhir/gematik_erp_2025-01-15_07_response_getAuditEvent_bundle.json",
            Format::Json,
            3,
            0,
            3,
        ),
        ("ehr/fhir/r4_auditevent-example.json", Format::Json, 1, 0, 1),
        (
            "ehr/fhir/r5ballot_AuditEvent-example-disclosure.json",
            Format::Json,
            1,
            0,
            1,
        ),
        (
            "ehr/fhir/r5ballot_AuditEvent-example-login.json",
            Format::Json,
            1,
            0,
            1,
        ),
        (
            "ehr/fhir/r5ballot_AuditEvent-example-rest.json",
            Format::Json,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc3164/loghub_Linux_2k.log",
            Format::Syslog,
            2000,
            0,
            2000,
        ),
        (
            "syslog/rfc3164/rsyslog_fuzz_rfc3164-basic.log",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc3164/rsyslog_snare_sample-windows2025-security.log",
            Format::Syslog,
            101,
            0,
            38,
        ),
        (
            "syslog/rfc3164/telegraf_rfc3164_strict_udp.txt",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc5424/rsyslog_fuzz_rfc5424-basic.log",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc5424/rsyslog_fuzz_rfc5424-escaped-sd.log",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc5424/telegraf_non_transparent_strict_tcp_1st_min_ok_2nd_min_ok.txt",
            Format::Syslog,
            2,
            0,
            2,
        ),
        (
            "syslog/rfc5424/telegraf_octet_counting_strict_tcp_1st_min_ok_2nd_min_ok.txt",
            Format::Syslog,
            2,
            0,
            2,
        ),
        (
            "syslog/rfc5424/telegraf_rfc5424_long_appname.txt",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "syslog/rfc5424/telegraf_rfc5424_strict_udp_average.txt",
            Format::Syslog,
            1,
            0,
            1,
        ),
        (
            "windows/evtx/CA_4624_4625_LogonType2_LogonProc_chrome.evtx",
            Format::Evtx,
            4,
            0,
            3,
        ),
        (
            "windows/evtx/LM_WMIC_4648_rpcss.evtx",
            Format::Evtx,
            5,
            0,
            5,
        ),
        (
            "windows/evtx/LM_WMI_4624_4688_TargetHost.evtx",
            Format::Evtx,
            8,
            0,
            4,
        ),
        (
            "windows/evtx/Runas_4624_4648_Webshell_CreateProcessAsUserA.evtx",
            Format::Evtx,
            3,
            0,
            3,
        ),
        (
            "windows/evtx/Security_short_selected.evtx",
            Format::Evtx,
            7,
            0,
            5,
        ),
        (
            "windows/evtx/Security_with_size_t.evtx",
            Format::Evtx,
            636,
            0,
            160,
        ),
        ("windows/evtx/new-user-security.evtx", Format::Evtx, 4, 0, 4),
        (
            "windows/evtx/remote_task_update_4624_4702_same_logonid.evtx",
            Format::Evtx,
            8,
            0,
            5,
        ),
        (
            "windows/json-nxlog/covenant_copy_smb_CreateRequest_2020-09-22145302.jsonl",
            Format::Json,
            506,
            0,
            87,
        ),
        (
            "windows/json-other/cmd_bitsadmin_download_psh_script_2020-10-2302365189.jsonl",
            Format::Json,
            424,
            0,
            // Sysmon's `NT AUTHORITY\SYSTEM` is the service account SYSTEM, and left out.
            354,
        ),
        (
            "windows/json-winlogbeat/empire_enable_rdp_2019-05-18203650.security-excerpt.jsonl",
            Format::Json,
            273,
            0,
            130,
        ),
        ("windows/xml/msdocs_event-4624.xml", Format::WinXml, 1, 0, 1),
        (
            "windows/xml/winlogbeat_testdata_ec3and4.xml",
            Format::WinXml,
            2,
            0,
            2,
        ),
    ];
    let mut failures = Vec::new();
    for &(file, format, records, rejects, kept) in table {
        let r = read(file);
        let got = (r.format, r.events.len(), r.rejects.len(), r.kept().len());
        if got != (format, records, rejects, kept) {
            failures.push(format!(
                "{file}: got {got:?}, want {:?}; rejects {:?}",
                (format, records, rejects, kept),
                r.rejects.iter().take(3).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And nothing in the folder is missing from the table (except the holiday list, which is
    // not a log: it is read by the rules).
    let mut listed = 0;
    for dir in ["ehr", "syslog", "windows"] {
        for entry in walk(&samples().join(dir)) {
            let rel = entry
                .strip_prefix(samples())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(
                table.iter().any(|t| t.0 == rel),
                "{rel} has no row in the table"
            );
            listed += 1;
        }
    }
    assert_eq!(listed, table.len());
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_holiday_list_is_refused_as_a_log_with_a_reason() {
    let p = parsers();
    let bytes = std::fs::read(samples().join("calendar/syukujitsu.csv")).unwrap();
    assert_eq!(detect(&bytes, "syukujitsu.csv", &p.ehr), Ok(Format::EhrCsv));
    let err = p
        .read_stream(
            Format::EhrCsv,
            &mut &bytes[..],
            Utc::now(),
            "x",
            &mut |_| {},
        )
        .unwrap_err();
    assert!(
        err.0.contains("no time column") && err.0.contains("国民の祝日"),
        "{err}"
    );
}

#[test]
fn evtx_logons_keep_user_type_address_and_session() {
    let r = read("windows/evtx/CA_4624_4625_LogonType2_LogonProc_chrome.evtx");
    let failed = r.find(|e| e.code.as_deref() == Some("4625"));
    assert_eq!(failed.action, "login_failed");
    assert_eq!(failed.outcome, store::Outcome::Failure);
    assert_eq!(failed.user.as_deref(), Some("IEUser"));
    assert_eq!(failed.host.as_deref(), Some("MSEDGEWIN10"));
    assert_eq!(label(failed, "winlog.logon.type"), "2");
    assert_eq!(failed.dataset, "windows.security");
    let system = r.find(|e| e.user.as_deref() == Some("SYSTEM"));
    assert_eq!(
        NoiseFilter::default().reason(system),
        Some("service_account")
    );

    let r = read("windows/evtx/LM_WMI_4624_4688_TargetHost.evtx");
    let admin =
        r.find(|e| e.user.as_deref() == Some("Administrator") && e.code.as_deref() == Some("4624"));
    assert_eq!(admin.source_ip.as_deref(), Some("10.0.2.17"));
    assert_eq!(label(admin, "winlog.logon.type_name"), "Network");
    assert_eq!(admin.host.as_deref(), Some("WIN-77LTAPHIQ1R.example.corp"));

    // The 4702 (task updated) carries the SubjectLogonId of a-jbrown's 4624 TargetLogonId.
    let r = read("windows/evtx/remote_task_update_4624_4702_same_logonid.evtx");
    let logon = r.find(|e| e.user.as_deref() == Some("a-jbrown") && e.action == "login");
    assert_eq!(logon.source_ip.as_deref(), Some("172.16.66.142"));
    let task = r.find(|e| e.code.as_deref() == Some("4702"));
    assert_eq!(
        label(task, "winlog.logon.id"),
        label(logon, "winlog.logon.id")
    );
    assert!(!label(logon, "winlog.logon.id").is_empty());

    let r = read("windows/evtx/new-user-security.evtx");
    let created = r.find(|e| e.code.as_deref() == Some("4720"));
    assert_eq!(created.action, "account.create");
    assert_eq!(label(created, "winlog.event_data.TargetUserName"), "IEUser");
    assert_eq!(created.host.as_deref(), Some("IE8Win7"));
    // Record numbers are followed for gaps: 112, 113, 116, 117 in this file.
    let numbers: Vec<u64> = r
        .events
        .iter()
        .filter_map(|(_, s)| s.as_ref().map(|s| s.1))
        .collect();
    assert_eq!(numbers.len(), 4);
}

#[test]
fn event_xml_in_both_layouts() {
    let r = read("windows/xml/msdocs_event-4624.xml");
    let e = &r.events[0].0;
    assert_eq!(
        e.timestamp.to_rfc3339(),
        "2015-11-12T00:24:35.079785200+00:00"
    );
    assert_eq!(e.user.as_deref(), Some("Administrator"));
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(e.host.as_deref(), Some("WIN-GG82ULGC9GO"));
    assert_eq!(label(e, "winlog.record_id"), "211");
    assert_eq!(label(e, "winlog.logon.type"), "2");
    assert_eq!(label(e, "winlog.event_data.ElevatedToken"), "%%1842");
    let r = read("windows/xml/winlogbeat_testdata_ec3and4.xml");
    let ids: Vec<&str> = r
        .events
        .iter()
        .map(|(e, _)| label(e, "winlog.record_id"))
        .collect();
    assert_eq!(ids, ["1414", "1413"]);
    assert_eq!(r.events[0].0.code.as_deref(), Some("5"));
    assert_eq!(r.events[0].0.dataset, "windows.system");
    assert_eq!(r.events[0].0.host.as_deref(), Some("vagrant"));
}

#[test]
fn json_shapes_of_winlogbeat_nxlog_and_flat_collectors() {
    let r = read("windows/json-nxlog/covenant_copy_smb_CreateRequest_2020-09-22145302.jsonl");
    let logon = r.find(|e| e.user.as_deref() == Some("pgustavo") && e.action == "login");
    assert_eq!(logon.source_ip.as_deref(), Some("172.18.39.5"));
    // EventTime 14:53:30 in the collector's zone, which @timestamp (18:53:32Z) for
    // EventReceivedTime 14:53:32 shows is UTC-4.
    assert_eq!(logon.timestamp.to_rfc3339(), "2020-09-22T18:53:30+00:00");
    assert_eq!(label(logon, "winlog.logon.type"), "3");
    assert_eq!(label(logon, "winlog.record_id"), "933021");
    // Channel is written both "Security" and "security": one dataset.
    assert!(
        r.events
            .iter()
            .all(|(e, _)| e.dataset != "windows.Security")
    );

    let r =
        read("windows/json-winlogbeat/empire_enable_rdp_2019-05-18203650.security-excerpt.jsonl");
    let first = r.find(|e| e.code.as_deref() == Some("4624"));
    assert_eq!(first.user.as_deref(), Some("HFDC01$"));
    assert_eq!(first.host.as_deref(), Some("HFDC01.shire.com"));
    assert_eq!(label(first, "winlog.record_id"), "12282494");
    assert_eq!(
        first.timestamp.to_rfc3339(),
        "2019-05-18T20:37:03.375+00:00"
    );
    assert!(
        r.events
            .iter()
            .any(|(e, _)| e.host.as_deref().is_some_and(|h| h.starts_with("HR001")))
    );

    let r = read("windows/json-other/cmd_bitsadmin_download_psh_script_2020-10-2302365189.jsonl");
    let cleared = r.find(|e| e.code.as_deref() == Some("1102"));
    assert_eq!(cleared.action, "log.cleared");
    assert_eq!(cleared.host.as_deref(), Some("WORKSTATION5"));
    assert_eq!(
        cleared.timestamp.to_rfc3339(),
        "2020-10-23T02:36:40.671+00:00"
    );
}

#[test]
fn snare_lines_become_the_same_windows_fields() {
    let r = read("syslog/rfc3164/rsyslog_snare_sample-windows2025-security.log");
    assert!(
        r.events
            .iter()
            .all(|(e, _)| e.dataset == "windows.security"),
        "every line is Snare"
    );
    let logoff = r.find(|e| e.code.as_deref() == Some("4647"));
    assert_eq!(logoff.action, "logout");
    assert_eq!(logoff.user.as_deref(), Some("al"));
    assert_eq!(label(logoff, "winlog.logon.id"), "0x44d61");
    assert_eq!(logoff.host.as_deref(), Some("WIN-IKCCUTRJI52"));
    assert_eq!(label(logoff, "winlog.record_id"), "24763");
    // "Mon Sep 22 23:06:15 2025" in the sender's zone (Asia/Tokyo here).
    assert_eq!(logoff.timestamp.to_rfc3339(), "2025-09-22T14:06:15+00:00");
    let logon = r.find(|e| e.code.as_deref() == Some("4624"));
    assert_eq!(logon.user.as_deref(), Some("SYSTEM"));
    assert_eq!(label(logon, "winlog.logon.type"), "5");
    let explicit = r.find(|e| e.code.as_deref() == Some("4648"));
    assert_eq!(
        label(explicit, "winlog.event_data.TargetUserName"),
        "UMFD-1"
    );
    assert_eq!(
        label(explicit, "winlog.event_data.TargetServerName"),
        "localhost"
    );
}

#[test]
fn atna_messages() {
    let r = read("ehr/atna/openatna_msgs_application-login.xml");
    let e = &r.events[0].0;
    assert_eq!(e.action, "login_failed");
    assert_eq!(e.outcome, store::Outcome::Failure);
    assert_eq!(e.user.as_deref(), Some("misys"));
    assert_eq!(label(e, "user.full_name"), "misysuser-again");
    assert_eq!(e.source_ip.as_deref(), Some("192.168.1.5"));
    assert_eq!(e.timestamp.to_rfc3339(), "2009-10-22T11:28:57.055+00:00");
    let r = read("ehr/atna/openatna_msgs_partid.xml");
    let e = &r.events[0].0;
    assert_eq!(e.action, "record.export");
    assert_eq!(
        e.user.as_deref(),
        Some("asaip"),
        "the person, not the source system"
    );
    assert_eq!(e.roles, ["Physician"]);
    assert_eq!(
        e.patient.as_deref(),
        Some("221325^^^&1.3.6.1.4.1.21367.2010.1.2.300&ISO")
    );
    assert_eq!(e.source_ip.as_deref(), Some("207.65.232.226"));
    assert_eq!(label(e, "atna.objects"), "EHR_ICA_SS04");
    let r = read("ehr/atna/openatna_msgs_create-patient-record.xml");
    assert_eq!(
        r.events[0].0.patient.as_deref(),
        Some("101^^^IHENA&1.3.6.1.4.1.21367.2010.1.2.300&ISO^PI")
    );
    assert_eq!(r.events[0].0.action, "record.update");
}

#[test]
fn fhir_audit_events_r4_r5_and_bundles() {
    let r = read("ehr/fhir/r5ballot_AuditEvent-example-login.json");
    let e = &r.events[0].0;
    assert_eq!(e.action, "login");
    assert_eq!(e.user.as_deref(), Some("95"));
    assert_eq!(label(e, "user.full_name"), "Grahame Grieve");
    assert_eq!(e.host.as_deref(), Some("Workstation1.ehr.familyclinic.com"));
    assert_eq!(e.timestamp.to_rfc3339(), "2013-06-20T23:41:23+00:00");
    let r = read("ehr/fhir/r4_auditevent-example.json");
    let e = &r.events[0].0;
    assert_eq!(
        e.timestamp.to_rfc3339(),
        "2012-10-25T11:04:27+00:00",
        "+11:00 in the file"
    );
    assert_eq!(e.source_ip.as_deref(), Some("127.0.0.1"));
    assert!(e.message.contains("Grahame"));
    let r = read("ehr/fhir/r5ballot_AuditEvent-example-rest.json");
    assert_eq!(r.events[0].0.action, "record.view");
    assert_eq!(r.events[0].0.patient.as_deref(), Some("example"));
    let r = read("ehr/fhir/gematik_erp_2025-01-15_07_response_getAuditEvent_bundle.json");
    let actions: Vec<&str> = r.events.iter().map(|(e, _)| e.action.as_str()).collect();
    assert_eq!(actions, ["record.update", "record.view", "record.update"]);
    assert!(r.events[0].0.message.contains("Müller"));
    let wrong = read_bytes("p.json", br#"{"resourceType": "Patient", "id": "x"}"#);
    assert_eq!(wrong.events.len(), 0);
    assert!(
        wrong.rejects[0].1.contains("\"Patient\""),
        "{:?}",
        wrong.rejects
    );
}

#[test]
fn ehr_json_lines_and_arrays() {
    let lines = "{\"timestamp\":\"2026-11-24T09:15:02+09:00\",\"user_id\":\"n002\",\"patient_id\":\"P1\",\"action\":\"VIEW_CHART\",\"role\":\"nurse\"}\n\
                 [{\"日時\":\"2026/11/24 10:00\",\"利用者ID\":\"d001\",\"操作\":\"印刷\",\"件数\":\"30\"}, {\"user\":\"x\"}]\n";
    let r = read_bytes("audit.jsonl", lines.as_bytes());
    assert_eq!(r.format, Format::Json);
    assert_eq!(r.events.len(), 2);
    let view = &r.events[0].0;
    assert_eq!(
        (
            view.action.as_str(),
            view.user.as_deref(),
            view.patient.as_deref()
        ),
        ("record.view", Some("n002"), Some("P1"))
    );
    assert_eq!(view.roles, ["nurse"]);
    let print = &r.events[1].0;
    assert_eq!(
        (print.action.as_str(), print.record_count),
        ("record.print", Some(30))
    );
    assert_eq!(print.timestamp.to_rfc3339(), "2026-11-24T01:00:00+00:00");
    assert_eq!(r.rejects.len(), 1);
    assert_eq!(r.rejects[0].0, "line 2 item 2");
    assert!(
        r.rejects[0]
            .1
            .contains("no time: the record needs a field named"),
        "{:?}",
        r.rejects
    );
}

#[test]
fn ehr_csv_export() {
    let r = read("ehr/csv/loghub_HealthApp_2k.log_structured.csv");
    let e = &r.events[0].0;
    // 20171223-22:15:29:606 in the clinic's zone (Asia/Tokyo).
    assert_eq!(e.timestamp.to_rfc3339(), "2017-12-23T13:15:29.606+00:00");
    assert_eq!(label(e, "record.id"), "1");
    assert_eq!(label(e, "csv.Component"), "Step_LSC");
    assert!(
        e.message.contains("onStandStepChanged 3579"),
        "{}",
        e.message
    );
    let numbered = r.events.iter().filter(|(_, s)| s.is_some()).count();
    assert_eq!(numbered, 2000);
}

#[test]
fn syslog_files_framed_either_way() {
    let r = read("syslog/rfc5424/telegraf_octet_counting_strict_tcp_1st_min_ok_2nd_min_ok.txt");
    let severities: Vec<&str> = r
        .events
        .iter()
        .map(|(e, _)| label(e, "syslog.severity"))
        .collect();
    assert_eq!(severities, ["alert", "warning"]);
    let r = read("syslog/rfc3164/loghub_Linux_2k.log");
    assert!(
        r.events
            .iter()
            .all(|(e, _)| e.host.as_deref() == Some("combo"))
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any bytes, read as any format: records or rejects, never a panic.
    #[test]
    fn any_bytes_in_any_format(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
        let p = parsers();
        for format in [Format::Syslog, Format::WinXml, Format::Atna, Format::EhrCsv, Format::Json, Format::Fhir, Format::EhrJsonl] {
            let _ = p.read_stream(format, &mut &bytes[..], Utc::now(), "fuzz", &mut |_| {});
        }
        let _ = p.read_evtx(std::io::Cursor::new(&bytes), bytes.len() as u64, Utc::now(), &mut |_| {});
        let _ = detect(&bytes, "fuzz", &p.ehr);
    }

    /// FHIR-shaped JSON with random values where the mapping looks.
    #[test]
    fn fhir_shapes(action in "[CRUDEX]?", outcome in "[0-9]{0,2}", who in "\\PC{0,20}", recorded in "\\PC{0,30}") {
        let doc = serde_json::json!({
            "resourceType": "Bundle",
            "entry": [{"resource": {
                "resourceType": "AuditEvent", "action": action, "outcome": outcome, "recorded": recorded,
                "agent": [{"who": {"identifier": {"value": who}}, "requestor": true, "network": {"address": who}}],
                "entity": [{"what": {"reference": format!("Patient/{who}")}}]
            }}]
        });
        let p = parsers();
        let text = doc.to_string();
        let _ = p.read_stream(Format::Json, &mut text.as_bytes(), Utc::now(), "fuzz", &mut |_| {});
    }
}
