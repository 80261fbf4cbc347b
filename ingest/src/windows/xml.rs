//! Windows event XML (`<Event xmlns=".../win/2004/08/events/event">`), as `wevtutil qe /f:xml`,
//! Windows Event Forwarding and the EVTX renderer write it.

use chrono::{DateTime, Utc};
use store::Outcome;

use super::{WinRecord, audit_bits};
use crate::error::Unreadable;
use crate::xml::{Node, parse_tree};

/// Reads one `<Event>` element.
pub fn parse_event(xml: &str) -> Result<WinRecord, Unreadable> {
    let root = parse_tree(xml)?;
    if root.name != "Event" {
        return Err(format!("expected an <Event> element, found <{}>", root.name).into());
    }
    let system = root
        .child("System")
        .ok_or("the <Event> has no <System> section")?;
    let event_id = system
        .child_text("EventID")
        .ok_or("the <Event> has no <EventID>")?;
    let event_id = event_id
        .parse::<u32>()
        .map_err(|_| format!("EventID {event_id:?} is not a number"))?;
    let mut record = WinRecord {
        event_id,
        record_id: system
            .child_text("EventRecordID")
            .and_then(|v| v.parse().ok()),
        time: system
            .child("TimeCreated")
            .and_then(|t| t.attr("SystemTime"))
            .and_then(parse_system_time),
        computer: system.child_text("Computer").map(str::to_owned),
        channel: system.child_text("Channel").map(str::to_owned),
        provider: system
            .child("Provider")
            .and_then(|p| p.attr("Name"))
            .map(str::to_owned),
        audit: system.child_text("Keywords").and_then(audit_keywords),
        data: Vec::new(),
        description: None,
    };
    if let Some(sid) = system.child("Security").and_then(|s| s.attr("UserID")) {
        record.push_data("UserSid", sid);
    }
    if let Some(data) = root.child("EventData") {
        push_data_items(&mut record, data);
    }
    if let Some(user_data) = root.child("UserData") {
        // <UserData><LogFileCleared><SubjectUserName>..</..></LogFileCleared></UserData>
        for wrapper in &user_data.children {
            if wrapper.children.is_empty() {
                record.push_data(&wrapper.name, wrapper.text.trim());
            }
            for field in &wrapper.children {
                record.push_data(&field.name, field.text.trim());
            }
        }
    }
    if let Some(message) = root
        .child("RenderingInfo")
        .and_then(|r| r.child_text("Message"))
    {
        record.push_data("Message", message);
    }
    Ok(record)
}

/// `<Data Name="X">v</Data>`, or positional `<Data>v</Data>` as `Data1`, `Data2`, ...
fn push_data_items(record: &mut WinRecord, data: &Node) {
    let mut position = 0;
    for item in &data.children {
        position += 1;
        let value = item.text.trim();
        match item.attr("Name") {
            Some(name) => record.push_data(name, value),
            None if item.name == "Data" => record.push_data(&format!("Data{position}"), value),
            None => record.push_data(&item.name, value),
        }
    }
}

/// `2015-11-12T00:24:35.079785200Z`: RFC 3339 with up to 9 fraction digits (Windows writes 7).
pub fn parse_system_time(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            // Some renderings drop the zone: the value is UTC.
            chrono::NaiveDateTime::parse_from_str(value.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

fn audit_keywords(value: &str) -> Option<Outcome> {
    u64::from_str_radix(value.trim().trim_start_matches("0x"), 16)
        .ok()
        .and_then(audit_bits)
}
