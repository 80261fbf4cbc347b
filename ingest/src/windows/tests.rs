//! Normalization of the event ids the samples do not cover (RDP, logoff, object access, USB),
//! the noise filter, and parsers fed garbage.

use chrono::Utc;
use proptest::prelude::*;

use super::*;

fn event_xml(id: u32, channel: &str, data: &str) -> String {
    format!(
        r#"<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><Provider Name="P"/><EventID>{id}</EventID><TimeCreated SystemTime="2026-11-24T13:40:00.000Z"/><EventRecordID>77</EventRecordID><Channel>{channel}</Channel><Computer>MAIN-PC03.clinic.local</Computer></System>{data}</Event>"#
    )
}

fn normalized(id: u32, channel: &str, data: &str) -> Event {
    let xml = event_xml(id, channel, data);
    let record = xml::parse_event(&xml).unwrap();
    normalize(&record, "windows", xml, Utc::now())
}

#[test]
fn rdp_events() {
    let rcm = "Microsoft-Windows-TerminalServices-RemoteConnectionManager/Operational";
    let e = normalized(
        1149,
        rcm,
        "<UserData><EventXML><Param1>n002</Param1><Param2>CLINIC</Param2><Param3>10.20.0.7</Param3></EventXML></UserData>",
    );
    assert_eq!(e.action, "rdp.authenticated");
    assert_eq!(e.user.as_deref(), Some("n002"));
    assert_eq!(e.source_ip.as_deref(), Some("10.20.0.7"));
    assert_eq!(e.user_domain.as_deref(), Some("CLINIC"));
    let lsm = "Microsoft-Windows-TerminalServices-LocalSessionManager/Operational";
    for (id, action) in [
        (21, "login"),
        (24, "session.disconnect"),
        (25, "session.reconnect"),
        (23, "logout"),
    ] {
        let e = normalized(
            id,
            lsm,
            "<UserData><EventXML><User>CLINIC\\n002</User><SessionID>3</SessionID><Address>10.20.0.7</Address></EventXML></UserData>",
        );
        assert_eq!(e.action, action, "{id}");
        assert_eq!(e.user.as_deref(), Some("n002"), "{id}");
        assert_eq!(e.source_ip.as_deref(), Some("10.20.0.7"));
        assert_eq!(e.labels["winlog.logon.id"], "3");
    }
    // Event 21 in another channel is something else entirely.
    assert_eq!(normalized(21, "System", "").action, "windows.21");
}

#[test]
fn logoff_object_access_usb_and_account_events() {
    let e = normalized(
        4634,
        "Security",
        r#"<EventData><Data Name="TargetUserName">n002</Data><Data Name="TargetDomainName">CLINIC</Data><Data Name="TargetLogonId">0x1A2B</Data><Data Name="LogonType">2</Data></EventData>"#,
    );
    assert_eq!(
        (e.action.as_str(), e.user.as_deref()),
        ("logout", Some("n002"))
    );
    assert_eq!(
        e.labels["winlog.logon.id"], "0x1a2b",
        "logon ids compare without case"
    );
    let e = normalized(
        4663,
        "Security",
        r#"<EventData><Data Name="SubjectUserName">r001</Data><Data Name="SubjectLogonId">0x99</Data><Data Name="ObjectName">D:\exports\patients.csv</Data></EventData>"#,
    );
    assert_eq!(e.action, "object.access");
    assert_eq!(e.user.as_deref(), Some("r001"));
    assert!(e.message.contains(r"D:\exports\patients.csv"));
    let e = normalized(
        6416,
        "Security",
        r#"<EventData><Data Name="SubjectUserName">MAIN-PC03$</Data><Data Name="DeviceDescription">USB Mass Storage Device</Data></EventData>"#,
    );
    assert_eq!(e.action, "device.connect");
    assert!(e.message.contains("USB Mass Storage Device"));
    let e = normalized(
        4740,
        "Security",
        r#"<EventData><Data Name="TargetUserName">n003</Data><Data Name="SubjectUserName">DC01$</Data></EventData>"#,
    );
    assert_eq!(
        (e.action.as_str(), e.user.as_deref()),
        ("account.lockout", Some("n003"))
    );
    for (id, action) in [
        (4722, "account.enable"),
        (4725, "account.disable"),
        (4726, "account.delete"),
        (4724, "account.password_reset"),
    ] {
        let e = normalized(
            id,
            "Security",
            r#"<EventData><Data Name="TargetUserName">n009</Data><Data Name="SubjectUserName">admin</Data></EventData>"#,
        );
        assert_eq!(e.action, action);
        assert_eq!(e.user.as_deref(), Some("admin"), "the administrator acted");
        assert!(e.message.contains("target n009"));
    }
    let e = normalized(
        4688,
        "Security",
        r#"<EventData><Data Name="SubjectUserName">n002</Data><Data Name="NewProcessName">C:\x.exe</Data></EventData>"#,
    );
    assert_eq!(e.action, "windows.4688");
    assert_eq!(e.labels["winlog.event_data.NewProcessName"], r"C:\x.exe");
}

#[test]
fn the_noise_filter_is_configurable() {
    let mut e = normalized(
        4624,
        "Security",
        r#"<EventData><Data Name="TargetUserName">MAIN-PC03$</Data></EventData>"#,
    );
    let filter = NoiseFilter::default();
    assert_eq!(filter.reason(&e), Some("machine_account"));
    assert_eq!(NoiseFilter::none().reason(&e), None);
    e.user = Some("DWM-3".into());
    assert_eq!(filter.reason(&e), Some("service_account"));
    e.user = Some("dwm".into());
    assert_eq!(filter.reason(&e), None);
    // Account management is kept whoever did it.
    let e = normalized(
        4720,
        "Security",
        r#"<EventData><Data Name="SubjectUserName">MAIN-PC03$</Data></EventData>"#,
    );
    assert_eq!(filter.reason(&e), None);
    // Not a Windows event: never filtered here.
    let mut e = Event::new("x", "ehr.audit", String::new(), Utc::now());
    e.user = Some("SYSTEM".into());
    assert_eq!(filter.reason(&e), None);
}

#[test]
fn snare_record_with_too_few_fields_is_an_error() {
    let err = snare::parse(
        "MSWinEventLog\t1\tSecurity\t5",
        &snare::in_zone(&chrono_tz::UTC),
    )
    .unwrap_err();
    assert!(err.0.contains("14 tab-separated fields"), "{err}");
}

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,400}") {
        let _ = snare::parse(&format!("MSWinEventLog\t{s}"), &snare::in_zone(&chrono_tz::UTC));
        let _ = xml::parse_event(&s);
        let _ = xml::parse_event(&event_xml(1, "Security", &s));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
            let _ = json::parse(&v, chrono_tz::UTC);
        }
    }

    #[test]
    fn snare_fields_in_any_order_never_panic(fields in proptest::collection::vec("[^\t]{0,30}", 0..20)) {
        let line = format!("<14>Sep 22 23:08:01 H MSWinEventLog\t{}", fields.join("\t"));
        if let Ok(r) = snare::parse(&line, &snare::in_zone(&chrono_tz::UTC)) {
            let _ = normalize(&r, "x", line.clone(), Utc::now());
        }
    }
}
