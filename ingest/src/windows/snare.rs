//! Windows events forwarded by Snare (and rsyslog/NXLog in Snare mode) as tab-separated text
//! after the tag `MSWinEventLog`:
//!
//! `MSWinEventLog␉1␉Security␉34769␉Mon Sep 22 23:08:01 2025␉4624␉Microsoft-Windows-Security-Auditing␉N/A␉N/A␉Success Audit␉WIN-IKCCUTRJI52␉Logon␉␉An account was successfully logged on. ...␉23127`
//!
//! Snare sends the rendered message, not the event data, so the usual fields (`TargetUserName`,
//! `LogonType`, `IpAddress`, ...) are read back from the message's `Label: value` text.

use std::sync::LazyLock;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use store::Outcome;

use super::WinRecord;
use crate::error::Unreadable;

pub const TAG: &str = "MSWinEventLog";

/// Local times read in `zone`.
pub fn in_zone<Z: TimeZone>(zone: &Z) -> impl Fn(NaiveDateTime) -> Option<DateTime<Utc>> + '_ {
    move |t| {
        zone.from_local_datetime(&t)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Reads the part of a syslog message from `MSWinEventLog` on. Snare writes local time without
/// a zone: `resolve` says when such a time was (see [`in_zone`]).
pub fn parse(
    text: &str,
    resolve: &dyn Fn(NaiveDateTime) -> Option<DateTime<Utc>>,
) -> Result<WinRecord, Unreadable> {
    // The record starts at the tag followed by a tab: an APP-NAME of `MSWinEventLog` before
    // it is the syslog header's.
    let start = text
        .find("MSWinEventLog\t")
        .or_else(|| text.find(TAG))
        .ok_or("no MSWinEventLog marker")?;
    let fields: Vec<&str> = text[start + TAG.len()..]
        .trim_start_matches(['\t', ' '])
        .split('\t')
        .collect();
    if fields.len() < 13 {
        return Err(format!(
            "a Snare record has at least 14 tab-separated fields; this one has {}",
            fields.len() + 1
        )
        .into());
    }
    let field = |i: usize| {
        fields
            .get(i)
            .map(|f| f.trim())
            .filter(|f| !f.is_empty() && *f != "N/A")
    };
    let event_id = field(4)
        .and_then(|f| f.parse::<u32>().ok())
        .ok_or_else(|| format!("Snare event id {:?} is not a number", fields[4]))?;
    let time = field(3)
        .and_then(|t| NaiveDateTime::parse_from_str(t, "%a %b %e %H:%M:%S %Y").ok())
        .and_then(resolve);
    let audit = match field(8) {
        Some(a) if a.contains("Success") => Some(Outcome::Success),
        Some(a) if a.contains("Failure") => Some(Outcome::Failure),
        _ => None,
    };
    let mut record = WinRecord {
        event_id,
        record_id: field(2).and_then(|n| n.parse().ok()),
        time,
        computer: field(9).map(str::to_owned),
        channel: field(1).map(str::to_owned),
        provider: field(5).map(str::to_owned),
        audit,
        data: Vec::new(),
        description: None,
    };
    if let Some(user) = field(6) {
        record.push_data("SnareUser", user);
    }
    if let Some(category) = field(10) {
        record.push_data("Category", category);
    }
    if let Some(message) = field(12) {
        read_message(&mut record, message);
        record.description = Some(message.to_owned());
    }
    Ok(record)
}

/// Section headings of the rendered message and the event-data prefix their accounts map to.
const SECTIONS: &[(&str, &str)] = &[
    ("Subject", "Subject"),
    ("New Logon", "Target"),
    ("Account For Which Logon Failed", "Target"),
    ("Target Account", "Target"),
    ("Account Whose Credentials Were Used", "Target"),
    ("Account That Was Locked Out", "Target"),
    ("New Account", "Target"),
    ("Account Information", "Target"),
    ("Service Information", ""),
    ("Additional Information", ""),
    ("Logon Information", ""),
    ("Network Information", ""),
    ("Process Information", ""),
    ("Detailed Authentication Information", ""),
    ("Target Server", ""),
    ("Failure Information", ""),
    ("Object", ""),
];

/// Field labels and the event-data name they are; `*` takes the section's prefix.
const LABELS: &[(&str, &str)] = &[
    ("Security ID", "*UserSid"),
    ("Account Name", "*UserName"),
    ("Account Domain", "*DomainName"),
    ("Logon ID", "*LogonId"),
    ("Logon Type", "LogonType"),
    ("Workstation Name", "WorkstationName"),
    ("Source Network Address", "IpAddress"),
    ("Network Address", "IpAddress"),
    ("Source Port", "IpPort"),
    ("Port", "IpPort"),
    ("Process Name", "ProcessName"),
    ("New Process Name", "NewProcessName"),
    ("Logon Process", "LogonProcessName"),
    ("Authentication Package", "AuthenticationPackageName"),
    ("Target Server Name", "TargetServerName"),
    ("Object Name", "ObjectName"),
    ("Failure Reason", "FailureReason"),
    ("Status", "Status"),
    ("Sub Status", "SubStatus"),
    ("Caller Computer Name", "WorkstationName"),
    // Kerberos (4768, 4769, 4771) and NTLM (4776) on the domain controller.
    ("Supplied Realm Name", "TargetDomainName"),
    ("Client Address", "IpAddress"),
    ("Client Port", "IpPort"),
    ("Service Name", "ServiceName"),
    ("Result Code", "Status"),
    ("Failure Code", "Status"),
    ("Error Code", "Status"),
    ("Logon Account", "TargetUserName"),
    ("Source Workstation", "Workstation"),
];

static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    let mut names: Vec<&str> = SECTIONS
        .iter()
        .map(|(s, _)| *s)
        .chain(LABELS.iter().map(|(l, _)| *l))
        .collect();
    // Longest first, so `Network Account Name` is not read as `Account Name`.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let alternatives: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
    Regex::new(&format!(
        r"(?:^|\s)((?:Network |Linked |Target Outbound )?(?:{})):",
        alternatives.join("|")
    ))
    .expect("valid regex")
});

/// Any `Label:` inside a value: the value ends there (`C:\\Windows` is not one: no space after).
static ANY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\s[A-Z][A-Za-z]*(?: [A-Za-z][A-Za-z]*){0,4}:(?:\s|$)").expect("valid regex")
});

fn read_message(record: &mut WinRecord, message: &str) {
    let found: Vec<(usize, usize, &str)> = LABEL
        .captures_iter(message)
        .filter_map(|c| {
            let whole = c.get(0)?;
            let label = c.get(1)?;
            Some((label.start(), whole.end(), label.as_str()))
        })
        .collect();
    let mut prefix = "";
    for (i, &(_, value_start, label)) in found.iter().enumerate() {
        let value_end = found.get(i + 1).map_or(message.len(), |next| next.0);
        let value = message[value_start..value_end].trim();
        if let Some((_, p)) = SECTIONS.iter().find(|(s, _)| *s == label) {
            prefix = p;
            continue;
        }
        let Some((_, name)) = LABELS.iter().find(|(l, _)| *l == label) else {
            continue; // `Network Account Name` and the like: not wanted.
        };
        let name = match name.strip_prefix('*') {
            Some(rest) if !prefix.is_empty() => format!("{prefix}{rest}"),
            // Outside any section (`Account Name: x` on its own): the account the event names.
            Some("UserName") => "AccountName".to_owned(),
            Some("DomainName") => "Domain".to_owned(),
            Some(_) => continue,
            None => (*name).to_owned(),
        };
        // The value runs to the next label; unknown labels and explanations follow after a
        // gap of three or more spaces (where the rendered text had a line break).
        let value = value.split("   ").next().unwrap_or("").trim();
        // Or to a label not listed above (`Logon GUID:`, `Service ID:`, `User ID:`): a
        // capitalised word or few and a colon, then a space.
        let value = match ANY_LABEL.find(value) {
            Some(m) => value[..m.start()].trim(),
            None => value,
        };
        // Codes, addresses and numbers are one word; what follows is another label's text.
        let value = if matches!(
            name.as_str(),
            "Status" | "SubStatus" | "IpAddress" | "IpPort" | "LogonType"
        ) {
            value.split_whitespace().next().unwrap_or("")
        } else {
            value
        };
        if record.get(&name).is_none() && !value.is_empty() && value != "-" {
            record.push_data(&name, value);
        }
    }
}
