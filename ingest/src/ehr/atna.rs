//! IHE ATNA audit messages (DICOM PS3.15 A.5 / RFC 3881 `<AuditMessage>`), from files or as the
//! payload of RFC 5424 syslog messages. The same DICOM codes as FHIR AuditEvent say what
//! happened; both spellings of a code are read (`code`/`displayName` and `csd-code`/
//! `originalText`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use store::{Event, Outcome};

use super::fhir;
use crate::error::Unreadable;
use crate::xml::{Node, parse_tree};

fn code(node: &Node) -> Option<&str> {
    node.attr("csd-code").or_else(|| node.attr("code"))
}

fn display(node: &Node) -> Option<&str> {
    node.attr("originalText")
        .or_else(|| node.attr("displayName"))
        .or_else(|| code(node))
}

/// Participant roles that are systems, not people: application, launcher, destination, source.
const SYSTEM_ROLES: &[&str] = &["110150", "110151", "110152", "110153"];

/// One `<AuditMessage>` element into an event. An `EventDateTime` without an offset (common in
/// real audit repositories) is read in `zone` and the event tagged `timezone_assumed`.
pub fn event(
    xml: &str,
    source_key: &str,
    ingested: DateTime<Utc>,
    zone: Tz,
) -> Result<Event, Unreadable> {
    let root = parse_tree(xml)?;
    if root.name != "AuditMessage" {
        return Err(format!("expected <AuditMessage>, found <{}>", root.name).into());
    }
    let id = root
        .child("EventIdentification")
        .ok_or("the AuditMessage has no <EventIdentification>")?;
    let mut event = Event::new(source_key, "ehr.atna", xml.trim().to_owned(), ingested);
    let when = id
        .attr("EventDateTime")
        .ok_or("EventIdentification has no EventDateTime")?;
    let (timestamp, assumed) = super::parse_time(when, zone)
        .ok_or_else(|| format!("EventDateTime {when:?} is not an ISO 8601 date-time"))?;
    event.timestamp = timestamp;
    if assumed {
        event.tags.push(super::ZONE_ASSUMED_TAG.to_owned());
    }
    event.outcome = match id.attr("EventOutcomeIndicator") {
        Some("0") => Outcome::Success,
        Some("4" | "8" | "12") => Outcome::Failure,
        _ => Outcome::Unknown,
    };
    let letter = id.attr("EventActionCode").unwrap_or("");
    let event_id = id.child("EventID");
    let types: Vec<&str> = event_id.and_then(code).into_iter().collect();
    let subtypes: Vec<&str> = id
        .children_named("EventTypeCode")
        .filter_map(code)
        .collect();
    event.action = fhir::action(&types, &subtypes, letter, event.outcome).to_owned();
    event.code = types.first().map(|c| (*c).to_owned());
    let kind: Vec<&str> = event_id
        .and_then(display)
        .into_iter()
        .chain(id.children_named("EventTypeCode").filter_map(display))
        .collect();

    let participants: Vec<&Node> = root.children_named("ActiveParticipant").collect();
    let is_system = |p: &Node| {
        p.children_named("RoleIDCode")
            .filter_map(code)
            .any(|c| SYSTEM_ROLES.contains(&c))
    };
    let person = participants
        .iter()
        .find(|p| p.attr("UserIsRequestor") != Some("false") && !is_system(p))
        .or_else(|| participants.iter().find(|p| !is_system(p)))
        .or_else(|| {
            participants
                .iter()
                .find(|p| p.attr("UserIsRequestor") == Some("true"))
        })
        .copied();
    if let Some(p) = person {
        event.user = p.attr("UserID").map(str::to_owned);
        if let Some(name) = p.attr("UserName") {
            event
                .labels
                .insert("user.full_name".into(), name.to_owned());
        }
        event.roles = p
            .children_named("RoleIDCode")
            .filter_map(display)
            .map(str::to_owned)
            .collect();
    }
    // Where the requesting side was: the person's access point, else the requestor's.
    let access_point = person
        .into_iter()
        .chain(
            participants
                .iter()
                .copied()
                .filter(|p| p.attr("UserIsRequestor") == Some("true")),
        )
        .find_map(|p| p.attr("NetworkAccessPointID"));
    if let Some(ap) = access_point {
        if ap.parse::<std::net::IpAddr>().is_ok() {
            event.source_ip = Some(ap.to_owned());
        } else {
            event.host = Some(ap.to_owned());
        }
    }
    if let Some(src) = root.child("AuditSourceIdentification") {
        if let Some(s) = src.attr("AuditSourceID") {
            event
                .labels
                .insert("atna.audit_source".into(), s.to_owned());
            event.process = Some(s.to_owned());
        }
        if let Some(s) = src.attr("AuditEnterpriseSiteID") {
            event
                .labels
                .insert("atna.enterprise_site".into(), s.to_owned());
        }
    }
    let objects: Vec<&Node> = root
        .children_named("ParticipantObjectIdentification")
        .collect();
    let patient = objects.iter().find(|o| {
        o.attr("ParticipantObjectTypeCode") == Some("1")
            && o.attr("ParticipantObjectTypeCodeRole") == Some("1")
    });
    if let Some(p) = patient {
        event.patient = p.attr("ParticipantObjectID").map(str::to_owned);
        if let Some(name) = p.child_text("ParticipantObjectName") {
            event.labels.insert("patient.name".into(), name.to_owned());
        }
    }
    let others: Vec<&str> = objects
        .iter()
        .filter(|o| !patient.is_some_and(|p| std::ptr::eq(*p, **o)))
        .filter_map(|o| o.attr("ParticipantObjectID"))
        .collect();
    if !others.is_empty() {
        event.labels.insert("atna.objects".into(), others.join(" "));
    }
    let patients = objects
        .iter()
        .filter(|o| o.attr("ParticipantObjectTypeCodeRole") == Some("1"))
        .count();
    if patients > 1 {
        event.record_count = Some(patients as u64);
    }

    use std::fmt::Write;
    let mut m = format!("ATNA {}", kind.join(" "));
    if !letter.is_empty() {
        write!(m, " action {letter}").ok();
    }
    if let Some(u) = &event.user {
        write!(m, " by {u}").ok();
    }
    if let Some(n) = event.labels.get("user.full_name") {
        write!(m, " ({n})").ok();
    }
    if let Some(p) = &event.patient {
        write!(m, " patient {p}").ok();
    }
    if !others.is_empty() {
        write!(m, " objects {}", others.join(" ")).ok();
    }
    if let Some(ip) = &event.source_ip {
        write!(m, " from {ip}").ok();
    }
    if let Some(s) = event.labels.get("atna.audit_source") {
        write!(m, " source {s}").ok();
    }
    event.message = m;
    Ok(event)
}
