//! The store as one stage: batches in, searchable events out, across restarts.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use crate::*;

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_owned(),
        commit_interval_ms: 50,
        index_memory_budget_bytes: 64 << 20,
        ..StoreConfig::default()
    }
}

pub(crate) fn event(n: u32, user: &str, message: &str, at: DateTime<Utc>) -> Event {
    let mut e = Event::new("test", "syslog", format!("raw {n} {message}"), at);
    e.timestamp = at;
    e.user = Some(user.to_owned());
    e.patient = Some(format!("P{n}"));
    e.message = message.to_owned();
    e
}

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, hour, 0, 0).unwrap()
}

fn search(index: &EventIndex, query: &str) -> SearchResults {
    index
        .search(&SearchRequest {
            query: query.into(),
            from: None,
            to: None,
            limit: 100,
            offset: 0,
            max_bytes: crate::MAX_RESULT_BYTES,
            count_up_to: None,
        })
        .unwrap()
}

pub(crate) fn wait_for(index: &EventIndex, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while index.num_events() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events became searchable",
            index.num_events()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn open(dir: &std::path::Path) -> Store {
    Store::open(
        &config(dir),
        StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap()
}

#[test]
fn acknowledged_events_are_searchable_by_field_word_and_japanese() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = vec![
        event(
            1,
            "tanaka",
            "user=tanaka action=view 山田太郎 カルテ参照",
            at(1),
        ),
        event(2, "Suzuki", "login from reception", at(2)),
        event(3, "tanaka", "print prescription", at(3)),
        {
            let mut e = event(4, "n003", "4624 login", at(4));
            e.user_domain = Some("CLINIC".into());
            e.tags.push("syslog_parse_failure".into());
            e
        },
        // EHR exports write the account as they know it.
        event(5, r"CLINIC\n030", "record.view", at(5)),
        event(6, "n031@clinic.local", "record.view", at(6)),
    ];
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    assert_eq!(ack.blocking_recv().unwrap().unwrap(), 1..=6);
    wait_for(store.index(), 6);
    let index = store.index();

    let hits = search(index, "user.name:tanaka");
    assert_eq!(hits.total, 2);
    assert_eq!(
        hits.events[0].patient.as_deref(),
        Some("P3"),
        "newest first"
    );
    assert_eq!(
        search(index, "user.name:SUZUKI").total,
        1,
        "keywords ignore case"
    );
    assert_eq!(search(index, "山田").total, 1, "a bigram finds 山田太郎");
    assert_eq!(search(index, "\"山田太郎\"").total, 1);
    assert_eq!(search(index, "参照").total, 1);
    assert_eq!(search(index, "鈴木").total, 0);
    assert_eq!(
        search(index, "tanaka").total,
        2,
        "a plain word searches the user too"
    );
    assert_eq!(search(index, "P2").total, 1, "and the patient");
    assert_eq!(search(index, "tanaka print").total, 1, "words are ANDed");
    for query in [
        "tanaka AND NOT print",
        "tanaka NOT print",
        "tanaka -print",
        "(tanaka OR suzuki) AND NOT (print OR reception)",
        "tanaka AND (NOT print)",
    ] {
        assert_eq!(search(index, query).total, 1, "{query}");
    }
    assert_eq!(
        search(index, "user.name:suzuki OR NOT user.name:tanaka").total,
        4,
        "everything but tanaka's"
    );
    assert_eq!(search(index, "*").total, 6);
    for query in [
        r"CLINIC\n030",
        r"user.name:CLINIC\n030",
        "n031@clinic.local",
    ] {
        assert_eq!(search(index, query).total, 1, "{query}");
    }
    // Windows accounts as people type them, the domain as a field, a bare tag word.
    assert_eq!(search(index, "@timestamp:[* TO *]").total, 6);
    let err = index
        .search(&SearchRequest {
            query: "process.name:*".into(),
            from: None,
            to: None,
            limit: 10,
            offset: 0,
            max_bytes: crate::MAX_RESULT_BYTES,
            count_up_to: None,
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::BadQuery(_)), "{err}");
    for query in [
        r"CLINIC\n003",
        "n003@clinic.local",
        "n003",
        r"user.name:CLINIC\n003",
        "user.domain:clinic",
        "syslog_parse_failure",
    ] {
        assert_eq!(search(index, query).total, 1, "{query}");
    }
    let ranged = index
        .search(&SearchRequest {
            query: "tanaka".into(),
            from: Some(at(2)),
            to: Some(at(4)),
            limit: 10,
            offset: 0,
            max_bytes: crate::MAX_RESULT_BYTES,
            count_up_to: None,
        })
        .unwrap();
    assert_eq!(ranged.total, 1);
    assert_eq!(
        search(index, "@timestamp:[2026-11-20T02:00:00Z TO *]").total,
        5
    );
    store.shutdown().unwrap();
}

#[test]
fn bad_queries_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = |q: &str| match store.index().parse_query(q) {
        Err(StoreError::BadQuery(m)) => m,
        Err(other) => panic!("{q}: {other}"),
        Ok(_) => panic!("{q} parsed"),
    };
    let unknown = err("usr.name:tanaka");
    assert!(
        unknown.contains("unknown field `usr.name`") && unknown.contains("user.name"),
        "{unknown}"
    );
    assert!(err("user.name:(").contains("cannot parse"));
    assert!(err("@timestamp:[yesterday TO *]").contains("RFC 3339"));
    store.shutdown().unwrap();
}

#[test]
fn a_restart_replays_what_the_index_missed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let total = 3000u32;
    {
        let mut cfg = config(dir.path());
        // Never commit on time: only the log holds the events when the store is dropped.
        cfg.commit_interval_ms = 60_000;
        let store = Store::open(
            &cfg,
            StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
        )
        .unwrap();
        for chunk in 0..3 {
            let events = (0..1000)
                .map(|i| event(chunk * 1000 + i, "u", "replay me", at(1)))
                .collect();
            let (batch, ack) = Batch::with_ack(events);
            store.sender().blocking_send(batch).unwrap();
            ack.blocking_recv().unwrap().unwrap();
        }
        // Simulate a crash: leak the store so neither thread gets to commit.
        std::mem::forget(store);
    }
    // The leaked store still holds its locks in this process; a real crash frees them.
    std::fs::remove_file(dir.path().join("index/.tantivy-writer.lock")).ok();
    std::fs::remove_file(dir.path().join(".lock")).ok();
    let store = open(dir.path());
    wait_for(store.index(), u64::from(total));
    let hits = store
        .index()
        .search(&SearchRequest {
            query: "replay".into(),
            from: None,
            to: None,
            limit: 5000,
            offset: 0,
            max_bytes: crate::MAX_RESULT_BYTES,
            count_up_to: None,
        })
        .unwrap();
    assert_eq!(hits.total, u64::from(total));
    // Events of one instant come in the log's order, newest first, however they were indexed.
    let order: Vec<_> = hits
        .events
        .iter()
        .map(|e| e.patient.clone().unwrap())
        .collect();
    let expected: Vec<_> = (0..total).rev().map(|n| format!("P{n}")).collect();
    assert!(order == expected, "{:?}", &order[..10]);
    let mut ids: Vec<_> = hits.events.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total as usize, "no event twice");
    store.shutdown().unwrap();
    // And a clean restart replays nothing.
    let store = open(dir.path());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(store.index().num_events(), u64::from(total));
    store.shutdown().unwrap();
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let Err(err) = Store::open(
        &config(&file.join("data")),
        StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
    ) else {
        panic!("opened a data dir under a file");
    };
    assert!(
        err.to_string().contains("a-file/data` is not usable"),
        "{err}"
    );
}

#[test]
fn a_second_store_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let second = Store::open(
        &config(dir.path()),
        StoreMetrics::new(&prometheus::Registry::new()).unwrap(),
    );
    let Err(err) = second else {
        panic!("two writers")
    };
    assert!(
        err.to_string()
            .contains("in use by another running mimamori"),
        "{err}"
    );
    store.shutdown().unwrap();
}

#[test]
fn retention_removes_old_segments_from_log_and_index_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), b"a secret of more than sixteen bytes").unwrap();
    let cfg = StoreConfig {
        wal_segment_max_bytes: 8192,
        retention_days: 30,
        chain_key_file: Some(key.path().to_owned()),
        ..config(dir.path())
    };
    let metrics = || StoreMetrics::new(&prometheus::Registry::new()).unwrap();
    let long_ago = Utc::now() - chrono::Duration::days(40);
    {
        let store = Store::open(&cfg, metrics()).unwrap();
        // 300 events that arrived 40 days ago, then 100 today, in small batches so the log
        // rotates between them.
        for chunk in 0..40u32 {
            let events: Vec<Event> = (0..10)
                .map(|i| {
                    let n = chunk * 10 + i;
                    let mut e = event(n, "u", if n < 300 { "old" } else { "new" }, at(1));
                    if n < 300 {
                        e.ingested = long_ago;
                    }
                    e
                })
                .collect();
            let (batch, ack) = Batch::with_ack(events);
            store.sender().blocking_send(batch).unwrap();
            ack.blocking_recv().unwrap().unwrap();
        }
        wait_for(store.index(), 400);
        store.shutdown().unwrap();
    }
    let wal = dir.path().join("wal");
    let before = crate::wal::segments(&wal).unwrap().len();
    // Retention runs once the indexer has caught up after a start.
    let store = Store::open(&cfg, metrics()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while crate::retention::anchor(&wal).unwrap().is_none() {
        assert!(Instant::now() < deadline, "retention did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let anchor = crate::retention::anchor(&wal).unwrap().unwrap();
    // Whole segments go: the one that holds both old and new events stays.
    assert!(
        anchor.first_seq > 1 && anchor.first_seq <= 301,
        "{anchor:?}"
    );
    let kept = 400 - (anchor.first_seq - 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while search(store.index(), "*").total != kept {
        assert!(
            Instant::now() < deadline,
            "the index holds {} events, the kept log {kept}",
            search(store.index(), "*").total
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(search(store.index(), "new").total, 100, "new events stay");
    store.shutdown().unwrap();
    let after = crate::wal::segments(&wal).unwrap().len();
    assert!(after < before, "segments removed: {before} -> {after}");
    let anchor = crate::retention::anchor(&wal).unwrap().unwrap();
    assert!(
        anchor.first_seq > 1 && anchor.first_seq <= 301,
        "{anchor:?}"
    );
    let report = crate::verify::verify(
        dir.path(),
        Some(b"a secret of more than sixteen bytes"),
        &mut |_| {},
    )
    .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(report.signed, "the chain head is signed");
    assert_eq!(report.first_seq, Some(anchor.first_seq));
    // The wrong key is a finding.
    let report = crate::verify::verify(
        dir.path(),
        Some(b"another key, also long enough"),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::BadSignature)
    );
}

#[test]
fn histogram_and_value_counts_match_counting_by_hand_across_segments_and_bucket_edges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = at(0);
    let users = ["a", "b", "c", "d", "e"];
    let mut all = Vec::new();
    // Three batches (three index segments), one event every 7.5 minutes over 7.5 hours.
    for part in 0..3u32 {
        let events: Vec<Event> = (0..20u32)
            .map(|i| {
                let n = part + 3 * i;
                let t = base + chrono::Duration::seconds(450 * i64::from(n));
                // Users with counts that tie: ordering among equals is by value.
                let mut e = event(n, users[(n as usize * 7 / 3) % users.len()], "view", t);
                if n % 4 == 0 {
                    e.site = Some(format!("site{}", n % 3));
                }
                e
            })
            .collect();
        all.extend(events.clone());
        let (batch, ack) = Batch::with_ack(events);
        store.sender().blocking_send(batch).unwrap();
        ack.blocking_recv().unwrap().unwrap();
        wait_for(store.index(), u64::from(20 * (part + 1)));
    }
    // A range that starts on an event (15 minutes in) and ends on one (excluded), not on
    // the hour.
    let from = base + chrono::Duration::seconds(900);
    let to = base + chrono::Duration::seconds(900 + 450 * 40);
    let facets = store
        .index()
        .facets(&FacetRequest {
            query: "*".into(),
            from,
            to,
            fields: vec!["user.name".into(), "site".into()],
            size: 3,
            bucket_secs: 3600,
        })
        .unwrap();
    let inside: Vec<&Event> = all
        .iter()
        .filter(|e| e.timestamp >= from && e.timestamp < to)
        .collect();
    assert_eq!(facets.total, inside.len() as u64);
    assert_eq!(facets.total, 40);
    let expected: Vec<u64> = (0..5)
        .map(|h| {
            let start = from + chrono::Duration::hours(h);
            let end = start + chrono::Duration::hours(1);
            inside
                .iter()
                .filter(|e| e.timestamp >= start && e.timestamp < end)
                .count() as u64
        })
        .collect();
    let got: Vec<u64> = facets.histogram.iter().map(|(_, n)| *n).collect();
    assert_eq!(got, expected, "per hour from 00:15");
    assert_eq!(
        facets.histogram[0].0, from,
        "the first bar starts at `from`"
    );
    let count = |value: fn(&Event) -> Option<String>| {
        let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
        for e in &inside {
            if let Some(v) = value(e) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut counts: Vec<FacetValue> = counts
            .into_iter()
            .map(|(value, count)| FacetValue { value, count })
            .collect();
        counts.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
        counts.truncate(3);
        counts
    };
    assert_eq!(facets.fields[0].1, count(|e| e.user.clone()));
    assert_eq!(facets.fields[1].1, count(|e| e.site.clone()));
}

#[test]
fn value_counts_name_only_the_most_frequent_values_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // One batch (one segment): a four times, b three, c twice, d once.
    let events: Vec<Event> = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "d"]
        .iter()
        .enumerate()
        .map(|(n, user)| event(n as u32, user, "view", at(1)))
        .collect();
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 10);
    let searcher = store.index().reader.searcher();
    let count = |per_segment: usize| {
        let collector = crate::value_counts::ValueCounts {
            fields: vec!["user.name".into()],
            per_segment,
        };
        let mut counts: Vec<(String, u64)> = searcher
            .search(&tantivy::query::AllQuery, &collector)
            .unwrap()
            .remove(0)
            .into_iter()
            .collect();
        counts.sort();
        counts
    };
    let named = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(v, n)| ((*v).to_owned(), *n)).collect()
    };
    assert_eq!(count(2), named(&[("a", 4), ("b", 3)]));
    assert_eq!(count(10), named(&[("a", 4), ("b", 3), ("c", 2), ("d", 1)]));
}

#[test]
fn facets_count_values_and_hours_with_the_query_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut events: Vec<Event> = (0..30)
        .map(|n| {
            event(
                n,
                if n % 3 == 0 { "Suzuki" } else { "tanaka" },
                "view",
                at(n % 5),
            )
        })
        .collect();
    events[0].site = Some("本院".into());
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 30);
    let request = |query: &str, from: u32, to: u32| FacetRequest {
        query: query.into(),
        from: at(from),
        to: at(to),
        fields: vec!["user.name".into(), "site".into()],
        size: 10,
        bucket_secs: 3600,
    };
    let facets = store.index().facets(&request("*", 0, 5)).unwrap();
    assert_eq!(facets.total, 30);
    let users = &facets.fields[0].1;
    assert_eq!(
        users[0],
        FacetValue {
            value: "tanaka".into(),
            count: 20
        }
    );
    assert_eq!(
        users[1],
        FacetValue {
            value: "Suzuki".into(),
            count: 10
        },
        "as written"
    );
    assert_eq!(
        facets.fields[1].1,
        vec![FacetValue {
            value: "本院".into(),
            count: 1
        }]
    );
    let hours: Vec<(u32, u64)> = facets
        .histogram
        .iter()
        .map(|(t, n)| (chrono::Timelike::hour(t), *n))
        .collect();
    assert_eq!(
        hours,
        vec![(0, 6), (1, 6), (2, 6), (3, 6), (4, 6)],
        "every hour of the range"
    );

    // The range and the query narrow the counts; empty buckets at the ends are kept.
    let facets = store
        .index()
        .facets(&request("user.name:suzuki", 1, 8))
        .unwrap();
    assert_eq!(facets.total, 8);
    assert_eq!(facets.histogram.len(), 7);
    assert_eq!(facets.histogram.last().unwrap().1, 0);
    assert_eq!(facets.histogram.iter().map(|b| b.1).sum::<u64>(), 8);

    let bad = FacetRequest {
        fields: vec!["message".into()],
        ..request("*", 0, 5)
    };
    assert!(matches!(
        store.index().facets(&bad),
        Err(StoreError::BadQuery(_))
    ));
    assert_eq!(
        bucket_width(at(0), at(0) + chrono::Duration::days(365), 3600),
        86400
    );
}

#[test]
fn ids_are_matched_whole_by_the_duplicate_check_and_by_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let held = "0123456789abcdef0000000000000001";
    let twin = "0123456789abcdef0000000000000002";
    let mut e = event(1, "tanaka", "record.view", at(1));
    e.id = EventId::from_hex(held.into());
    let (batch, ack) = Batch::with_ack(vec![e]);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 1);
    let index = store.index();
    assert!(index.contains_id(held));
    assert!(
        !index.contains_id(twin),
        "the same first 64 bits, another event"
    );
    assert!(!index.contains_id("ffff"));
    // A search by id finds the event by its whole id, as shown everywhere, and only it.
    let hits = search(index, &format!("event.id:{held}"));
    assert_eq!(hits.total, 1);
    assert_eq!(hits.events[0].id.as_str(), held);
    assert_eq!(search(index, &format!("event.id:{twin}")).total, 0);
    assert_eq!(
        search(index, &format!("tanaka AND NOT event.id:{twin}")).total,
        1
    );
}

/// Two ids whose `_id` column values are equal: the column holds 32 bits of each.
fn ids_sharing_a_key() -> (String, String) {
    let mut seen = std::collections::HashMap::new();
    for n in 0u64.. {
        let id = format!(
            "{:032x}",
            u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        );
        let key = crate::tokenizer::id_key(&crate::tokenizer::id_term(&id));
        if let Some(other) = seen.insert(key, id.clone()) {
            return (other, id);
        }
    }
    unreachable!()
}

#[test]
fn a_listeners_events_are_found_by_id_through_the_column_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (held, twin) = ids_sharing_a_key();
    let mut events = Vec::new();
    for (n, id) in [(1, held.as_str()), (2, "00000000000000000000000000000abc")] {
        let mut e = event(n, "tanaka", "record.view", at(n));
        e.id = EventId::from_hex(id.into());
        e.log_source = Some(format!("udp://10.0.0.{n}:514"));
        events.push(e);
    }
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 2);
    let index = store.index();
    // No id terms for what a listener received: the duplicate check of imports never asks.
    assert!(!index.contains_id(&held));
    let hits = search(index, &format!("event.id:{}", held.to_uppercase()));
    assert_eq!(hits.total, 1);
    assert_eq!(hits.events[0].id.as_str(), held);
    // The twin has the same 32 bits in the column: the log tells them apart, everywhere.
    assert_eq!(search(index, &format!("event.id:{twin}")).total, 0);
    assert_eq!(
        search(index, &format!("tanaka AND NOT event.id:{twin}")).total,
        2
    );
    assert_eq!(
        search(index, &format!("tanaka AND NOT event.id:{held}")).total,
        1
    );
    // An alert's evidence: several ids in one query.
    let evidence =
        format!("event.id:{held} OR event.id:{twin} OR event.id:00000000000000000000000000000abc");
    assert_eq!(search(index, &evidence).total, 2);
    assert_eq!(
        search(index, &format!("({evidence}) AND event.id:{held}")).total,
        1
    );
    for odd in [
        format!("event.id:{held}^2"),
        format!("tanaka OR (event.id:{held} OR event.id:{twin})^0.5"),
    ] {
        assert!(
            matches!(index.parse_query(&odd), Err(StoreError::BadQuery(m)) if m.contains("whole id")),
            "{odd}"
        );
    }
}

#[test]
fn an_id_whose_event_the_log_cannot_give_back_counts_as_found_and_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events: Vec<Event> = (1..=3)
        .map(|n| {
            let mut e = event(n, "tanaka", &format!("damaged-{n}"), at(n));
            e.log_source = Some("tcp://10.0.0.9:40000".into());
            e
        })
        .collect();
    let id = events[1].id.as_str().to_owned();
    let (batch, ack) = Batch::with_ack(events);
    store.sender().blocking_send(batch).unwrap();
    ack.blocking_recv().unwrap().unwrap();
    wait_for(store.index(), 3);
    // One byte of the second event's record, in the plain segment being written.
    let segment = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = memchr::memmem::find(&bytes, b"damaged-2").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let index = store.index();
    let hits = search(index, &format!("event.id:{id}"));
    assert_eq!(
        (hits.total, hits.unreadable),
        (1, 1),
        "found, and said unreadable"
    );
    assert_eq!(
        search(index, &format!("tanaka AND NOT event.id:{id}")).total,
        2
    );
}
