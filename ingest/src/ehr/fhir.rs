//! HL7 FHIR AuditEvent, R4 and R5 (a single resource, a Bundle of them, or one per line), into
//! the normalized event. The DICOM/HL7 codes say what happened: 110114 User Authentication with
//! 110122 Login / 110123 Logout, 110110 Patient Record, 110106 Export, 110112 Query, the REST
//! interactions (read, vread, search, create, update, delete), and `action` C/R/U/D/E.

use crate::error::Unreadable;
use chrono::{DateTime, Utc};
use serde_json::Value;
use store::{Event, Outcome};

/// AuditEvents in a JSON document: the resource itself, or a Bundle's entries.
/// A document's AuditEvents with their place (1-based entry number), and how many other
/// resources it held.
pub type AuditEvents<'a> = (Vec<(usize, &'a Value)>, u64);

pub fn audit_events(doc: &Value) -> Result<AuditEvents<'_>, String> {
    match doc.get("resourceType").and_then(Value::as_str) {
        Some("AuditEvent") => Ok((vec![(1, doc)], 0)),
        Some("Bundle") => {
            let entries = doc
                .get("entry")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            // Every AuditEvent entry; the others (Provenance, Patient, ...) are counted.
            let mut events = Vec::new();
            let mut others = 0;
            for (i, entry) in entries.iter().enumerate() {
                match entry.get("resource") {
                    Some(r)
                        if r.get("resourceType").and_then(Value::as_str) == Some("AuditEvent") =>
                    {
                        events.push((i + 1, r));
                    }
                    _ => others += 1,
                }
            }
            Ok((events, others))
        }
        Some(other) => Err(format!(
            "resourceType is {other:?}; only AuditEvent (or a Bundle of them) is read"
        )),
        None => Err("no resourceType: not a FHIR resource".into()),
    }
}

fn codings(v: Option<&Value>) -> Vec<&Value> {
    // A CodeableConcept ({coding: [...]}), a Coding, or a list of either.
    match v {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().flat_map(|i| codings(Some(i))).collect(),
        Some(obj) => match obj.get("coding").and_then(Value::as_array) {
            Some(list) => list.iter().collect(),
            None if obj.get("code").is_some() => vec![obj],
            None => Vec::new(),
        },
    }
}

fn code_of(c: &Value) -> Option<&str> {
    c.get("code").and_then(Value::as_str)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// One AuditEvent resource into an event. A `recorded` time without an offset is read in
/// `zone` and the event tagged `timezone_assumed`.
pub fn event(
    resource: &Value,
    source_key: &str,
    ingested: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> Result<Event, Unreadable> {
    let original = serde_json::to_string(resource).map_err(|e| e.to_string())?;
    let mut event = Event::new(source_key, "ehr.fhir", original, ingested);
    let recorded = s(resource, &["recorded"])
        .or_else(|| s(resource, &["occurredDateTime"]))
        .or_else(|| s(resource, &["period", "start"]))
        .ok_or("the AuditEvent has no recorded time")?;
    let (timestamp, assumed) = super::parse_time(recorded, zone)
        .ok_or_else(|| format!("recorded {recorded:?} is not an ISO 8601 date-time"))?;
    event.timestamp = timestamp;
    if assumed {
        event.tags.push(super::ZONE_ASSUMED_TAG.to_owned());
    }
    // R4: type + subtype; R5: category + code.
    let types: Vec<&Value> = codings(resource.get("type"))
        .into_iter()
        .chain(codings(resource.get("category")))
        .collect();
    let subtypes: Vec<&Value> = codings(resource.get("subtype"))
        .into_iter()
        .chain(codings(resource.get("code")))
        .collect();
    let action_letter = s(resource, &["action"]).unwrap_or("");
    event.outcome = outcome(resource);
    let type_codes: Vec<&str> = types.iter().filter_map(|c| code_of(c)).collect();
    let sub_codes: Vec<&str> = subtypes.iter().filter_map(|c| code_of(c)).collect();
    event.action = action(&type_codes, &sub_codes, action_letter, event.outcome).to_owned();
    event.code = sub_codes
        .first()
        .or(type_codes.first())
        .map(|c| (*c).to_owned());
    let display = |list: &[&Value]| {
        list.iter()
            .filter_map(|c| {
                c.get("display")
                    .and_then(Value::as_str)
                    .or_else(|| code_of(c))
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let kind = [display(&types), display(&subtypes)]
        .into_iter()
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(" ");

    let agents: Vec<&Value> = resource
        .get("agent")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let person = agents
        .iter()
        .find(|a| a.get("requestor").and_then(Value::as_bool) == Some(true) && is_person(a))
        .or_else(|| agents.iter().find(|a| is_person(a)))
        .or_else(|| agents.first());
    let mut full_name = None;
    if let Some(agent) = person {
        event.user = s(agent, &["who", "identifier", "value"])
            .or_else(|| s(agent, &["altId"]))
            .or_else(|| s(agent, &["who", "reference"]).map(|r| r.rsplit('/').next().unwrap_or(r)))
            .or_else(|| s(agent, &["who", "display"]))
            .or_else(|| s(agent, &["name"]))
            .map(str::to_owned);
        full_name = s(agent, &["who", "display"]).or_else(|| s(agent, &["name"]));
        event.roles = agent
            .get("role")
            .map(|r| codings(Some(r)))
            .unwrap_or_default()
            .iter()
            .filter_map(|c| {
                c.get("display")
                    .and_then(Value::as_str)
                    .or_else(|| code_of(c))
            })
            .map(str::to_owned)
            .collect();
    }
    // The person's network address, else any agent's (R4 network.address, R5 networkString).
    let address = |a: &Value| {
        s(a, &["network", "address"])
            .or_else(|| s(a, &["networkString"]))
            .or_else(|| s(a, &["networkUri"]))
            .map(str::to_owned)
    };
    let addresses: Vec<String> = person
        .into_iter()
        .chain(agents.iter())
        .filter_map(|a| address(a))
        .collect();
    event.source_ip = addresses
        .iter()
        .find(|a| a.parse::<std::net::IpAddr>().is_ok())
        .cloned();
    event.host = addresses
        .iter()
        .find(|a| a.parse::<std::net::IpAddr>().is_err())
        .cloned()
        .or_else(|| s(resource, &["source", "observer", "display"]).map(str::to_owned));
    if let Some(site) =
        s(resource, &["source", "site"]).or_else(|| s(resource, &["source", "site", "display"]))
    {
        event
            .labels
            .insert("fhir.source.site".into(), site.to_owned());
    }
    if let Some(name) = full_name {
        event
            .labels
            .insert("user.full_name".into(), name.to_owned());
    }
    if let Some(id) = s(resource, &["id"]) {
        event.labels.insert("fhir.id".into(), id.to_owned());
    }
    if !action_letter.is_empty() {
        event
            .labels
            .insert("fhir.action".into(), action_letter.to_owned());
    }

    let entities: Vec<&Value> = resource
        .get("entity")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    event.patient = s(resource, &["patient", "reference"])
        .and_then(patient_ref)
        .or_else(|| {
            entities
                .iter()
                .find_map(|e| s(e, &["what", "reference"]).and_then(patient_ref))
        })
        .or_else(|| {
            entities
                .iter()
                .find(|e| is_patient_entity(e))
                .and_then(|e| s(e, &["what", "identifier", "value"]).or_else(|| s(e, &["name"])))
                .map(str::to_owned)
        });
    event.category = entities
        .iter()
        .filter_map(|e| s(e, &["what", "reference"]))
        .find_map(resource_category)
        .map(str::to_owned);
    let mut what = Vec::new();
    for e in &entities {
        if let Some(w) = s(e, &["what", "identifier", "value"])
            .or_else(|| s(e, &["what", "reference"]))
            .or_else(|| s(e, &["name"]))
        {
            what.push(w.to_owned());
        }
    }
    if !what.is_empty() {
        event.labels.insert("fhir.entity".into(), what.join(" "));
    }
    if entities.len() > 1 {
        event.record_count = Some(entities.len() as u64);
    }

    use std::fmt::Write;
    let mut m = format!("AuditEvent {kind}");
    if !action_letter.is_empty() {
        write!(m, " action {action_letter}").ok();
    }
    if let Some(u) = &event.user {
        write!(m, " by {u}").ok();
    }
    if let Some(n) = full_name {
        write!(m, " ({n})").ok();
    }
    if !what.is_empty() {
        write!(m, " on {}", what.join(" ")).ok();
    }
    if let Some(p) = &event.patient {
        write!(m, " patient {p}").ok();
    }
    if let Some(ip) = &event.source_ip {
        write!(m, " from {ip}").ok();
    }
    if let Some(h) = &event.host {
        write!(m, " host {h}").ok();
    }
    if let Some(d) = s(resource, &["outcomeDesc"]) {
        write!(m, ": {d}").ok();
    }
    event.message = m;
    Ok(event)
}

/// The kind of record a FHIR resource type is, for role checks.
fn resource_category(reference: &str) -> Option<&'static str> {
    let kind = reference
        .split('/')
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0].chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !w[1].is_empty())
        .map(|w| w[0])?;
    Some(match kind {
        "Patient" | "RelatedPerson" | "Coverage" => "demographics",
        "Appointment" | "Schedule" | "Slot" | "Encounter" => "appointments",
        "MedicationRequest" | "MedicationDispense" | "MedicationStatement" | "Medication" => {
            "prescriptions"
        }
        "Claim" | "Invoice" | "Account" | "ChargeItem" | "ExplanationOfBenefit" => "billing",
        "Observation" | "Condition" | "Composition" | "DocumentReference" | "DiagnosticReport"
        | "Procedure" | "AllergyIntolerance" | "CarePlan" | "ClinicalImpression" => {
            "clinical_notes"
        }
        _ => return None,
    })
}

fn patient_ref(reference: &str) -> Option<String> {
    let mut parts = reference.split('/');
    while let Some(p) = parts.next() {
        if p == "Patient" {
            return parts.next().filter(|id| !id.is_empty()).map(str::to_owned);
        }
    }
    None
}

/// R4 entity type 1 (Person) with role 1 (Patient), or an R5 role coded `patient`.
fn is_patient_entity(e: &Value) -> bool {
    let type_person = s(e, &["type", "code"]) == Some("1");
    let role_patient = s(e, &["role", "code"]) == Some("1");
    let r5 = codings(e.get("role"))
        .iter()
        .any(|c| code_of(c).is_some_and(|c| c.eq_ignore_ascii_case("patient") || c == "PAT"));
    (type_person && role_patient) || r5
}

/// An agent that is a person rather than a system or device.
fn is_person(agent: &Value) -> bool {
    let types: Vec<&str> = codings(agent.get("type"))
        .into_iter()
        .filter_map(code_of)
        .collect();
    let device = types.iter().any(|t| {
        matches!(
            *t,
            "110150" | "110151" | "110152" | "110153" | "DEV" | "application"
        )
    });
    let reference = s(agent, &["who", "reference"]).unwrap_or("");
    !device && !reference.starts_with("Device/") && !reference.starts_with("Organization/")
}

fn outcome(resource: &Value) -> Outcome {
    // R4: "0" / "4" / "8" / "12"; R5: {code: Coding} with the same codes.
    let code = s(resource, &["outcome"])
        .or_else(|| s(resource, &["outcome", "code", "code"]))
        .or_else(|| {
            codings(resource.get("outcome").and_then(|o| o.get("code")))
                .first()
                .and_then(|c| code_of(c))
        });
    match code {
        Some("0") => Outcome::Success,
        Some("4" | "8" | "12") => Outcome::Failure,
        _ => Outcome::Unknown,
    }
}

/// The normalized action from the DICOM/HL7 codes.
pub fn action(types: &[&str], subtypes: &[&str], letter: &str, outcome: Outcome) -> &'static str {
    let has = |list: &[&str], code: &str| list.iter().any(|c| c.eq_ignore_ascii_case(code));
    if has(types, "110114") || has(subtypes, "110122") || has(subtypes, "110123") {
        return if has(subtypes, "110123") {
            "logout"
        } else if outcome == Outcome::Failure {
            "login_failed"
        } else {
            "login"
        };
    }
    if has(types, "110106") || has(subtypes, "110106") {
        return "record.export";
    }
    if has(types, "110100") {
        return "application.activity";
    }
    for (code, action) in [
        ("read", "record.view"),
        ("vread", "record.view"),
        ("search", "record.view"),
        ("search-type", "record.view"),
        ("history", "record.view"),
        ("create", "record.update"),
        ("update", "record.update"),
        ("patch", "record.update"),
        ("delete", "record.delete"),
    ] {
        if has(subtypes, code) {
            return action;
        }
    }
    match letter {
        "C" | "U" => "record.update",
        "R" => "record.view",
        "D" => "record.delete",
        _ if has(types, "110110") || has(types, "110112") => "record.view",
        _ => "other",
    }
}
