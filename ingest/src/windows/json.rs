//! Windows events as JSON lines: Winlogbeat 6 (`event_id`, `event_data`), Winlogbeat 7+/ECS
//! (`winlog.*`), NXLog `im_msvistalog` (flattened EventData beside `EventID`, `Hostname`,
//! `EventTime`) and the similar flat shape of other collectors (`TimeCreated`).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use store::Outcome;

use super::xml::parse_system_time;
use super::{WinRecord, audit_bits};
use crate::error::Unreadable;

/// Is this JSON object a Windows event in one of the shapes above?
pub fn is_windows(v: &Value) -> bool {
    v.get("winlog").is_some_and(Value::is_object)
        || (v.get("event_id").is_some() && v.get("event_data").is_some())
        || (v.get("EventID").is_some()
            && ["Hostname", "Channel", "SourceName", "computer_name"]
                .iter()
                .any(|k| v.get(k).is_some()))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_of(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(text).filter(|s| !s.is_empty())
}

fn number(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    match obj.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn utc(v: Option<String>) -> Option<DateTime<Utc>> {
    v.as_deref().and_then(parse_system_time)
}

fn audit_words(v: Option<&Value>) -> Option<Outcome> {
    let words: Vec<String> = match v? {
        Value::Array(a) => a.iter().filter_map(text).collect(),
        other => vec![text(other)?],
    };
    words.iter().find_map(|w| {
        let w = w.to_ascii_lowercase().replace(['_', ' '], "");
        if w.contains("auditsuccess") || w == "success" {
            Some(Outcome::Success)
        } else if w.contains("auditfailure") || w == "failure" {
            Some(Outcome::Failure)
        } else {
            None
        }
    })
}

/// Keys of the flat shapes that describe the record rather than being its event data.
const FLAT_META: &[&str] = &[
    "@timestamp",
    "@version",
    "ActivityID",
    "Category",
    "Channel",
    "EventID",
    "EventReceivedTime",
    "EventTime",
    "EventType",
    "EventTypeOrignal",
    "ExecutionProcessID",
    "Hostname",
    "Keywords",
    "Level",
    "Message",
    "Opcode",
    "OpcodeValue",
    "ProviderGuid",
    "RecordNumber",
    "Severity",
    "SeverityValue",
    "SourceModuleName",
    "SourceModuleType",
    "SourceName",
    "Task",
    "ThreadID",
    "TimeCreated",
    "Version",
    "host",
    "port",
    "tags",
];

/// Reads one JSON object as a Windows record. `zone` is used for NXLog's `EventTime` (local time
/// without a zone) when the line does not say which offset it was written in.
pub fn parse(v: &Value, zone: Tz) -> Result<WinRecord, Unreadable> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    if let Some(Value::Object(winlog)) = obj.get("winlog") {
        return ecs(obj, winlog);
    }
    if obj.get("event_data").is_some() || obj.get("event_id").is_some() {
        return winlogbeat6(obj);
    }
    flat(obj, zone)
}

fn event_id(v: Option<&Value>) -> Result<u32, Unreadable> {
    let v = v.ok_or("no event id")?;
    Ok(match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("event id {v} is not a number"))?)
}

fn push_object(record: &mut WinRecord, data: Option<&Value>) {
    if let Some(Value::Object(data)) = data {
        for (k, v) in data {
            if let Some(t) = text(v) {
                record.push_data(k, &t);
            }
        }
    }
}

fn winlogbeat6(obj: &Map<String, Value>) -> Result<WinRecord, Unreadable> {
    let mut record = WinRecord {
        event_id: event_id(obj.get("event_id"))?,
        record_id: number(obj, "record_number"),
        time: utc(str_of(obj, "@timestamp")),
        computer: str_of(obj, "computer_name"),
        channel: str_of(obj, "log_name"),
        provider: str_of(obj, "source_name"),
        audit: audit_words(obj.get("keywords")),
        data: Vec::new(),
        description: str_of(obj, "message"),
    };
    push_object(&mut record, obj.get("event_data"));
    push_object(&mut record, obj.get("user_data"));
    Ok(record)
}

fn ecs(obj: &Map<String, Value>, winlog: &Map<String, Value>) -> Result<WinRecord, Unreadable> {
    let event = obj.get("event").and_then(Value::as_object);
    let id = winlog
        .get("event_id")
        .or_else(|| event.and_then(|e| e.get("code")));
    let mut record = WinRecord {
        event_id: event_id(id)?,
        record_id: number(winlog, "record_id"),
        time: utc(str_of(obj, "@timestamp")),
        computer: str_of(winlog, "computer_name").or_else(|| {
            obj.get("host")
                .and_then(Value::as_object)
                .and_then(|h| str_of(h, "name"))
        }),
        channel: str_of(winlog, "channel"),
        provider: str_of(winlog, "provider_name"),
        audit: audit_words(winlog.get("keywords"))
            .or_else(|| audit_words(event.and_then(|e| e.get("outcome")))),
        data: Vec::new(),
        description: str_of(obj, "message"),
    };
    push_object(&mut record, winlog.get("event_data"));
    push_object(&mut record, winlog.get("user_data"));
    Ok(record)
}

fn flat(obj: &Map<String, Value>, zone: Tz) -> Result<WinRecord, Unreadable> {
    let audit = match str_of(obj, "EventType").as_deref() {
        Some("AUDIT_SUCCESS") => Some(Outcome::Success),
        Some("AUDIT_FAILURE") => Some(Outcome::Failure),
        _ => match obj.get("Keywords") {
            // NXLog writes the 64 bits as a signed number.
            Some(Value::Number(n)) => n.as_i64().and_then(|k| audit_bits(k as u64)),
            Some(Value::String(s)) => u64::from_str_radix(s.trim_start_matches("0x"), 16)
                .ok()
                .and_then(audit_bits),
            _ => None,
        },
    };
    let mut record = WinRecord {
        event_id: event_id(obj.get("EventID"))?,
        record_id: number(obj, "RecordNumber"),
        time: utc(str_of(obj, "TimeCreated")).or_else(|| nxlog_time(obj, zone)),
        computer: str_of(obj, "Hostname").or_else(|| str_of(obj, "computer_name")),
        channel: str_of(obj, "Channel"),
        provider: str_of(obj, "SourceName"),
        audit,
        data: Vec::new(),
        description: str_of(obj, "Message"),
    };
    for (k, v) in obj {
        if FLAT_META.contains(&k.as_str()) {
            continue;
        }
        if let Some(t) = text(v) {
            record.push_data(k, &t);
        }
    }
    Ok(record)
}

/// NXLog writes `EventTime` and `EventReceivedTime` in the collector's local time without a
/// zone. When a shipper added `@timestamp` (UTC) at receipt, the collector's offset is the
/// difference between that and `EventReceivedTime`, rounded to a quarter hour; otherwise the
/// clinic's zone is assumed.
fn nxlog_time(obj: &Map<String, Value>, zone: Tz) -> Option<DateTime<Utc>> {
    let local = |key: &str| {
        str_of(obj, key)
            .and_then(|s| NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f").ok())
    };
    let event_time = local("EventTime")?;
    if let (Some(received), Some(stamp)) =
        (local("EventReceivedTime"), utc(str_of(obj, "@timestamp")))
    {
        let offset_secs = (received - stamp.naive_utc()).num_seconds();
        let quarter = 15 * 60;
        let rounded = ((offset_secs as f64 / quarter as f64).round() as i64) * quarter;
        if rounded.abs() <= 14 * 3600 {
            return Some((event_time - chrono::Duration::seconds(rounded)).and_utc());
        }
    }
    zone.from_local_datetime(&event_time)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}
