//! Puts live events back in event-time order before the rules see them.
//!
//! Senders do not deliver in order: a Windows forwarder batches for a few seconds, a VPN box
//! retries over TCP, the EHR writes its audit trail after the fact, a spooled file is newest
//! first. Sessions, windows and "logout then login elsewhere" are about event time, so each
//! event is held for `lateness` (on the appliance's clock) and handed on in event-time order:
//! an event leaves when it is the oldest held and has waited `lateness`, or when the buffer is
//! full (then the oldest leaves at once). Full is a number of events or of bytes, whichever
//! comes first: at high rates the bytes bound the memory held, and events wait less.
//!
//! Live, event time runs with the clock, so this costs every alert `lateness` and puts in order
//! whatever arrives within it. A file dropped in the spool arrives in one burst and is sorted
//! whole if it fits the buffer.
//!
//! An event older than one already handed on is "late": it is still evaluated (the detections
//! tolerate some disorder), and counted. Times far in the future (a sender's wrong clock) are
//! not taken as the newest handed on, or everything after them would count as late.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use store::Event;

/// Event times further ahead of their arrival than this are not believed.
const TRUSTED_AHEAD: chrono::Duration = chrono::Duration::minutes(10);

struct Held {
    at: DateTime<Utc>,
    seq: u64,
    arrived: Instant,
    bytes: usize,
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
    max_bytes: usize,
    /// [`Event::memory_bytes`] of the events held.
    bytes: usize,
    heap: BinaryHeap<Reverse<Held>>,
    /// Log positions held, so the caller knows from where to replay after a crash.
    seqs: BTreeSet<u64>,
    /// The newest believable event time handed on.
    released: Option<DateTime<Utc>>,
}

impl Reorder {
    /// `lateness` zero hands every event straight on.
    pub fn new(lateness: Duration, capacity: usize) -> Reorder {
        Reorder {
            lateness,
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            bytes: 0,
            heap: BinaryHeap::new(),
            seqs: BTreeSet::new(),
            released: None,
        }
    }

    /// Holds at most about `max_bytes` of events too.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Reorder {
        self.max_bytes = max_bytes;
        self
    }

    /// Takes an event; says whether it is late (a later event was already handed on).
    pub fn push(&mut self, seq: u64, event: Event, now: Instant) -> bool {
        let at = event.timestamp;
        let late = self.released.is_some_and(|r| at < r);
        self.seqs.insert(seq);
        let bytes = event.memory_bytes();
        self.bytes += bytes;
        self.heap.push(Reverse(Held {
            at,
            seq,
            arrived: now,
            bytes,
            event,
        }));
        late
    }

    /// The next event due, in event-time order, or `None` while the oldest must still wait.
    pub fn pop(&mut self, now: Instant) -> Option<(u64, Event)> {
        let Reverse(top) = self.heap.peek()?;
        let waited = now.saturating_duration_since(top.arrived) >= self.lateness;
        if waited || self.heap.len() > self.capacity || self.bytes > self.max_bytes {
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
        self.bytes -= held.bytes;
        if held.at <= held.event.ingested + TRUSTED_AHEAD {
            self.released = Some(self.released.map_or(held.at, |r| r.max(held.at)));
        }
        Some((held.seq, held.event))
    }

    /// The lowest log position still held: after a crash, the rules replay from there.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.seqs.first().copied()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// [`Event::memory_bytes`] of the events held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How long until the oldest event is due (for the caller's wait).
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
    fn events_wait_the_lateness_and_leave_oldest_first() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut r = Reorder::new(s(10), 1000);
        r.push(1, event(0), now);
        r.push(2, event(30), now + s(2));
        r.push(3, event(5), now + s(4)); // the logout that arrived last
        assert!(r.pop(now + s(9)).is_none());
        assert_eq!(r.due_in(now + s(4)), Some(s(6)));
        assert_eq!(minutes(&[r.pop(now + s(10)).unwrap()]), vec![0]);
        assert_eq!(r.oldest_seq(), Some(2), "seq 2 is still held");
        assert!(
            r.pop(now + s(10)).is_none(),
            "minute 5 arrived at 4 s: due at 14 s"
        );
        assert_eq!(minutes(&[r.pop(now + s(14)).unwrap()]), vec![5]);
        assert_eq!(minutes(&r.drain()), vec![30]);
        assert!(r.is_empty());
        assert_eq!(r.oldest_seq(), None);
    }

    #[test]
    fn a_burst_newest_first_comes_out_oldest_first() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(10), 1000);
        for (seq, m) in (0..100).rev().enumerate() {
            assert!(!r.push(seq as u64, event(m), now));
        }
        let later = now + Duration::from_secs(10);
        let out: Vec<_> = std::iter::from_fn(|| r.pop(later)).collect();
        assert_eq!(minutes(&out), (0..100).collect::<Vec<_>>());
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
    fn a_future_time_does_not_make_the_rest_late() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::ZERO, 1000);
        let mut wrong_clock = event(1);
        wrong_clock.timestamp += chrono::Duration::days(400);
        r.push(1, wrong_clock, now);
        assert!(r.pop(now).is_some());
        assert!(
            !r.push(2, event(2), now),
            "a sender's bad clock is not believed"
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

    #[test]
    fn a_buffer_full_of_bytes_hands_on_its_oldest_and_counts_what_leaves() {
        let now = Instant::now();
        let big = |m| {
            let mut e = event(m);
            e.original = "x".repeat(10_000);
            e
        };
        let one = big(0).memory_bytes();
        assert!(one > 10_000, "the text counts: {one}");
        let mut r = Reorder::new(Duration::from_secs(3600), 1000).with_max_bytes(2 * one);
        r.push(1, big(3), now);
        r.push(2, big(1), now);
        assert!(r.pop(now).is_none(), "two fit");
        assert_eq!(r.bytes(), 2 * one);
        r.push(3, big(2), now);
        assert_eq!(minutes(&[r.pop(now).unwrap()]), vec![1]);
        assert!(r.pop(now).is_none(), "two fit again");
        assert_eq!(minutes(&r.drain()), vec![2, 3]);
        assert_eq!(r.bytes(), 0);
    }

    proptest! {
        /// Event i happens at minute i and arrives up to `lateness` late (one minute of event
        /// time per second of arrival): whatever the arrival order, events come out in time
        /// order, each exactly once.
        #[test]
        fn events_within_the_lateness_come_out_in_time_order(
            delays in proptest::collection::vec(0u64..5, 1..200),
        ) {
            let start = Instant::now();
            let mut r = Reorder::new(Duration::from_secs(5), 10_000);
            let mut out = Vec::new();
            let mut arrivals: Vec<(u64, i64)> =
                delays.iter().enumerate().map(|(i, d)| (i as u64 + d, i as i64)).collect();
            arrivals.sort();
            for (seq, (arrival, m)) in arrivals.iter().enumerate() {
                let now = start + Duration::from_secs(*arrival);
                while let Some(e) = r.pop(now) {
                    out.push(e);
                }
                prop_assert!(!r.push(seq as u64, event(*m), now), "minute {} late", m);
            }
            out.extend(r.drain());
            let got = minutes(&out);
            let mut sorted = got.clone();
            sorted.sort();
            prop_assert_eq!(&got, &sorted);
            prop_assert_eq!(got.len(), delays.len());
        }
    }
}
