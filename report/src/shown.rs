//! What a copy of the review shows: names from logs bounded, the alerts counted whole, and the
//! copy without patient data that goes to a channel not allowed it.

use crate::alerts::AlertCounts;
use crate::weekly::{MAX_STAFF_LISTED, WeeklyReport};

/// Characters of a name from a log (an account, a host) shown at most: a sender cannot make
/// the review (and its mail) huge with long made-up names.
pub const MAX_NAME_CHARS: usize = 64;

/// `text` cut to [`MAX_NAME_CHARS`], marked when cut.
fn clip(text: &mut String) {
    if text.chars().count() > MAX_NAME_CHARS {
        *text = text.chars().take(MAX_NAME_CHARS - 1).collect::<String>() + "…";
    }
}
impl WeeklyReport {
    /// Bounds what is shown (after the checksum, which covers the whole): names from logs
    /// cut to [`MAX_NAME_CHARS`], the staff table to [`MAX_STAFF_LISTED`] rows.
    pub(crate) fn bound(&mut self) {
        self.staff_total = self.staff.len();
        self.staff.truncate(MAX_STAFF_LISTED);
        let names = self
            .staff
            .iter_mut()
            .map(|p| &mut p.user)
            .chain(self.off_hours.iter_mut().map(|o| &mut o.user))
            .chain(self.left_but_used.iter_mut().map(|c| &mut c.value))
            .chain(self.people_heat.iter_mut().map(|p| &mut p.user))
            .chain(self.sources.iter_mut().map(|c| &mut c.value))
            .chain(self.gaps.iter_mut().map(|g| &mut g.source))
            .chain(self.silences.iter_mut().map(|x| &mut x.source))
            .chain(self.patients.iter_mut().map(|p| &mut p.patient));
        for name in names {
            clip(name);
        }
        for a in self.alerts.iter_mut().chain(self.open_alerts.iter_mut()) {
            if let Some(u) = a.user.as_mut() {
                clip(u);
            }
        }
        for c in &mut self.account_changes {
            for v in [c.user.as_mut(), c.host.as_mut()].into_iter().flatten() {
                clip(v);
            }
        }
        for u in &mut self.spot_checks.listed {
            clip(&mut u.patient);
            if let Some(v) = u.user.as_mut() {
                clip(v);
            }
        }
    }

    /// The alerts of the period, counted whole ([`AlertCounts`]; a review kept before the
    /// counts were recorded counts its list).
    pub fn alert_counts(&self) -> AlertCounts {
        if self.alert_counts.in_period > 0 || self.alerts.is_empty() {
            return self.alert_counts;
        }
        AlertCounts {
            in_period: self.alerts.len() as u64,
            open_in_period: self.alerts.iter().filter(|a| a.status != "closed").count() as u64,
            open: self.open_alerts.len() as u64,
        }
    }

    /// The same review with no patient ID in it (for email to a channel without
    /// `include_patient_data`): the patients are numbered instead (and left out of the spot
    /// checks and of the reasons given for alerts), and the copy says so.
    pub fn without_patient_data(&self) -> WeeklyReport {
        let mut copy = self.clone();
        for (i, p) in copy.patients.iter_mut().enumerate() {
            p.patient = format!("#{}", i + 1);
        }
        for u in &mut copy.spot_checks.listed {
            u.patient = "—".into();
        }
        // Free text people wrote (a reason for closing an alert) may name a patient.
        for a in copy.alerts.iter_mut().chain(copy.open_alerts.iter_mut()) {
            if a.reason.is_some() {
                a.reason = Some("—".into());
            }
        }
        copy.patient_data_withheld = true;
        copy
    }
}
