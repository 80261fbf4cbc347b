//! The log against faults: model tests with garbage tails, flipped bytes, failed writes.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;

use super::reader::WalDamage;
use super::*;

fn read_all(dir: &Path, from: u64, until: u64) -> (Vec<(u64, Vec<u8>)>, Vec<WalDamage>) {
    let mut reader = WalReader::new(dir, from);
    let (mut out, mut damage) = (Vec::new(), Vec::new());
    loop {
        match reader.next(until).expect("readable") {
            WalRead::Record(seq, payload) => out.push((seq, payload)),
            WalRead::Damaged(d) => damage.push(d),
            WalRead::CaughtUp => return (out, damage),
        }
    }
}

fn write(dir: &Path, segment: u64, n: u32) -> WalWriter {
    let (mut wal, _) = WalWriter::open(dir, segment, 0).unwrap();
    for i in 0..n {
        wal.append(format!("record-{i:05}-{}", "x".repeat(40)).as_bytes())
            .unwrap();
        if i % 7 == 6 {
            wal.sync().unwrap();
            wal.rotate_if_full().unwrap();
        }
    }
    wal.sync().unwrap();
    wal
}

#[test]
fn appends_rotate_and_read_back_from_any_point() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path(), 300, 50));
    assert!(
        segments(dir.path()).unwrap().len() > 5,
        "small segments rotate"
    );
    let (all, damage) = read_all(dir.path(), 1, 50);
    assert!(damage.is_empty());
    assert_eq!(all.len(), 50);
    assert!(all[49].1.starts_with(b"record-00049"));
    let (tail, _) = read_all(dir.path(), 37, 40);
    assert_eq!(
        tail.iter().map(|r| r.0).collect::<Vec<_>>(),
        [37, 38, 39, 40]
    );
}

#[test]
fn one_flipped_byte_costs_one_record_in_any_segment_and_nothing_is_cut() {
    for which in [0usize, 1, 2] {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 1000, 60));
        let segs = segments(dir.path()).unwrap();
        let path = &segs[which.min(segs.len() - 1)].1;
        let mut bytes = fs::read(path).unwrap();
        let len_before = bytes.len();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(path, &bytes).unwrap();
        // Reopening for writing cuts nothing acknowledged, even in the active segment.
        let (mut wal, opened) = WalWriter::open(dir.path(), 1000, 0).unwrap();
        assert_eq!(opened.truncated_bytes, 0);
        assert_eq!(opened.next_seq, 61);
        wal.append(b"after").unwrap();
        wal.sync().unwrap();
        assert!(fs::metadata(path).unwrap().len() >= len_before as u64);
        let (all, damage) = read_all(dir.path(), 1, 61);
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].num_lost(), 1, "{}", damage[0]);
        assert_eq!(all.len(), 60, "61 records, one lost");
        assert_eq!(all.last().unwrap().1, b"after");
    }
}

#[test]
fn an_incomplete_tail_is_kept_aside_then_cut_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path(), 1 << 20, 2));
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[0xF7, 0x4D, 0x52, 0x1E, 200, 0, 0, 0, 3])
        .unwrap(); // half a record
    drop(file);
    let (mut wal, opened) = WalWriter::open(dir.path(), 1 << 20, 0).unwrap();
    assert_eq!((opened.next_seq, opened.truncated_bytes), (3, 9));
    let kept = fs::read(opened.quarantined.unwrap()).unwrap();
    assert_eq!(kept.len(), 9, "the cut bytes are kept");
    wal.append(b"three").unwrap();
    wal.sync().unwrap();
    let (all, damage) = read_all(dir.path(), 1, 3);
    assert!(damage.is_empty());
    assert_eq!(all[2], (3, b"three".to_vec()));
}

#[test]
fn numbering_never_goes_below_what_the_index_holds() {
    let dir = tempfile::tempdir().unwrap();
    drop(write(dir.path(), 1 << 20, 5));
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 3).unwrap(); // the last record damaged at the very end
    let (wal, opened) = WalWriter::open(dir.path(), 1 << 20, 5).unwrap();
    assert_eq!(opened.skipped_to, Some(6));
    assert_eq!(
        wal.next_seq(),
        6,
        "record 5 was acknowledged; its number is not reused"
    );
}

#[test]
fn a_failed_write_is_forgotten_and_the_log_goes_on_from_the_last_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = WalWriter::open(dir.path(), 1 << 20, 0).unwrap();
    wal.append(b"one").unwrap();
    wal.sync().unwrap();
    wal.append(b"lost-a").unwrap();
    wal.append(b"lost-b").unwrap();
    wal.write_out().unwrap(); // on disk but never synced: as a failed fsync leaves it
    wal.recover().unwrap();
    assert_eq!(wal.next_seq(), 2);
    wal.append(b"two").unwrap();
    wal.sync().unwrap();
    let (all, damage) = read_all(dir.path(), 1, 2);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(all, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
}

#[test]
fn a_record_over_the_limit_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = WalWriter::open(dir.path(), 1 << 20, 0).unwrap();
    let big = vec![b'x'; format::MAX_RECORD_BYTES + 1];
    assert!(matches!(wal.append(&big), Err(StoreError::TooLarge(_))));
}

#[test]
fn the_first_format_is_migrated_with_every_number_kept() {
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().join("wal");
    fs::create_dir_all(&wal).unwrap();
    let mut bytes = Vec::new();
    for seq in 1..=3u64 {
        let payload = format!("old {seq}");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seq.to_le_bytes());
        crc.update(payload.as_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc.finalize().to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend_from_slice(payload.as_bytes());
    }
    fs::write(wal.join(segment_name(1)), &bytes).unwrap();
    assert_eq!(migrate_v1(data.path(), 1 << 20).unwrap(), 3);
    let (all, damage) = read_all(&wal, 1, u64::MAX);
    assert!(damage.is_empty());
    assert_eq!(all[2], (3, b"old 3".to_vec()));
    assert!(
        data.path().join("wal-v1").join(segment_name(1)).exists(),
        "the old log is kept"
    );
    assert_eq!(migrate_v1(data.path(), 1 << 20).unwrap(), 0, "once");
}

#[test]
fn sealed_segments_read_back_and_damage_costs_one_block() {
    let dir = tempfile::tempdir().unwrap();
    let payload = |i: u32| {
        format!(
            "{{\"event.id\":\"{i:032x}\",\"@timestamp\":\"2026-11-24T10:{:02}:00Z\",\"event.dataset\":\"syslog\",\
             \"event.action\":\"record.view\",\"user.name\":\"tanaka\",\"patient.id\":\"P{i}\",\
             \"message\":\"user=tanaka action=VIEW_CHART patient=P{i}\",\
             \"event.original\":\"<134>1 2026-11-24T10:00:00Z pc1 ehr - - - user=tanaka action=VIEW_CHART patient=P{i}\"}}",
            i % 60
        )
    };
    let (mut wal, _) = WalWriter::open(dir.path(), 256 << 10, 0).unwrap();
    for i in 0..6000u32 {
        wal.append(payload(i).as_bytes()).unwrap();
        if i % 100 == 99 {
            wal.sync().unwrap();
            wal.rotate_if_full().unwrap();
        }
    }
    wal.sync().unwrap();
    let plain = disk_bytes(dir.path()).unwrap();
    let saved = seal_committed(dir.path(), 6000).unwrap();
    assert!(
        saved > plain / 2,
        "compressed: {saved} of {plain} bytes saved"
    );
    let segs = segments(dir.path()).unwrap();
    assert!(segs[0].1.extension().unwrap() == "walz");
    assert!(
        segs.last().unwrap().1.extension().unwrap() == "wal",
        "the active one stays plain"
    );
    let (all, damage) = read_all(dir.path(), 1, 6000);
    assert!(damage.is_empty());
    assert_eq!(all.len(), 6000);
    assert_eq!(all[4321], (4322, payload(4321).into_bytes()));
    // The writer reopens on a log whose older segments are sealed.
    drop(wal);
    let (wal, opened) = WalWriter::open(dir.path(), 256 << 10, 0).unwrap();
    assert_eq!((opened.next_seq, opened.truncated_bytes), (6001, 0));
    drop(wal);

    // A log that ends in a sealed segment (the plain one after it lost) is never cut: the
    // writer goes on in a new segment, on the same chain.
    let copy = tempfile::tempdir().unwrap();
    let last_sealed = segs
        .iter()
        .rposition(|(_, p)| p.extension().unwrap() == "walz")
        .unwrap();
    for (_, p) in &segs[..=last_sealed] {
        fs::copy(p, copy.path().join(p.file_name().unwrap())).unwrap();
    }
    let before = fs::read(&segs[last_sealed].1).unwrap();
    let (mut wal, opened) = WalWriter::open(copy.path(), 256 << 10, 0).unwrap();
    let next = segs[last_sealed + 1].0;
    assert_eq!((opened.next_seq, opened.truncated_bytes), (next, 0));
    wal.append(b"after the sealed end").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let copied_last = copy.path().join(segs[last_sealed].1.file_name().unwrap());
    assert_eq!(
        fs::read(copied_last).unwrap(),
        before,
        "the sealed segment is untouched"
    );
    let (all, damage) = read_all(copy.path(), 1, next);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(all.len() as u64, next);
    assert_eq!(all.last().unwrap().1, b"after the sealed end");

    let sealed = &segs[0].1;
    let mut bytes = fs::read(sealed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(sealed, &bytes).unwrap();
    let (all, damage) = read_all(dir.path(), 1, 6000);
    assert_eq!(damage.len(), 1, "{damage:?}");
    let lost = damage[0].num_lost();
    assert!(
        lost > 0 && lost < 200,
        "one 64 KiB block lost: {}",
        damage[0]
    );
    assert_eq!(all.len() as u64, 6000 - lost);
}

proptest! {
    // Model test: whatever is appended and synced reads back identically after a reopen,
    // whatever garbage a crash left after it.
    #[test]
    fn synced_records_survive_reopen(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..40),
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
        segment in 32u64..512,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalWriter::open(dir.path(), segment, 0).unwrap();
        for p in &payloads {
            wal.append(p).unwrap();
            wal.sync().unwrap();
            wal.rotate_if_full().unwrap();
        }
        drop(wal);
        let (_, last) = segments(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&last).unwrap();
        file.write_all(&garbage).unwrap();
        drop(file);
        let (wal, opened) = WalWriter::open(dir.path(), segment, 0).unwrap();
        prop_assert_eq!(opened.next_seq, payloads.len() as u64 + 1);
        prop_assert_eq!(wal.next_seq(), payloads.len() as u64 + 1);
        let (back, damage) = read_all(dir.path(), 1, payloads.len() as u64);
        prop_assert!(damage.is_empty());
        let back: Vec<Vec<u8>> = back.into_iter().map(|r| r.1).collect();
        prop_assert_eq!(back, payloads);
    }
}

fn sealed_log(dir: &Path, n: u32) -> impl Fn(u32) -> Vec<u8> {
    let payload = |i: u32| {
        format!("{{\"n\":{i},\"user.name\":\"tanaka\",\"patient.id\":\"P{i}\"}}").into_bytes()
    };
    let (mut wal, _) = WalWriter::open(dir, 64 << 10, 0).unwrap();
    for i in 0..n {
        wal.append(&payload(i)).unwrap();
        if i % 100 == 99 {
            wal.sync().unwrap();
            wal.rotate_if_full().unwrap();
        }
    }
    wal.sync().unwrap();
    seal_committed(dir, u64::from(n)).unwrap();
    payload
}

#[test]
fn records_are_read_by_number_from_sealed_and_plain_segments() {
    let dir = tempfile::tempdir().unwrap();
    let payload = sealed_log(dir.path(), 5000);
    let segs = segments(dir.path()).unwrap();
    let sealed = segs
        .iter()
        .filter(|(_, p)| p.extension().unwrap() == "walz");
    assert!(sealed.count() >= 2, "{segs:?}");
    let lookup = LogLookup::new(dir.path());
    let wanted = [4999u64, 1, 2500, 17, 5000, 4998, 3333, 5001, 0];
    let found = lookup.payloads(&wanted).unwrap();
    for (seq, got) in wanted.iter().zip(&found) {
        let expected = (1..=5000).contains(seq).then(|| payload(*seq as u32 - 1));
        assert_eq!(got, &expected, "record {seq}");
    }
    // Sealing the plain segment under a lookup that mapped it: the next lookup finds the
    // records in the sealed file.
    let (mut wal, _) = WalWriter::open(dir.path(), 64 << 10, 0).unwrap();
    for i in 5000..5400 {
        wal.append(&payload(i)).unwrap();
        wal.sync().unwrap();
        wal.rotate_if_full().unwrap();
    }
    drop(wal);
    seal_committed(dir.path(), 5400).unwrap();
    let found = lookup.payloads(&[4999, 5400, 5350]).unwrap();
    assert_eq!(found[0], Some(payload(4998)));
    assert_eq!(found[1], Some(payload(5399)));
    assert_eq!(found[2], Some(payload(5349)));
    // A damaged block costs its own records only, also when the damage is in the header's
    // first record number.
    let first = &segments(dir.path()).unwrap()[0].1;
    let mut bytes = fs::read(first).unwrap();
    bytes[16 + 92 + 10] ^= 0x55;
    fs::write(first, &bytes).unwrap();
    let lookup = LogLookup::new(dir.path());
    let found = lookup.payloads(&[1, 4000]).unwrap();
    assert_eq!(found, vec![None, Some(payload(3999))]);
    let second = &segments(dir.path()).unwrap()[1].1;
    let mut bytes = fs::read(second).unwrap();
    let first_seq = u64::from_le_bytes(bytes[32..40].try_into().unwrap());
    bytes[32..40].copy_from_slice(&(first_seq + 1).to_le_bytes());
    fs::write(second, &bytes).unwrap();
    let lookup = LogLookup::new(dir.path());
    let found = lookup.payloads(&[first_seq, first_seq + 1]).unwrap();
    assert_eq!(
        found,
        vec![None, None],
        "no record is read under another number"
    );
}

#[test]
fn a_record_changed_inside_a_sealed_block_breaks_the_chain_at_the_blocks_end() {
    let dir = tempfile::tempdir().unwrap();
    let _payload = sealed_log(dir.path(), 3000);
    let path = segments(dir.path()).unwrap()[0].1.clone();
    assert_eq!(path.extension().unwrap(), "walz");
    let bytes = fs::read(&path).unwrap();
    let (head, block) = bytes.split_at(16);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let (compressed, raw_len) = (u32_at(block, 4) as usize, u32_at(block, 8) as usize);
    let (first, count) = (
        u64::from_le_bytes(block[16..24].try_into().unwrap()),
        u64::from(u32_at(block, 24)),
    );
    let mut raw = zstd::bulk::decompress(&block[92..92 + compressed], raw_len).unwrap();
    // Someone rewrites a record in the middle of the block, with a fresh CRC.
    let middle = raw.len() / 2;
    let at = middle
        + raw[middle..]
            .windows(6)
            .position(|w| w == b"tanaka")
            .unwrap();
    raw[at] = b'T';
    let recompressed = zstd::bulk::compress(&raw, 3).unwrap();
    let mut forged = head.to_vec();
    forged.extend_from_slice(&block[0..4]);
    forged.extend_from_slice(&(recompressed.len() as u32).to_le_bytes());
    forged.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&block[16..92]);
    crc.update(&recompressed);
    forged.extend_from_slice(&crc.finalize().to_le_bytes());
    forged.extend_from_slice(&block[16..92]);
    forged.extend_from_slice(&recompressed);
    forged.extend_from_slice(&block[92 + compressed..]);
    fs::write(&path, forged).unwrap();

    let mut reader = WalReader::new(dir.path(), 1);
    let mut previous = format::GENESIS;
    let mut broken = Vec::new();
    loop {
        match reader.next(3000).unwrap() {
            WalRead::Record(seq, payload) => {
                let stored = reader.chain().unwrap();
                if format::next_chain(&previous, seq, &payload) != stored {
                    broken.push(seq);
                }
                previous = stored;
            }
            WalRead::Damaged(d) => panic!("a forged block reads as good data: {d}"),
            WalRead::CaughtUp => break,
        }
    }
    assert_eq!(broken, vec![first + count - 1], "the block's last record");
}

#[test]
fn a_segment_past_its_age_is_rotated_when_not_full_and_then_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = WalWriter::open(dir.path(), 64 << 20, 0).unwrap();
    for i in 0..10u32 {
        wal.append(format!("record {i}").as_bytes()).unwrap();
    }
    wal.sync().unwrap();
    wal.rotate_if_full().unwrap();
    assert_eq!(
        segments(dir.path()).unwrap().len(),
        1,
        "young and far from full"
    );
    wal.set_max_segment_age(std::time::Duration::ZERO);
    wal.rotate_if_full().unwrap();
    wal.rotate_if_full().unwrap();
    assert_eq!(
        segments(dir.path()).unwrap().len(),
        2,
        "rotated once: an empty segment is never rotated"
    );
    wal.append(b"record 10").unwrap();
    wal.sync().unwrap();
    seal_committed(dir.path(), 11).unwrap();
    let segs = segments(dir.path()).unwrap();
    assert_eq!(segs[0].1.extension().unwrap(), "walz");
    let (all, damage) = read_all(dir.path(), 1, 11);
    assert!(damage.is_empty());
    assert_eq!(all.len(), 11);
}

#[test]
fn a_damaged_record_in_the_plain_segment_costs_itself_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = WalWriter::open(dir.path(), 64 << 20, 0).unwrap();
    for i in 0..300u32 {
        wal.append(format!("plain record {i:04}").as_bytes())
            .unwrap();
    }
    wal.sync().unwrap();
    let path = &segments(dir.path()).unwrap()[0].1;
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(17)
        .position(|w| w == b"plain record 0150")
        .unwrap();
    bytes[at + 3] ^= 0x20;
    fs::write(path, &bytes).unwrap();
    let lookup = LogLookup::new(dir.path());
    let wanted: Vec<u64> = (140..=160).collect();
    let found = lookup.payloads(&wanted).unwrap();
    for (seq, got) in wanted.iter().zip(&found) {
        if *seq == 151 {
            assert_eq!(got, &None, "the damaged record");
        } else {
            assert_eq!(
                got.as_deref(),
                Some(format!("plain record {:04}", seq - 1).as_bytes())
            );
        }
    }
}

#[test]
fn a_plain_segment_left_beside_its_sealed_copy_is_sealed_again_over_it() {
    // A crash between writing the `.walz` and removing the `.wal` leaves both; readers use the
    // plain one, so a `.walz` changed meanwhile would go unseen until the plain one went.
    let dir = tempfile::tempdir().unwrap();
    let _wal = write(dir.path(), 16 << 10, 3000);
    let (_, first) = segments(dir.path()).unwrap()[0].clone();
    let kept = std::fs::read(&first).unwrap();
    seal_committed(dir.path(), 3000).unwrap();
    let sealed = sealed::sealed_path(&first);
    std::fs::write(&first, &kept).unwrap();
    let mut forged = std::fs::read(&sealed).unwrap();
    let at = forged.len() / 2;
    forged[at] ^= 0x55;
    std::fs::write(&sealed, &forged).unwrap();
    // The start-up's seal pass.
    seal_committed(dir.path(), 3000).unwrap();
    assert!(!first.exists(), "the plain copy is gone");
    assert_ne!(
        std::fs::read(&sealed).unwrap(),
        forged,
        "sealed again from the plain one"
    );
    let (all, damage) = read_all(dir.path(), 1, 3000);
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(all.len(), 3000);
}
