//! Puts live events back in event-time order before the rules see them.
//!
//! Senders do not deliver in order: a Windows forwarder batches for a few seconds, a VPN box
//! retries over TCP, the EHR writes its audit trail after the fact. Sessions, windows and
//! "logout then login elsewhere" are about event time, so each event is held for up to
//! `lateness` and handed on in event-time order.
//!
//! An event leaves the buffer when whichever comes first:
//! - an event at least `lateness` newer (in event time) has arrived (the watermark passed it);
//! - it has waited `lateness` on the appliance's clock (a quiet sender does not hold it);
//! - the buffer is full.
//!
//! An event that arrives after a later one was already handed on is "late": it is still
//! evaluated (the detections tolerate some disorder), and counted. Times far in the future
//! (a sender's wrong clock) do not move the watermark, or they would flush everything at once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use store::Event;

/// Event times further ahead of their arrival than this do not move the watermark.
const TRUSTED_AHEAD: chrono::Duration = chrono::Duration::minutes(10);

struct Held {
    at: DateTime<Utc>,
    seq: u64,
    arrived: Instant,
    event: Event,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The reorder buffer. `seq` is the event's position in the write-ahead log.
pub struct Reorder {
    lateness: Duration,
    capacity: usize,
    heap: BinaryHeap<Reverse<Held>>,
    /// Log positions held, so the caller knows from where to replay after a crash.
    seqs: BTreeSet<u64>,
    /// The newest trusted event time seen.
    newest: Option<DateTime<Utc>>,
    /// The event time of the last event handed on.
    released: Option<DateTime<Utc>>,
}

impl Reorder {
    /// `lateness` zero hands every event straight on.
    pub fn new(lateness: Duration, capacity: usize) -> Reorder {
        Reorder {
            lateness,
            capacity: capacity.max(1),
            heap: BinaryHeap::new(),
            seqs: BTreeSet::new(),
            newest: None,
            released: None,
        }
    }

    /// Takes an event; says whether it is late (a later event was already handed on).
    pub fn push(&mut self, seq: u64, event: Event, now: Instant) -> bool {
        let at = event.timestamp;
        let late = self.released.is_some_and(|r| at < r);
        if at <= event.ingested + TRUSTED_AHEAD {
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
        self.seqs.insert(seq);
        self.heap.push(Reverse(Held {
            at,
            seq,
            arrived: now,
            event,
        }));
        late
    }

    /// The next event due, in event-time order, or `None` while the oldest must still wait.
    pub fn pop(&mut self, now: Instant) -> Option<(u64, Event)> {
        let Reverse(top) = self.heap.peek()?;
        let lateness = chrono::Duration::from_std(self.lateness).unwrap_or(chrono::Duration::MAX);
        let passed = self
            .newest
            .is_some_and(|n| n.signed_duration_since(top.at) >= lateness);
        let waited = now.saturating_duration_since(top.arrived) >= self.lateness;
        if passed || waited || self.heap.len() > self.capacity {
            self.take()
        } else {
            None
        }
    }

    /// Everything held, in event-time order (at shutdown).
    pub fn drain(&mut self) -> Vec<(u64, Event)> {
        let mut out = Vec::with_capacity(self.heap.len());
        while let Some(e) = self.take() {
            out.push(e);
        }
        out
    }

    fn take(&mut self) -> Option<(u64, Event)> {
        let Reverse(held) = self.heap.pop()?;
        self.seqs.remove(&held.seq);
        self.released = Some(self.released.map_or(held.at, |r| r.max(held.at)));
        Some((held.seq, held.event))
    }

    /// The lowest log position still held: after a crash, the rules replay from there.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.seqs.first().copied()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How long until the oldest event is due on the clock alone (for the caller's wait).
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        let Reverse(top) = self.heap.peek()?;
        Some((top.arrived + self.lateness).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(minute: i64) -> Event {
        let base = DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = Event::new(
            "test",
            "test",
            format!("m{minute}"),
            base + chrono::Duration::minutes(minute.max(0)),
        );
        e.timestamp = base + chrono::Duration::minutes(minute);
        e.message = e.original.clone();
        e
    }

    fn minutes(out: &[(u64, Event)]) -> Vec<i64> {
        out.iter()
            .map(|(_, e)| e.message.trim_start_matches('m').parse().unwrap())
            .collect()
    }

    #[test]
    fn an_event_waits_until_one_lateness_newer_arrives() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(120), 1000);
        r.push(1, event(0), now);
        r.push(2, event(1), now);
        assert!(
            r.pop(now).is_none(),
            "nothing is 2 minutes older than the newest"
        );
        r.push(3, event(-1), now);
        assert_eq!(
            minutes(&[r.pop(now).unwrap()]),
            vec![-1],
            "2 minutes behind the newest"
        );
        assert!(r.pop(now).is_none());
        r.push(4, event(2), now);
        assert_eq!(minutes(&[r.pop(now).unwrap()]), vec![0]);
        assert!(r.pop(now).is_none());
        assert_eq!(r.oldest_seq(), Some(2));
        assert_eq!(minutes(&r.drain()), vec![1, 2]);
        assert!(r.is_empty());
        assert_eq!(r.oldest_seq(), None);
    }

    #[test]
    fn a_quiet_sender_does_not_hold_its_event_longer_than_the_lateness() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(10), 1000);
        r.push(1, event(0), now);
        assert!(r.pop(now + Duration::from_secs(9)).is_none());
        assert_eq!(
            r.due_in(now + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert!(r.pop(now + Duration::from_secs(10)).is_some());
    }

    #[test]
    fn zero_lateness_passes_events_straight_on() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::ZERO, 1000);
        r.push(1, event(5), now);
        assert_eq!(r.pop(now).map(|(s, _)| s), Some(1));
        assert!(
            r.push(2, event(3), now),
            "older than one already handed on: late"
        );
        assert_eq!(r.pop(now).map(|(s, _)| s), Some(2));
    }

    #[test]
    fn a_future_time_does_not_flush_the_buffer() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(60), 1000);
        r.push(1, event(0), now);
        let mut wrong_clock = event(1);
        wrong_clock.timestamp += chrono::Duration::days(400);
        r.push(2, wrong_clock, now);
        assert!(
            r.pop(now).is_none(),
            "a sender's bad clock must not move the watermark"
        );
    }

    #[test]
    fn a_full_buffer_hands_on_its_oldest() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(3600), 2);
        for (seq, m) in [(1, 3), (2, 1), (3, 2)] {
            r.push(seq, event(m), now);
        }
        assert_eq!(minutes(&[r.pop(now).unwrap()]), vec![1]);
        assert!(r.pop(now).is_none());
    }

    proptest! {
        /// Whatever the arrival order, events within the lateness come out in time order, and
        /// every event comes out exactly once.
        #[test]
        fn events_within_the_lateness_come_out_in_time_order(
            jitter in proptest::collection::vec(0i64..5, 1..200),
        ) {
            let now = Instant::now();
            let mut r = Reorder::new(Duration::from_secs(5 * 60), 10_000);
            let mut out = Vec::new();
            // Event i happens at minute i and arrives up to 4 minutes late.
            let mut arrivals: Vec<(i64, i64)> =
                jitter.iter().enumerate().map(|(i, j)| (i as i64 + j, i as i64)).collect();
            arrivals.sort();
            for (seq, (_, m)) in arrivals.iter().enumerate() {
                prop_assert!(!r.push(seq as u64, event(*m), now));
                while let Some(e) = r.pop(now) {
                    out.push(e);
                }
            }
            out.extend(r.drain());
            let got = minutes(&out);
            let mut sorted = got.clone();
            sorted.sort();
            prop_assert_eq!(&got, &sorted);
            prop_assert_eq!(got.len(), jitter.len());
        }
    }
}
