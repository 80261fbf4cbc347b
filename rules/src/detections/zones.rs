//! Senders whose times sit a whole number of hours from when their events arrive: a machine
//! that writes local times without a zone (RFC 3164, Snare) in a zone other than the one it
//! is read in (a server on UTC, read as Japan time, is dated nine hours early). Said once per
//! sender, after a few events agree, with the zone it probably writes in.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Events from one sender that must agree on the same whole-hour difference.
const AGREEING_EVENTS: u32 = 3;
/// How far from a whole hour a difference may be (delivery takes a moment).
const SLACK_MINUTES: i64 = 5;
/// Senders followed at once, at most.
const MAX_SENDERS: usize = 10_000;

#[derive(Default)]
pub struct ZoneGuesses {
    /// Sender -> (hours off, events agreeing), or `None` once reported.
    senders: HashMap<String, Option<(i64, u32)>>,
}

/// A sender's times are `hours` off; it probably writes them in `zone` (`UTC+00:00`).
pub struct WrongZone {
    pub hours: i64,
    pub zone: String,
}

impl ZoneGuesses {
    /// Notes one live event's difference from its arrival; `read_in` is the zone its time was
    /// read in. Some the first time a sender's difference has held for a few events.
    pub fn observe(
        &mut self,
        sender: &str,
        timestamp: DateTime<Utc>,
        ingested: DateTime<Utc>,
        read_in: Tz,
    ) -> Option<WrongZone> {
        let skew = timestamp - ingested;
        let hours = (skew.num_minutes() as f64 / 60.0).round() as i64;
        let whole = (skew - Duration::hours(hours)).num_minutes().abs() <= SLACK_MINUTES;
        let candidate = hours != 0 && hours.abs() <= 14 && whole;
        if !self.senders.contains_key(sender) && self.senders.len() >= MAX_SENDERS {
            // Full (a flood of made-up senders): forget the ones with nothing building up;
            // those already reported stay, so none is reported twice.
            self.senders
                .retain(|_, state| !matches!(state, Some((_, 0))));
            if self.senders.len() >= MAX_SENDERS {
                return None;
            }
        }
        // Every live event comes through here: the sender's name is copied only once.
        if !self.senders.contains_key(sender) {
            self.senders.insert(sender.to_owned(), Some((0, 0)));
        }
        let state = self.senders.get_mut(sender).expect("just inserted");
        let Some((seen_hours, count)) = state else {
            return None; // reported already
        };
        if !candidate {
            *state = Some((0, 0));
            return None;
        }
        if *seen_hours == hours {
            *count += 1;
        } else {
            *state = Some((hours, 1));
        }
        if state.is_some_and(|(_, n)| n >= AGREEING_EVENTS) {
            *state = None;
            let offset = read_in
                .offset_from_utc_datetime(&ingested.naive_utc())
                .fix()
                .local_minus_utc();
            // Dated `hours` off: the sender writes in the reading zone shifted by them.
            let minutes = i64::from(offset) / 60 + hours * 60;
            let sign = if minutes < 0 { '-' } else { '+' };
            let zone = format!(
                "UTC{sign}{:02}:{:02}",
                minutes.abs() / 60,
                minutes.abs() % 60
            );
            return Some(WrongZone { hours, zone });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_utc_sender_read_in_tokyo_is_named_once_after_three_events() {
        let mut g = ZoneGuesses::default();
        let arrived = DateTime::parse_from_rfc3339("2026-11-24T07:01:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let dated = arrived - Duration::hours(9);
        let tokyo = chrono_tz::Asia::Tokyo;
        assert!(g.observe("db01", dated, arrived, tokyo).is_none());
        assert!(g.observe("db01", dated, arrived, tokyo).is_none());
        let w = g.observe("db01", dated, arrived, tokyo).unwrap();
        assert_eq!((w.hours, w.zone.as_str()), (-9, "UTC+00:00"));
        assert!(g.observe("db01", dated, arrived, tokyo).is_none(), "once");
        // A sender a few minutes late, or late by an odd amount, is not a zone.
        for _ in 0..5 {
            assert!(
                g.observe("pc02", arrived - Duration::minutes(3), arrived, tokyo)
                    .is_none()
            );
            assert!(
                g.observe("pc03", arrived - Duration::minutes(200), arrived, tokyo)
                    .is_none()
            );
        }
    }
}
