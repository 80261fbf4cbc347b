//! Windows events from every shape they travel in (EVTX, event XML, Winlogbeat and NXLog JSON,
//! Snare's tab-separated syslog) become one [`WinRecord`], and one function turns that into the
//! normalized [`Event`], so a 4624 means the same thing whichever way it arrived.

pub mod json;
pub mod snare;
pub mod xml;

use chrono::{DateTime, Utc};
use store::{Event, Outcome};

/// Most event-data fields kept from one record.
pub const MAX_DATA_FIELDS: usize = 128;

/// A Windows event as its sources describe it, before normalization.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WinRecord {
    pub event_id: u32,
    pub record_id: Option<u64>,
    pub time: Option<DateTime<Utc>>,
    pub computer: Option<String>,
    pub channel: Option<String>,
    pub provider: Option<String>,
    /// `Audit Success` / `Audit Failure` where the source says it (Snare, NXLog, keywords).
    pub audit: Option<Outcome>,
    /// EventData / UserData name-value pairs, in source order; at most [`MAX_DATA_FIELDS`].
    pub data: Vec<(String, String)>,
    /// The rendered description where the source sends it (Snare): kept in the message of
    /// events with no mapping, so what it says stays searchable.
    pub description: Option<String>,
}

impl WinRecord {
    pub fn push_data(&mut self, name: &str, value: &str) {
        if self.data.len() < MAX_DATA_FIELDS {
            self.data.push((name.to_owned(), value.to_owned()));
        }
    }

    /// A data field, `None` when absent, empty or `-`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty() && *v != "-")
    }

    fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// The key gaps are tracked under: records are numbered per computer and channel.
    pub fn sequence_source(&self) -> String {
        format!(
            "{}/{}",
            self.computer.as_deref().unwrap_or("-"),
            self.channel.as_deref().unwrap_or("-")
        )
    }
}

/// The audit bits of `Keywords` (`0x8020000000000000` = audit success).
pub fn audit_bits(bits: u64) -> Option<Outcome> {
    if bits & 0x0020_0000_0000_0000 != 0 {
        Some(Outcome::Success)
    } else if bits & 0x0010_0000_0000_0000 != 0 {
        Some(Outcome::Failure)
    } else {
        None
    }
}

/// What a Windows logon type number means, in the words of the documentation.
pub fn logon_type_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "0" => "System",
        "2" => "Interactive",
        "3" => "Network",
        "4" => "Batch",
        "5" => "Service",
        "7" => "Unlock",
        "8" => "NetworkCleartext",
        "9" => "NewCredentials",
        "10" => "RemoteInteractive",
        "11" => "CachedInteractive",
        "12" => "CachedRemoteInteractive",
        "13" => "CachedUnlock",
        _ => return None,
    })
}

/// Who an event is about, and what it means in the normalized vocabulary.
struct Meaning {
    action: &'static str,
    /// The account the event is attributed to: `Target` or `Subject` fields.
    actor: Actor,
    outcome: Outcome,
}

#[derive(Clone, Copy, PartialEq)]
enum Actor {
    Target,
    Subject,
    /// RDP events carry the user in `User` / `Param1`.
    Rdp,
}

fn meaning(event_id: u32, channel: &str) -> Option<Meaning> {
    let m = |action, actor, outcome| {
        Some(Meaning {
            action,
            actor,
            outcome,
        })
    };
    use Actor::*;
    use Outcome::*;
    let rdp_channel = channel.contains("TerminalServices") || channel.contains("RemoteDesktop");
    match event_id {
        4624 => m("login", Target, Success),
        4625 => m("login_failed", Target, Failure),
        // The domain controller's record of logins: Kerberos TGT and service tickets, failed
        // pre-authentication, NTLM credential validation. A failure code makes them failures.
        4768 | 4769 | 4776 => m("login", Target, Success),
        4771 => m("login_failed", Target, Failure),
        4634 | 4647 => m("logout", Target, Success),
        4648 => m("explicit_credentials", Subject, Success),
        4672 => m("privileged_logon", Subject, Success),
        4663 => m("object.access", Subject, Success),
        4720 => m("account.create", Subject, Success),
        4722 => m("account.enable", Subject, Success),
        4723 => m("account.password_change", Subject, Success),
        4724 => m("account.password_reset", Subject, Success),
        4725 => m("account.disable", Subject, Success),
        4726 => m("account.delete", Subject, Success),
        4740 => m("account.lockout", Target, Failure),
        4728 | 4732 | 4756 => m("group.member_add", Subject, Success),
        4729 | 4733 | 4757 => m("group.member_remove", Subject, Success),
        6416 => m("device.connect", Subject, Success),
        1102 => m("log.cleared", Subject, Success),
        1149 if rdp_channel || channel.is_empty() => m("rdp.authenticated", Rdp, Success),
        21 if rdp_channel => m("login", Rdp, Success),
        23 if rdp_channel => m("logout", Rdp, Success),
        24 if rdp_channel => m("session.disconnect", Rdp, Success),
        25 if rdp_channel => m("session.reconnect", Rdp, Success),
        _ => None,
    }
}

/// Labels kept from the event data, beside the normalized fields.
const MAX_LABELS: usize = 64;
/// Description text kept in the message of an event with no mapping, at most.
const MAX_DESCRIPTION_BYTES: usize = 2048;

/// Why a login failed, from the status codes of 4625 (NTSTATUS), 4776 (NTSTATUS) and
/// 4768/4769/4771 (Kerberos result codes).
pub fn failure_reason(event_id: u32, code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_lowercase();
    let code = code.trim_start_matches("0x");
    let value = u32::from_str_radix(code, 16).ok()?;
    if matches!(event_id, 4768 | 4769 | 4771) {
        return Some(match value {
            0x6 => "unknown_user",
            0x12 => "account_locked_or_disabled",
            0x17 => "password_expired",
            0x18 => "bad_password",
            0x25 => "clock_skew",
            0xc => "policy_restriction",
            0x0 => return None,
            _ => "other",
        });
    }
    Some(match value {
        0xc000_0064 => "unknown_user",
        0xc000_006a => "bad_password",
        0xc000_006d => "bad_user_or_password",
        0xc000_0234 => "account_locked",
        0xc000_0072 => "account_disabled",
        0xc000_0193 => "account_expired",
        0xc000_0071 => "password_expired",
        0xc000_0224 => "password_must_change",
        0xc000_006f => "outside_logon_hours",
        0xc000_0070 => "workstation_restriction",
        0xc000_015b => "logon_type_not_granted",
        0x0 => return None,
        _ => "other",
    })
}

/// Turns a Windows record into the normalized event. `original` is the record as it came.
pub fn normalize(
    record: &WinRecord,
    source_key: &str,
    original: String,
    ingested: DateTime<Utc>,
) -> Event {
    let channel = record.channel.as_deref().unwrap_or("");
    let dataset = if channel.is_empty() {
        "windows".to_owned()
    } else {
        format!("windows.{}", channel.to_ascii_lowercase().replace(' ', "_"))
    };
    let mut event = Event::new(source_key, &dataset, original, ingested);
    if let Some(t) = record.time {
        event.timestamp = t;
    }
    event.code = Some(record.event_id.to_string());
    event.host = record.computer.clone();
    event.process = record.provider.clone();
    let meaning = meaning(record.event_id, channel);
    let (user, domain) = match meaning.as_ref().map(|m| m.actor) {
        Some(Actor::Subject) => (
            record.first(&["SubjectUserName"]),
            record.first(&["SubjectDomainName"]),
        ),
        Some(Actor::Rdp) => (
            record.first(&["User", "Param1"]).map(split_domain_user),
            record.first(&["Param2"]),
        ),
        Some(Actor::Target) => (
            record.first(&["TargetUserName", "SubjectUserName", "AccountName"]),
            record.first(&["TargetDomainName", "SubjectDomainName"]),
        ),
        // Other events: the subject is who acted, when the record names one.
        None => match record.get("SubjectUserName") {
            Some(subject) => (Some(subject), record.get("SubjectDomainName")),
            None => (
                record.first(&["TargetUserName", "AccountName", "User"]),
                record.first(&["TargetDomainName", "Domain"]),
            ),
        },
    };
    // A description that names no account: Snare's user column, or a bare `Account Name`.
    let user = user.or_else(|| record.first(&["AccountName", "SnareUser"]));
    // `CLINIC\n003` and `n003@CLINIC.LOCAL` (4769) name the account `n003` in a domain.
    let (user, domain) = match user {
        Some(u) => match (u.split_once('\\'), u.split_once('@')) {
            (Some((d, name)), _) if !name.is_empty() => (Some(name), Some(domain.unwrap_or(d))),
            (None, Some((name, d))) if !name.is_empty() && !d.is_empty() => {
                (Some(name), Some(domain.unwrap_or(d)))
            }
            _ => (Some(u), domain),
        },
        None => (None, domain),
    };
    event.user = user.map(str::to_owned);
    event.user_domain = domain.map(str::to_owned);
    let status = record.first(&["Status", "SubStatus", "FailureCode"]);
    // A 4625's SubStatus says more than its Status (which is often the generic 0xC000006D).
    let reason = record
        .get("SubStatus")
        .and_then(|c| failure_reason(record.event_id, c))
        .or_else(|| status.and_then(|c| failure_reason(record.event_id, c)));
    let mapped = meaning.is_some();
    match meaning {
        Some(m) => {
            event.action = m.action.to_owned();
            event.outcome = record.audit.unwrap_or(m.outcome);
            if matches!(record.event_id, 4768 | 4769 | 4776) && reason.is_some() {
                event.outcome = Outcome::Failure;
            }
            if m.action == "login" && event.outcome == Outcome::Failure {
                event.action = "login_failed".to_owned();
            }
        }
        None => {
            event.action = format!("windows.{}", record.event_id);
            event.outcome = record.audit.unwrap_or(Outcome::Unknown);
        }
    }
    let ip = record
        .first(&[
            "IpAddress",
            "Address",
            "Param3",
            "SourceAddress",
            "ClientAddress",
        ])
        .map(|ip| ip.trim_start_matches("::ffff:"))
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    event.source_ip = ip.map(str::to_owned);

    let mut labels: Vec<(String, String)> = vec![
        ("winlog.event_id".into(), record.event_id.to_string()),
        ("winlog.channel".into(), channel.to_owned()),
    ];
    if let Some(id) = record.record_id {
        labels.push(("winlog.record_id".into(), id.to_string()));
    }
    if let Some(r) = reason.filter(|_| event.outcome == Outcome::Failure) {
        labels.push(("event.reason".into(), r.to_owned()));
    }
    let logon_type = record.get("LogonType");
    if let Some(t) = logon_type {
        labels.push(("winlog.logon.type".into(), t.to_owned()));
        if let Some(name) = logon_type_name(t) {
            labels.push(("winlog.logon.type_name".into(), name.to_owned()));
        }
    }
    let logon_id = match event.action.as_str() {
        "privileged_logon" | "explicit_credentials" | "object.access" => {
            record.get("SubjectLogonId")
        }
        _ => record.first(&["TargetLogonId", "SessionID", "SubjectLogonId"]),
    };
    if let Some(id) = logon_id {
        labels.push(("winlog.logon.id".into(), id.to_ascii_lowercase()));
    }
    for (name, value) in &record.data {
        if labels.len() >= MAX_LABELS {
            event.tags.push("labels_truncated".to_owned());
            break;
        }
        let value = value.trim();
        if !value.is_empty() && value != "-" {
            labels.push((format!("winlog.event_data.{name}"), value.to_owned()));
        }
    }
    event.labels.extend(labels);
    event.message = summary(record, &event, domain, logon_type);
    if !mapped && let Some(text) = record.description.as_deref() {
        let mut end = text.len().min(MAX_DESCRIPTION_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        event.message.push_str(": ");
        event.message.push_str(text[..end].trim());
    }
    event
}

/// `User` in RDP events is `DOMAIN\user`; the user part is the account.
fn split_domain_user(v: &str) -> &str {
    v.rsplit('\\').next().unwrap_or(v)
}

/// One line a person can read, with every searchable name in it.
fn summary(record: &WinRecord, event: &Event, domain: Option<&str>, logon: Option<&str>) -> String {
    use std::fmt::Write;
    let mut s = format!("{} {}", record.event_id, event.action);
    if let Some(u) = &event.user {
        match domain {
            Some(d) => write!(s, " user {d}\\{u}").ok(),
            None => write!(s, " user {u}").ok(),
        };
    }
    if let (Some(target), true) = (
        record.get("TargetUserName"),
        event.user.as_deref() != record.get("TargetUserName"),
    ) {
        write!(s, " target {target}").ok();
    }
    if let Some(t) = logon {
        write!(s, " logon type {t}").ok();
        if let Some(name) = logon_type_name(t) {
            write!(s, " ({name})").ok();
        }
    }
    if let Some(ip) = &event.source_ip {
        write!(s, " from {ip}").ok();
    }
    if let Some(w) = record.first(&["WorkstationName", "Workstation"]) {
        write!(s, " workstation {w}").ok();
    }
    if let Some(r) = event.labels.get("event.reason") {
        write!(s, " reason {r}").ok();
    }
    for key in [
        "ServiceName",
        "MemberName",
        "TargetServerName",
        "ObjectName",
        "ProcessName",
        "NewProcessName",
        "DeviceDescription",
    ] {
        if let Some(v) = record.get(key) {
            write!(s, " {key} {v}").ok();
        }
    }
    if let Some(h) = &record.computer {
        write!(s, " on {h}").ok();
    }
    s
}

/// Which accounts are noise for an access trail: machine accounts (`NAME$`) and the built-in
/// service identities. Matching events are counted, not stored (`[windows]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseFilter {
    pub machine_accounts: bool,
    /// Exact names, or a prefix ending in `*`; compared without case.
    pub users: Vec<String>,
    /// Event ids always kept, whoever they are about.
    pub always_keep: Vec<u32>,
}

impl Default for NoiseFilter {
    fn default() -> Self {
        NoiseFilter {
            machine_accounts: true,
            users: [
                "SYSTEM",
                "LOCAL SERVICE",
                "NETWORK SERVICE",
                "DWM-*",
                "UMFD-*",
            ]
            .map(String::from)
            .to_vec(),
            always_keep: vec![
                1102, 4720, 4722, 4723, 4724, 4725, 4726, 4728, 4729, 4732, 4733, 4740, 4756, 4757,
            ],
        }
    }
}

impl NoiseFilter {
    pub fn none() -> NoiseFilter {
        NoiseFilter {
            machine_accounts: false,
            users: Vec::new(),
            always_keep: Vec::new(),
        }
    }

    /// Why this event is noise (`machine_account`, `service_account`), or `None` to keep it.
    pub fn reason(&self, event: &Event) -> Option<&'static str> {
        if !event.dataset.starts_with("windows") {
            return None;
        }
        let id = event.code.as_deref().and_then(|c| c.parse::<u32>().ok());
        if id.is_some_and(|id| self.always_keep.contains(&id)) {
            return None;
        }
        let user = event.user.as_deref()?;
        if self.machine_accounts && user.ends_with('$') {
            return Some("machine_account");
        }
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => user
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix)),
            None => user.eq_ignore_ascii_case(pattern),
        };
        self.users.iter().any(matches).then_some("service_account")
    }
}

#[cfg(test)]
mod tests;
