//! RFC 3164 and RFC 5424 messages into [`Event`]s. A line that parses as neither is kept whole
//! with the tag `syslog_parse_failure`: nothing is dropped.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use regex::Regex;
use store::{Event, Outcome};
use syslog_loose::{IncompleteDate, Message, Protocol, Variant};

use crate::config::{SourceRule, SyslogFormat};
use crate::ehr::atna;
use crate::normalize::{KeyValues, apply_key_values};
use crate::windows::{self, snare};

/// Most labels kept from one message (structured-data params plus syslog header fields).
pub const MAX_LABELS: usize = 64;

/// Where a message came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `udp`, `tcp`, `file`, ...
    pub transport: &'static str,
    /// The sender's IP address (no port: ports change per connection).
    pub peer_ip: Option<String>,
    /// `udp://10.0.0.5:514`
    pub address: Option<String>,
}

impl Origin {
    /// The key event ids are derived from: the same bytes from the same sender are one event.
    fn source_key(&self) -> String {
        store::source_key::syslog(self.peer_ip.as_deref(), self.transport)
    }
}

/// Parses syslog lines: RFC 3164 and 5424, with Snare (`MSWinEventLog`) and IHE ATNA payloads
/// recognised, each sender with its own time zone and format when `sources` names it.
#[derive(Debug, Clone)]
pub struct SyslogParser {
    /// Zone for RFC 3164 timestamps, which carry none, from senders not in `sources`.
    pub timezone: Tz,
    pub sources: Vec<SourceRule>,
}

pub const PARSE_FAILURE_TAG: &str = "syslog_parse_failure";
pub const SNARE_FAILURE_TAG: &str = "snare_parse_failure";
pub const ATNA_FAILURE_TAG: &str = "atna_parse_failure";
/// A message that was not valid UTF-8: `event.original` holds it with U+FFFD for the bad
/// bytes, and its id is derived from the bytes as received, so two messages that differ only
/// there stay two events.
pub const INVALID_UTF8_TAG: &str = "invalid_utf8";

impl SyslogParser {
    pub fn new(timezone: Tz) -> SyslogParser {
        SyslogParser {
            timezone,
            sources: Vec::new(),
        }
    }

    pub fn with_sources(timezone: Tz, sources: Vec<SourceRule>) -> SyslogParser {
        SyslogParser { timezone, sources }
    }

    fn rule_for_address(&self, ip: Option<&str>) -> Option<&SourceRule> {
        let ip: std::net::IpAddr = ip?.parse().ok()?;
        self.sources
            .iter()
            .find(|r| r.addresses.iter().any(|c| c.contains(ip)))
    }

    fn rule_for_host(&self, host: Option<&str>) -> Option<&SourceRule> {
        let host = host?;
        self.sources
            .iter()
            .find(|r| r.hostnames.iter().any(|g| g.matches(host)))
    }

    /// Turns one frame into an event. Never fails: input that is not syslog is kept as text.
    pub fn parse(&self, raw: &[u8], origin: &Origin, received: DateTime<Utc>) -> Event {
        let decoded = String::from_utf8_lossy(raw);
        let text = decoded.strip_prefix('\u{feff}').unwrap_or(&decoded);
        let mut rule = self.rule_for_address(origin.peer_ip.as_deref());
        let zone = rule.map_or(self.timezone, |r| r.timezone);
        let mut event = self.parse_in(text, origin, received, zone);
        if rule.is_none() {
            rule = self.rule_for_host(event.host.as_deref());
            if let Some(r) = rule
                && r.timezone != zone
            {
                event = self.parse_in(text, origin, received, r.timezone);
            }
        }
        let format = rule.map_or(SyslogFormat::Auto, |r| r.format);
        let zone = rule.map_or(self.timezone, |r| r.timezone);
        let snare = match format {
            SyslogFormat::Snare => true,
            SyslogFormat::Auto => {
                event.message.contains(snare::TAG) || text.contains("MSWinEventLog\t")
            }
            _ => false,
        };
        let atna = match format {
            SyslogFormat::Atna => true,
            SyslogFormat::Auto => event.message.contains("<AuditMessage"),
            _ => false,
        };
        if snare {
            event = self.snare(event, text, origin, received, zone);
        } else if atna {
            event = self.atna(event, origin, received, zone);
        }
        if let Some(r) = rule {
            event
                .labels
                .insert("log.source.name".into(), r.name.clone());
        }
        if let std::borrow::Cow::Owned(_) = decoded {
            let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
            event.id = store::EventId::derive(&origin.source_key(), raw);
            event.tags.push(INVALID_UTF8_TAG.to_owned());
        }
        event
    }

    fn snare(
        &self,
        syslog: Event,
        text: &str,
        origin: &Origin,
        received: DateTime<Utc>,
        zone: Tz,
    ) -> Event {
        // Snare's own time has no zone. When an RFC 5424 header gives the time with one, the
        // payload's zone is the whole-hour difference between the two (NXLog in UTC, a PC on
        // Japan time behind a UTC relay); without one it is the source's configured zone.
        let header = rfc5424_time(text, &syslog);
        let resolve = |local: NaiveDateTime| -> Option<DateTime<Utc>> {
            if let Some(header) = header {
                let diff = local - header.naive_utc();
                let hours = (diff.num_minutes() as f64 / 60.0).round() as i64;
                if hours.abs() <= 14 && (diff - Duration::hours(hours)).num_minutes().abs() <= 15 {
                    return Some(Utc.from_utc_datetime(&(local - Duration::hours(hours))));
                }
            }
            windows::snare::in_zone(&zone)(local)
        };
        match windows::snare::parse(text, &resolve) {
            Ok(record) => {
                let mut event =
                    windows::normalize(&record, &origin.source_key(), syslog.original, received);
                event.log_source = syslog.log_source;
                if event.host.is_none() {
                    event.host = syslog.host;
                }
                for (k, v) in syslog.labels {
                    if k.starts_with("syslog.") {
                        event.labels.insert(k, v);
                    }
                }
                event
            }
            Err(_) => {
                let mut event = syslog;
                event.tags.push(SNARE_FAILURE_TAG.to_owned());
                event
            }
        }
    }

    fn atna(&self, mut syslog: Event, origin: &Origin, received: DateTime<Utc>, zone: Tz) -> Event {
        let Some(start) = syslog.message.find("<AuditMessage") else {
            syslog.tags.push(ATNA_FAILURE_TAG.to_owned());
            return syslog;
        };
        match atna::event(
            &syslog.message[start..],
            &origin.source_key(),
            received,
            zone,
        ) {
            Ok(mut event) => {
                event.original = syslog.original;
                event.id = syslog.id;
                event.log_source = syslog.log_source;
                if event.host.is_none() {
                    event.host = syslog.host;
                }
                for (k, v) in syslog.labels {
                    event.labels.entry(k).or_insert(v);
                }
                event
            }
            Err(_) => {
                syslog.tags.push(ATNA_FAILURE_TAG.to_owned());
                syslog
            }
        }
    }

    fn parse_in(&self, text: &str, origin: &Origin, received: DateTime<Utc>, zone: Tz) -> Event {
        let mut event = Event::new(&origin.source_key(), "syslog", text.to_owned(), received);
        event.log_source = origin.address.clone();
        let offset = zone.offset_from_utc_datetime(&received.naive_utc()).fix();
        let local_now = received.with_timezone(&offset);
        let year = |date: IncompleteDate| infer_year(date.0, local_now.year(), local_now.month());
        // syslog_loose's "either" tries 5424 first; a leading digit run after the PRI decides.
        match syslog_loose::parse_message_with_year_exact_tz(
            text,
            year,
            Some(offset),
            Variant::Either,
        ) {
            Ok(message) if plausible(&message) => fill(&mut event, &message),
            _ => {
                event.message = text.trim().to_owned();
                event.tags.push(PARSE_FAILURE_TAG.to_owned());
                event.host = origin.peer_ip.clone();
            }
        }
        if event.host.is_none() {
            event.host = origin.peer_ip.clone();
        }
        event
    }
}

/// An RFC 5424 header's time (`<14>1 2026-11-24T07:01:00Z ...`), if the line is RFC 5424 and
/// its time is given.
fn rfc5424_time(text: &str, event: &Event) -> Option<DateTime<FixedOffset>> {
    if !event.labels.contains_key("syslog.version") {
        return None;
    }
    let stamp = text.split_ascii_whitespace().nth(1)?;
    DateTime::parse_from_rfc3339(stamp).ok()
}

/// syslog_loose accepts almost anything as RFC 3164 (no PRI, no timestamp); without a PRI or a
/// timestamp a line is not syslog but free text.
fn plausible(message: &Message<&str>) -> bool {
    message.facility.is_some() || message.timestamp.is_some()
}

/// RFC 3164 has no year: take the one that puts the date nearest to now, so a December line
/// read in January is last year's and a January line read on 31 December is next year's.
fn infer_year(month: u32, year_now: i32, month_now: u32) -> i32 {
    if month > month_now + 1 {
        year_now - 1
    } else if month_now == 12 && month == 1 {
        year_now + 1
    } else {
        year_now
    }
}

fn fill(event: &mut Event, message: &Message<&str>) {
    if let Some(t) = message.timestamp {
        event.timestamp = t.with_timezone(&Utc);
    }
    event.host = message.hostname.map(str::to_owned);
    event.process = message.appname.map(str::to_owned);
    event.message = message.msg.trim().to_owned();
    let mut labels = Vec::new();
    if let Some(f) = message.facility {
        labels.push(("syslog.facility".to_owned(), f.as_str().to_owned()));
    }
    if let Some(s) = message.severity {
        labels.push(("syslog.severity".to_owned(), s.as_str().to_owned()));
    }
    if let Some(p) = &message.procid {
        labels.push(("syslog.procid".to_owned(), p.to_string()));
    }
    if let Some(m) = message.msgid {
        labels.push(("syslog.msgid".to_owned(), m.to_owned()));
    }
    if message.protocol == Protocol::RFC5424(1) {
        labels.push(("syslog.version".to_owned(), "1".to_owned()));
    }
    let mut pairs = KeyValues::default();
    for element in &message.structured_data {
        for (name, value) in element.params() {
            pairs.push(name, &value);
            labels.push((format!("{}.{name}", element.id), value));
        }
    }
    pairs.scan_text(&event.message);
    if labels.len() > MAX_LABELS {
        labels.truncate(MAX_LABELS);
        event.tags.push("labels_truncated".to_owned());
    }
    event.labels.extend(labels);
    apply_key_values(event, &pairs);
    recognise_auth_lines(event);
}

static SSHD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(Accepted|Failed) (?:password|publickey|keyboard-interactive/pam) for (?:invalid user )?(\S+) from (\S+)")
        .expect("valid regex")
});
static PAM_FAILURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"authentication failure;.*?rhost=(\S*)(?:\s+user=(\S+))?").expect("valid regex")
});

/// Logins from Linux servers and appliances (sshd, PAM), the commonest access events in syslog.
fn recognise_auth_lines(event: &mut Event) {
    if event.action != "unknown" {
        return;
    }
    let process = event.process.as_deref().unwrap_or("");
    if process.starts_with("sshd")
        && let Some(c) = SSHD.captures(&event.message)
    {
        let ok = &c[1] == "Accepted";
        event.action = if ok { "login" } else { "login_failed" }.to_owned();
        event.outcome = if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        event.user = Some(c[2].to_owned());
        event.source_ip = Some(c[3].to_owned());
        return;
    }
    if let Some(c) = PAM_FAILURE.captures(&event.message) {
        event.action = "login_failed".to_owned();
        event.outcome = Outcome::Failure;
        if !c[1].is_empty() {
            event.source_ip = Some(c[1].to_owned());
        }
        if let Some(user) = c.get(2) {
            event.user = Some(user.as_str().to_owned());
        }
    }
}

/// Used by tests and the bench: a fixed offset for a zone at a moment.
pub fn offset_at(tz: Tz, at: DateTime<Utc>) -> FixedOffset {
    tz.offset_from_utc_datetime(&at.naive_utc()).fix()
}

#[cfg(test)]
mod tests;
