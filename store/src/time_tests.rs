//! Time ranges and newest-first pages against counting and sorting by hand: several index
//! segments, late events, several events per instant, and slices cut anywhere.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::tests::{event, open, wait_for};
use crate::*;

/// Events sent in three batches of `per_part` (three segments at least): one a second, three to
/// an instant, and every 50th two hours late. Words: every event is "common", every 7th "mid", every 97th
/// "rare". Returned in the log's order.
fn fill(store: &Store, per_part: u32) -> Vec<Event> {
    let base = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
    let mut all = Vec::new();
    for part in 0..3u32 {
        let events: Vec<Event> = (0..per_part)
            .map(|i| {
                let n = part * per_part + i;
                let mut t = base + Duration::seconds(i64::from(n / 3));
                if n.is_multiple_of(50) {
                    t -= Duration::hours(2);
                }
                let mut words = vec!["common"];
                if n.is_multiple_of(7) {
                    words.push("mid");
                }
                if n.is_multiple_of(97) {
                    words.push("rare");
                }
                event(n, "u", &words.join(" "), t)
            })
            .collect();
        all.extend(events.clone());
        let (batch, ack) = Batch::with_ack(events);
        store.sender().blocking_send(batch).unwrap();
        ack.blocking_recv().unwrap().unwrap();
        wait_for(store.index(), u64::from(per_part * (part + 1)));
    }
    all
}

/// The patients (event numbers) of `query`'s matches in `[from, to)`, newest first: latest
/// time first, then latest in the log.
fn by_hand(
    all: &[Event],
    word: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Vec<String> {
    let mut found: Vec<(DateTime<Utc>, usize, String)> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| word == "*" || e.message.split(' ').any(|w| w == word))
        .filter(|(_, e)| {
            from.is_none_or(|f| e.timestamp >= f) && to.is_none_or(|t| e.timestamp < t)
        })
        .map(|(i, e)| (e.timestamp, i, e.patient.clone().unwrap()))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse((f.0, f.1)));
    found.into_iter().map(|(_, _, p)| p).collect()
}

fn patients(results: &SearchResults) -> Vec<String> {
    results
        .events
        .iter()
        .map(|e| e.patient.clone().unwrap())
        .collect()
}

/// A small deterministic generator, so a failure can be repeated.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn time_ranges_and_pages_match_counting_and_sorting_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = fill(&store, 3000);
    let index = store.index();
    let times: Vec<DateTime<Utc>> = all.iter().map(|e| e.timestamp).collect();
    let mut rng = Lcg(7);
    for round in 0..60 {
        let word = ["common", "mid", "rare", "*"][round % 4];
        // Bounds on an event's own time (the edges must be exact), or none.
        let mut bound =
            || (rng.below(5) > 0).then(|| times[rng.below(times.len() as u64) as usize]);
        let (mut from, mut to) = (bound(), bound());
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            (from, to) = (Some(t), Some(f));
        }
        let expected = by_hand(&all, word, from, to);
        let limit = 1 + rng.below(300) as usize;
        let offset = rng.below(expected.len() as u64 + 50) as usize;
        let count_up_to = [None, Some(10), Some(1000), Some(COUNTED_MATCHES)]
            [round % 4 / 2 + rng.below(3) as usize % 2 * 2];
        let request = SearchRequest {
            query: word.into(),
            from,
            to,
            limit,
            offset,
            max_bytes: usize::MAX,
            count_up_to,
        };
        let got = index.search(&request).unwrap();
        let page: Vec<String> = expected.iter().skip(offset).take(limit).cloned().collect();
        let what = format!(
            "{word} {from:?}..{to:?} offset {offset} limit {limit} counting to {count_up_to:?}"
        );
        assert_eq!(patients(&got), page, "{what}");
        let real = expected.len() as u64;
        if got.total_exact {
            assert_eq!(got.total, real, "{what}");
        } else {
            let most = count_up_to.expect("only a bounded count stops early");
            assert!(got.total <= real, "{what}: {} counted of {real}", got.total);
            assert!(
                got.total >= most.max((offset + limit) as u64 + 1),
                "{what}: {} counted",
                got.total
            );
        }
        if count_up_to.is_none_or(|most| real < most) {
            assert!(got.total_exact, "{what}: {real} matches");
        }
        // Tantivy's own range query agrees with the time range.
        if let (Some(f), Some(t)) = (from, to) {
            let text = format!(
                "{} AND @timestamp:[{} TO {}}}",
                if word == "*" {
                    "*".to_owned()
                } else {
                    word.to_owned()
                },
                f.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            let theirs = index.search(&SearchRequest::newest(text, 1)).unwrap();
            assert_eq!(theirs.total, real, "{what}");
        }
    }
    store.shutdown().unwrap();
}

#[test]
fn a_bounded_count_of_a_common_word_stops_early_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Enough events that no first slice and the sixteen-fold next one can hold them all, however
    // merges have laid the segments out (a merged segment's runs need not be in time order, so
    // the first slice may find few matches and the next grows as far as it may).
    let all = fill(&store, 12_000);
    let request = SearchRequest {
        count_up_to: Some(100),
        ..SearchRequest::newest("common", 20)
    };
    let got = store.index().search(&request).unwrap();
    assert!(!got.total_exact);
    assert!(
        got.total >= 100 && got.total < all.len() as u64,
        "{}",
        got.total
    );
    assert_eq!(patients(&got), by_hand(&all, "common", None, None)[..20]);
    // Asking for every match counts every match.
    let exact = store
        .index()
        .search(&SearchRequest::newest("common", 20))
        .unwrap();
    assert!(exact.total_exact);
    assert_eq!(exact.total, all.len() as u64);
    store.shutdown().unwrap();
}

#[test]
fn times_beyond_what_nanoseconds_hold_are_the_earliest_and_latest_not_another_era() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
    let years = [
        (0, at(1, 1, 1)),
        (1, at(1900, 1, 1)),
        (2, at(2026, 11, 20)),
        (3, at(2100, 1, 1)),
        (4, at(9999, 12, 31)),
    ];
    let events: Vec<Event> = years
        .iter()
        .map(|(n, t)| event(*n, "u", "absurd", *t))
        .collect();
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 5);
    let found = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| {
        let request = SearchRequest {
            from,
            to,
            ..SearchRequest::newest("absurd", 10)
        };
        patients(&store.index().search(&request).unwrap())
    };
    let all = ["P4", "P3", "P2", "P1", "P0"];
    assert_eq!(found(None, None), all, "newest first, 9999 the newest");
    // Bounds beyond 1677..2262 wrapped round before: "from 1600" found nothing.
    assert_eq!(found(Some(at(1600, 1, 1)), Some(at(2999, 1, 1))), all);
    assert_eq!(found(Some(at(2026, 11, 25)), None), ["P4", "P3"]);
    assert_eq!(found(None, Some(at(2026, 11, 25))), ["P2", "P1", "P0"]);
    assert_eq!(found(Some(at(1800, 1, 1)), Some(at(2000, 1, 1))), ["P1"]);
    store.shutdown().unwrap();
}
