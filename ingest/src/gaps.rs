//! Where a source numbers its records (EVTX `EventRecordID`, Snare and NXLog record numbers, an
//! EHR export's row ids), a jump in the numbering means records never reached us. Each gap is
//! stored as an event of its own (`event.action:sequence_gap`, searchable like any other) and
//! counted in `/metrics`, so an auditor can see that nothing is missing, or what is.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use store::{Event, EventId, Outcome};

/// Sources tracked at once; more are not tracked (and counted as such).
const MAX_SOURCES: usize = 10_000;
/// Ranges listed in one gap event's message.
const MAX_RANGES_SHOWN: usize = 20;

/// Numbers seen per source in one file: a set of closed ranges, small when numbering is dense
/// and in any order.
#[derive(Default)]
pub struct FileGaps {
    sources: HashMap<String, Ranges>,
}

#[derive(Default)]
struct Ranges {
    /// start -> end (inclusive), disjoint and not adjacent.
    ranges: BTreeMap<u64, u64>,
    host: Option<String>,
}

impl Ranges {
    fn insert(&mut self, n: u64) {
        if let Some((&start, &end)) = self.ranges.range(..=n).next_back()
            && n <= end.saturating_add(1)
        {
            if n <= end {
                return; // already seen
            }
            // Extends the range before it; maybe joins the one after.
            let next = n.checked_add(1).and_then(|m| self.ranges.get(&m).copied());
            let new_end = match next {
                Some(next_end) => {
                    self.ranges.remove(&(n + 1));
                    next_end
                }
                None => n,
            };
            self.ranges.insert(start, new_end);
            return;
        }
        match n.checked_add(1).and_then(|m| self.ranges.get(&m).copied()) {
            Some(next_end) => {
                self.ranges.remove(&(n + 1));
                self.ranges.insert(n, next_end);
            }
            None => {
                self.ranges.insert(n, n);
            }
        }
    }

    fn holes(&self) -> Vec<(u64, u64)> {
        let mut holes = Vec::new();
        let mut previous_end: Option<u64> = None;
        for (&start, &end) in &self.ranges {
            if let Some(prev) = previous_end {
                holes.push((prev + 1, start - 1));
            }
            previous_end = Some(end);
        }
        holes
    }
}

/// A gap found in one source's numbering.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub source: String,
    pub host: Option<String>,
    pub ranges: Vec<(u64, u64)>,
}

impl Gap {
    pub fn missing(&self) -> u64 {
        // Numbers up to u64::MAX: a hostile source's total saturates rather than wraps.
        self.ranges.iter().fold(0u64, |n, (a, b)| {
            n.saturating_add((b - a).saturating_add(1))
        })
    }

    /// The gap as an event: searchable, with the ranges in its message.
    pub fn event(&self, at: DateTime<Utc>, ingested: DateTime<Utc>, context: &str) -> Event {
        let shown: Vec<String> = self
            .ranges
            .iter()
            .take(MAX_RANGES_SHOWN)
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let more = self.ranges.len().saturating_sub(MAX_RANGES_SHOWN);
        let mut message = format!(
            "{} record(s) missing from {} ({context}): numbers {}",
            self.missing(),
            self.source,
            shown.join(", ")
        );
        if more > 0 {
            message.push_str(&format!(" and {more} more ranges"));
        }
        let mut event = Event::new(
            &format!("gap/{}", self.source),
            "mimamori.gap",
            message.clone(),
            ingested,
        );
        // The same gap found again (a re-import, from wherever) is the same event.
        event.id = EventId::derive(&format!("gap/{}", self.source), shown.join(",").as_bytes());
        event.timestamp = at;
        event.action = "sequence_gap".to_owned();
        event.outcome = Outcome::Failure;
        event.host = self.host.clone();
        event.record_count = Some(self.missing());
        event.tags.push("sequence_gap".to_owned());
        event
            .labels
            .insert("gap.source".into(), self.source.clone());
        event
            .labels
            .insert("gap.holes".into(), self.ranges.len().to_string());
        event.message = message;
        event
    }
}

impl FileGaps {
    pub fn see(&mut self, source: &str, number: u64, host: Option<&str>) {
        if !self.sources.contains_key(source) && self.sources.len() >= MAX_SOURCES {
            return;
        }
        let ranges = self.sources.entry(source.to_owned()).or_default();
        if ranges.host.is_none() {
            ranges.host = host.map(str::to_owned);
        }
        ranges.insert(number);
    }

    /// The gaps between the lowest and highest number seen, per source.
    pub fn finish(self) -> Vec<Gap> {
        let mut gaps: Vec<Gap> = self
            .sources
            .into_iter()
            .filter_map(|(source, r)| {
                let holes = r.holes();
                (!holes.is_empty()).then_some(Gap {
                    source,
                    host: r.host,
                    ranges: holes,
                })
            })
            .collect();
        gaps.sort_by(|a, b| a.source.cmp(&b.source));
        gaps
    }
}

/// Numbering followed live (syslog): a jump forward is a gap at once; a step back (a restarted
/// sender, or reordering) starts over without a report.
#[derive(Default)]
pub struct LiveGaps {
    last: HashMap<String, u64>,
}

impl LiveGaps {
    pub fn see(&mut self, source: &str, number: u64, host: Option<&str>) -> Option<Gap> {
        if !self.last.contains_key(source) && self.last.len() >= MAX_SOURCES {
            return None;
        }
        let previous = self.last.insert(source.to_owned(), number)?;
        (number > previous.saturating_add(1)).then(|| Gap {
            source: source.to_owned(),
            host: host.map(str::to_owned),
            ranges: vec![(previous + 1, number - 1)],
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_at_the_top_of_the_range_neither_panic_nor_wrap() {
        let mut r = Ranges::default();
        for n in [1, u64::MAX, u64::MAX - 1, 0] {
            r.insert(n);
        }
        let gap = Gap {
            source: "s".into(),
            host: None,
            ranges: r.holes(),
        };
        assert_eq!(gap.missing(), u64::MAX - 3);
        let two = Gap {
            source: "s".into(),
            host: None,
            ranges: vec![(1, u64::MAX), (1, u64::MAX)],
        };
        assert_eq!(two.missing(), u64::MAX, "saturates");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holes_between_seen_numbers_in_any_order() {
        let mut g = FileGaps::default();
        for n in [5, 3, 4, 9, 10, 12, 7] {
            g.see("pc/Security", n, Some("pc"));
        }
        g.see("other", 1, None);
        g.see("other", 2, None);
        let gaps = g.finish();
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].ranges, vec![(6, 6), (8, 8), (11, 11)]);
        assert_eq!(gaps[0].missing(), 3);
        let e = gaps[0].event(Utc::now(), Utc::now(), "file x.evtx");
        assert_eq!(e.action, "sequence_gap");
        assert!(
            e.message.contains("3 record(s) missing from pc/Security"),
            "{}",
            e.message
        );
        assert!(e.message.contains("6, 8, 11"));
    }

    #[test]
    fn live_jumps() {
        let mut g = LiveGaps::default();
        assert_eq!(g.see("s", 10, None), None);
        assert_eq!(g.see("s", 11, None), None);
        let gap = g.see("s", 15, None).unwrap();
        assert_eq!(gap.ranges, vec![(12, 14)]);
        assert_eq!(g.see("s", 3, None), None, "restart is not a gap");
        assert_eq!(g.see("s", 4, None), None);
    }

    proptest! {
        #[test]
        fn ranges_match_a_set(numbers in proptest::collection::vec(0u64..200, 0..100)) {
            let mut r = Ranges::default();
            for &n in &numbers { r.insert(n); }
            let set: std::collections::BTreeSet<u64> = numbers.iter().copied().collect();
            let covered: std::collections::BTreeSet<u64> =
                r.ranges.iter().flat_map(|(&a, &b)| a..=b).collect();
            prop_assert_eq!(&covered, &set);
            let missing: u64 = r.holes().iter().map(|(a, b)| b - a + 1).sum();
            if let (Some(lo), Some(hi)) = (set.first(), set.last()) {
                prop_assert_eq!(missing, hi - lo + 1 - set.len() as u64);
            }
        }
    }
}
