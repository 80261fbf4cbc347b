//! `sensitive_records` (a VIP's record, or a colleague's own) and `treatment_relationship` (a
//! chart opened with no appointment or visit at that site within the window).

use std::collections::HashMap;

use store::{Event, Outcome};

use crate::clinic::Invalid;
use crate::engine::Engine;
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.sensitive_records]`: any access to a record flagged VIP, or to a staff
    /// member's own record (the roster's `patient_id`) by someone else.
    SensitiveConfig, High {
        vip_patients: Vec<String> = Vec::new(),
    }
}

detection_config! {
    /// `[detections.treatment_relationship]`: a chart opened for a patient with no appointment or
    /// visit at that site within `days` (needs the clinic's schedule: a CSV of
    /// `patient_id,date,site,doctor`).
    TreatmentConfig, Medium {
        appointments_file: Option<std::path::PathBuf> = None,
        days: u32 = 30,
    }
}

/// The clinic's schedule: patient -> (date, site) of appointments and visits.
#[derive(Debug, Clone, Default)]
pub struct Appointments {
    by_patient: HashMap<String, Vec<(chrono::NaiveDate, String)>>,
}

impl Appointments {
    /// Reads `patient_id,date,site[,doctor]` with a header row; dates 2026-11-24 or 2026/11/24.
    pub fn load(path: &std::path::Path) -> Result<Appointments, Invalid> {
        let key = "detections.treatment_relationship.appointments_file".to_owned();
        let mut reader = crate::clinic::open_csv(&key, path)?;
        let mut by_patient: HashMap<String, Vec<(chrono::NaiveDate, String)>> = HashMap::new();
        for (i, row) in reader.records().enumerate() {
            let line = i + 2;
            let row =
                row.map_err(|e| (key.clone(), format!("{} line {line}: {e}", path.display())))?;
            let (Some(patient), Some(date)) = (row.get(0), row.get(1)) else {
                return Err((
                    key,
                    format!(
                        "{} line {line}: patient_id,date,site columns",
                        path.display()
                    ),
                ));
            };
            let date = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
                .or_else(|_| chrono::NaiveDate::parse_from_str(date.trim(), "%Y/%m/%d"))
                .map_err(|_| {
                    (
                        key.clone(),
                        format!(
                            "{} line {line}: a date like 2026-11-24, not {date:?}",
                            path.display()
                        ),
                    )
                })?;
            let site = row.get(2).unwrap_or("").trim().to_owned();
            by_patient
                .entry(patient.trim().to_lowercase())
                .or_default()
                .push((date, site));
        }
        Ok(Appointments { by_patient })
    }

    /// Is there an appointment or visit for the patient at the site (any site when the event
    /// has none) within `days` of `day`?
    pub fn related(
        &self,
        patient: &str,
        site: Option<&str>,
        day: chrono::NaiveDate,
        days: i64,
    ) -> bool {
        self.by_patient
            .get(&patient.to_lowercase())
            .is_some_and(|list| {
                list.iter().any(|(d, s)| {
                    (*d - day).num_days().abs() <= days
                        && (site.is_none() || s.is_empty() || Some(s.as_str()) == site)
                })
            })
    }
}

detection! {
    /// Each of the two checks its own switch.
    Records, always, check: records
}

impl Engine {
    /// A VIP's or a staff member's own record; a chart with no treatment relationship.
    pub(crate) fn records(
        &self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        if !event.action.starts_with("record.") || event.outcome == Outcome::Failure {
            return out;
        }
        let Some(patient) = event.patient.as_deref() else {
            return out;
        };
        let sensitive = &self.config.sensitive_records;
        if sensitive.enabled {
            if sensitive
                .vip_patients
                .iter()
                .any(|v| v.eq_ignore_ascii_case(patient))
            {
                out.push(self.alert(
                    RuleId::SensitiveRecords,
                    sensitive.severity,
                    event,
                    site,
                    format!(
                        "{who} did {} on the record of patient {patient}, who is flagged VIP",
                        event.action
                    ),
                ));
            } else if let Some(staff) = self.clinic.staff.values().find(|s| {
                s.patient_id
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(patient))
            }) && staff.id.to_lowercase() != user
            {
                let name = if staff.name.is_empty() {
                    &staff.id
                } else {
                    &staff.name
                };
                let mut alert = self.alert(RuleId::SensitiveRecords,
                    sensitive.severity,
                    event,
                    site,
                    format!("{who} did {} on the record of patient {patient}, who is staff member {name}", event.action),
                );
                // The patient's name is patient data too.
                alert.private.push(name.clone());
                out.push(alert);
            }
        }
        let treatment = &self.config.treatment_relationship;
        if treatment.enabled
            && event.action == "record.view"
            && let Some(appointments) = &self.appointments
        {
            let day = self.clinic.local(event.timestamp).date_naive();
            if !appointments.related(patient, site, day, i64::from(treatment.days)) {
                let place = site.map(|s| format!(" at {s}")).unwrap_or_default();
                out.push(self.alert(RuleId::TreatmentRelationship,
                    treatment.severity,
                    event,
                    site,
                    format!(
                        "{who} opened the chart of patient {patient}, who has no appointment or visit{place} within {} days",
                        treatment.days
                    ),
                ));
            }
        }
        out
    }
}
