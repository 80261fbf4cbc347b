//! `bulk_export`: one export or print of many records, many patients opened within a window,
//! or a day's volume far above the person's own baseline.

use chrono::Duration;
use store::{Event, Outcome};

use crate::engine::{Engine, note_near_miss};
use crate::{Alert, RuleId};

detection_config! {
    /// `[detections.bulk_export]`
    BulkConfig, High {
        /// One export or print of at least this many records.
        max_records: u64 = 100,
        /// At least this many distinct patients viewed by one user within `window_minutes`.
        distinct_patients: usize = 50,
        window_minutes: u32 = 60,
        /// A day's record accesses above this many times the person's own daily average over
        /// the previous `baseline_days` (0: off) ...
        baseline_factor: f64 = 4.0,
        baseline_days: u32 = 14,
        /// ... and above this many, so quiet people do not fire.
        baseline_floor: u64 = 200,
    }
}

detection! {
    /// The check of `Bulk`.
    Bulk, on: bulk_export, check: bulk
}

impl Engine {
    pub(crate) fn bulk(
        &mut self,
        event: &Event,
        user: &str,
        who: &str,
        site: Option<&str>,
    ) -> Option<Alert> {
        let cfg = self.config.bulk_export.clone();
        if matches!(event.action.as_str(), "record.export" | "record.print")
            && event.outcome != Outcome::Failure
            && let Some(n) = event.record_count
        {
            if n < cfg.max_records {
                note_near_miss(
                    &mut self.near_misses,
                    "bulk_export (records at once)",
                    n,
                    cfg.max_records,
                    || who.to_owned(),
                );
                return None;
            }
            // One bulk alert a day is enough: the day's volume is explained by this export.
            let day = self.clinic.local(event.timestamp).date_naive();
            self.users
                .entry(user.to_owned())
                .or_default()
                .baseline_alerted = Some(day);
            let verb = if event.action == "record.export" {
                "exported"
            } else {
                "printed"
            };
            return Some(self.alert(
                RuleId::BulkExport,
                cfg.severity,
                event,
                site,
                format!(
                    "{who} {verb} {n} records at once (the limit is {})",
                    cfg.max_records
                ),
            ));
        }
        if let Some(alert) = self.baseline(event, user, site, &cfg, who) {
            return Some(alert);
        }
        if event.action != "record.view" {
            return None;
        }
        let patient = event.patient.clone()?;
        let window = Duration::minutes(i64::from(cfg.window_minutes));
        let t = event.timestamp;
        let state = self.users.entry(user.to_owned()).or_default();
        // An event from well before the window (an older file read after a newer one) starts
        // the window again rather than counting against days it has nothing to do with.
        if state
            .views
            .back()
            .is_some_and(|(last, _)| t < *last - window)
        {
            state.views.clear();
            state.bulk_alerted_until = None;
        }
        state.views.push_back((t, patient));
        while state.views.front().is_some_and(|(v, _)| *v < t - window) {
            state.views.pop_front();
        }
        // Bounded: far more views than the threshold adds nothing.
        while state.views.len() > cfg.distinct_patients * 20 {
            state.views.pop_front();
        }
        if state.bulk_alerted_until.is_some_and(|u| t < u) {
            return None;
        }
        let distinct: std::collections::HashSet<&String> =
            state.views.iter().map(|(_, p)| p).collect();
        if distinct.len() < cfg.distinct_patients {
            let n = distinct.len() as u64;
            note_near_miss(
                &mut self.near_misses,
                "bulk_export (patients in window)",
                n,
                cfg.distinct_patients as u64,
                || who.to_owned(),
            );
            return None;
        }
        let n = distinct.len();
        state.bulk_alerted_until = Some(t + window);
        state.baseline_alerted = Some(self.clinic.local(t).date_naive());
        Some(self.alert(RuleId::BulkExport,
            cfg.severity,
            event,
            site,
            format!(
                "{who} opened the records of {n} different patients within {} minutes (the limit is {})",
                cfg.window_minutes, cfg.distinct_patients
            ),
        ))
    }

    /// A day's volume far above the person's own recent days.
    pub(crate) fn baseline(
        &mut self,
        event: &Event,
        user: &str,
        site: Option<&str>,
        cfg: &BulkConfig,
        who: &str,
    ) -> Option<Alert> {
        if cfg.baseline_days == 0
            || !event.action.starts_with("record.")
            || event.outcome == Outcome::Failure
        {
            return None;
        }
        let day = self.clinic.local(event.timestamp).date_naive();
        let state = self.users.entry(user.to_owned()).or_default();
        let n = event.record_count.unwrap_or(1).max(1);
        match state.daily.back_mut() {
            Some((d, count)) if *d == day => *count += n,
            Some((d, _)) if *d > day => return None, // an older day read late: not counted
            _ => state.daily.push_back((day, n)),
        }
        let horizon = day - Duration::days(i64::from(cfg.baseline_days));
        while state.daily.front().is_some_and(|(d, _)| *d < horizon) {
            state.daily.pop_front();
        }
        let today = state.daily.back().map_or(0, |(_, c)| *c);
        let previous: Vec<u64> = state.daily.iter().rev().skip(1).map(|(_, c)| *c).collect();
        // A baseline needs a few days behind it.
        if previous.len() < 5 || state.baseline_alerted == Some(day) || today < cfg.baseline_floor {
            return None;
        }
        let average = previous.iter().sum::<u64>() as f64 / previous.len() as f64;
        if (today as f64) < average * cfg.baseline_factor {
            return None;
        }
        state.baseline_alerted = Some(day);
        Some(self.alert(RuleId::BulkExport,
            cfg.severity,
            event,
            site,
            format!(
                "{who} has accessed {today} records today, {:.0} times their daily average of {average:.0} over the previous {} working days",
                today as f64 / average.max(1.0),
                previous.len()
            ),
        ))
    }
}
