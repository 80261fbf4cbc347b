//! `mimamori import` as a clinic's IT vendor runs it: the real sample files, re-imports, and
//! every kind of bad input the issue lists.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, samples};

fn import(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("MIMAMORI_DATA_DIR", data)
        .arg("import")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A number from the summary line that starts with `name`.
fn count(out: &Output, name: &str) -> u64 {
    stdout(out)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no `{name}` in the summary:\n{}", text(out)))
}

fn search(data: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .env("MIMAMORI_DATA_DIR", data)
        .args([
            "search",
            query,
            "--from",
            "1970-01-01",
            "--limit",
            "100000",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "search {query}: {}", text(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Records kept from ehr/, syslog/ and windows/ under the default noise filter: the sum of the
/// per-file counts checked in ingest's sample tests.
const SAMPLE_EVENTS: u64 = 4825;
/// Two telegraf files hold the same two messages, framed differently: the same bytes from the
/// same kind of source are the same event, stored once.
const SAME_MESSAGES_IN_TWO_FILES: u64 = 2;

#[test]
fn the_samples_import_once_and_a_reimport_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = samples();
    let paths: Vec<String> = ["ehr", "syslog", "windows"]
        .iter()
        .map(|d| s.join(d).display().to_string())
        .collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let first = import(&data, &args);
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(
        count(&first, "accepted"),
        SAMPLE_EVENTS - SAME_MESSAGES_IN_TWO_FILES,
        "{}",
        text(&first)
    );
    assert_eq!(count(&first, "duplicates"), SAME_MESSAGES_IN_TWO_FILES);
    assert_eq!(count(&first, "rejected"), 0);
    assert!(
        count(&first, "filtered") > 1000,
        "machine and service accounts are counted"
    );
    assert!(count(&first, "gaps") >= 5, "{}", text(&first));
    assert!(search(&data, "IEUser").len() >= 3);
    assert_eq!(search(&data, "user.name:asaip").len(), 1);
    let gaps = search(&data, "event.action:sequence_gap");
    assert!(gaps.iter().any(|g| {
        g["message"]
            .as_str()
            .unwrap()
            .contains("missing from IE8Win7/Security")
    }));

    let second = import(&data, &args);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(count(&second, "accepted"), 0, "{}", text(&second));
    assert_eq!(count(&second, "duplicates"), SAMPLE_EVENTS);
    assert_eq!(
        search(&data, "event.action:sequence_gap").len(),
        gaps.len(),
        "gaps are not stored twice"
    );

    // The same file under another name, gzip-compressed: still nothing new.
    let gz = dir.path().join("copy.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(s.join("syslog/rfc3164/loghub_Linux_2k.log")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    let third = import(&data, &[gz.to_str().unwrap()]);
    assert!(third.status.success(), "{}", text(&third));
    assert_eq!(count(&third, "accepted"), 0);
    assert_eq!(count(&third, "duplicates"), 2000);
}

#[test]
fn a_cut_off_evtx_and_one_with_a_corrupt_chunk_keep_what_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let whole = std::fs::read(samples().join("windows/evtx/Security_with_size_t.evtx")).unwrap();
    let truncated = dir.path().join("truncated.evtx");
    std::fs::write(&truncated, &whole[..4096 + 3 * 65536 + 1000]).unwrap();
    let out = import(&data, &[truncated.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "rejects make exit 3: {}",
        text(&out)
    );
    assert!(text(&out).contains("cut off"), "{}", text(&out));
    let read = count(&out, "read");
    assert!(
        read > 50 && read < 636,
        "the first three chunks are read: {read}"
    );

    let mut corrupt = whole.clone();
    let chunk2 = 4096 + 65536;
    for b in &mut corrupt[chunk2..chunk2 + 4096] {
        *b = 0xA5;
    }
    let path = dir.path().join("corrupt.evtx");
    std::fs::write(&path, &corrupt).unwrap();
    let data2 = dir.path().join("data2");
    let out = import(&data2, &["--allow-rejects", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(count(&out, "rejected") >= 1, "{}", text(&out));
    let read = count(&out, "read");
    assert!(
        read > 500 && read < 636 + 10,
        "the other chunks are read: {}",
        text(&out)
    );
}

#[test]
fn hostile_and_broken_files_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_owned()
    };
    // Entity expansion.
    let bomb = write(
        "bomb.xml",
        br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Event xmlns="http://schemas.microsoft.com/win/2004/08/events/event"><System><EventID>4624</EventID></System><EventData><Data Name="TargetUserName">&lol1;</Data></EventData></Event>"#,
    );
    let out = import(&data, &[&bomb]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("DOCTYPE"), "{}", text(&out));
    assert_eq!(count(&out, "accepted"), 0);

    // A CSV without a time column.
    let no_time = write(
        "no-time.csv",
        "利用者ID,患者ID,操作\nn001,P1,参照\n".as_bytes(),
    );
    let out = import(&data, &[&no_time]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).contains("no time column") && text(&out).contains("日時"),
        "{}",
        text(&out)
    );

    // FHIR of the wrong resourceType.
    let patient = write(
        "patient.json",
        br#"{"resourceType": "Patient", "id": "p1"}"#,
    );
    let out = import(&data, &[&patient]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("\"Patient\""), "{}", text(&out));

    // A gzip file cut short: what came before the cut is kept, the cut is reported.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(samples().join("syslog/rfc3164/loghub_Linux_2k.log")).unwrap())
        .unwrap();
    let gz = enc.finish().unwrap();
    let cut = write("cut.log.gz", &gz[..gz.len() / 2]);
    let out = import(&data, &[&cut]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("input ends in error"), "{}", text(&out));
    let accepted = count(&out, "accepted");
    assert!(accepted > 100 && accepted < 2000, "{accepted}");

    // Exit 2 for a format that does not exist, naming the ones that do.
    let out = import(&data, &["--format", "pdf", &cut]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("ehr-csv"), "{}", text(&out));
}

#[test]
fn ehr_csv_in_shift_jis_with_ragged_rows_and_a_line_in_another_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rows = "日時,利用者ID,利用者名,職種,端末,IPアドレス,患者ID,操作,件数,結果,種別\n\
                2026/11/24 09:15:02,n002,山田花子,看護師,MAIN-PC03,10.10.1.23,P000123,カルテ参照,1,成功,診療録\n\
                2026/11/24 22:40,n002,山田花子,看護師,MAIN-PC03,10.10.1.23,,ログイン,,成功,\n\
                2026/11/24 12:00:00,r001,受付一郎,受付,MAIN-PC01,10.10.1.11,P000124,CSV出力,250,成功,患者基本情報\n\
                2026/11/24 12:01:00,r001,受付一郎,受付\n\
                昨日の朝,r001,受付一郎,受付,MAIN-PC01,10.10.1.11,P000125,参照,1,成功,予約\n";
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(rows);
    assert!(!bad);
    let path = dir.path().join("ehr-export.csv");
    std::fs::write(&path, &sjis).unwrap();
    let out = import(&data, &[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(count(&out, "accepted"), 4, "{}", text(&out));
    assert_eq!(count(&out, "rejected"), 1);
    assert!(
        text(&out).contains("line 6") && text(&out).contains("昨日の朝"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("csv_ragged_row 1"), "{}", text(&out));

    let view = search(&data, "user.name:n002 AND event.action:record.view");
    assert_eq!(view.len(), 1);
    let v = &view[0];
    assert_eq!(v["@timestamp"], "2026-11-24T00:15:02Z");
    assert_eq!(v["patient.id"], "P000123");
    assert_eq!(v["source.ip"], "10.10.1.23");
    assert_eq!(v["host.name"], "MAIN-PC03");
    assert_eq!(v["user.roles"][0], "看護師");
    assert_eq!(v["record.category"], "clinical_notes");
    assert_eq!(v["event.code"], "カルテ参照");
    let export = &search(&data, "event.action:record.export")[0];
    assert_eq!(export["record.count"], 250);
    assert_eq!(export["record.category"], "demographics");
    assert_eq!(
        search(&data, "山田").len(),
        2,
        "Japanese names are searchable"
    );
    let login = &search(&data, "event.action:login")[0];
    assert_eq!(
        login["@timestamp"], "2026-11-24T13:40:00Z",
        "22:40 without seconds, Tokyo time"
    );

    // A UTF-8 export with one row pasted in from a Shift_JIS file is still read, and flagged.
    let mut mixed = "日時,利用者ID,操作\n2026/11/25 09:00:00,n003,参照\n"
        .as_bytes()
        .to_vec();
    mixed.extend_from_slice(
        &encoding_rs::SHIFT_JIS
            .encode("2026/11/25 09:01:00,n003,印刷\n")
            .0,
    );
    let path = dir.path().join("mixed.csv");
    std::fs::write(&path, &mixed).unwrap();
    let out = import(&data, &[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("encoding_mismatch 1"), "{}", text(&out));
    let print = search(&data, "event.action:record.print");
    assert_eq!(print.len(), 1);
    assert_eq!(print[0]["tags"][0], "encoding_mismatch");
}

#[test]
fn the_same_file_imported_twice_at_once_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = samples().join("windows/evtx/Security_with_size_t.evtx");
    let spawn = || {
        Command::new(BIN)
            .env("MIMAMORI_DATA_DIR", &data)
            .args(["import", file.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "{}\n{}", text(&a), text(&b));
    for o in [&a, &b] {
        if !o.status.success() {
            assert!(
                text(o).contains("in use"),
                "the loser says why: {}",
                text(o)
            );
        }
    }
    // 160 events and one gap record: Security_with_size_t has none, so exactly 160.
    assert_eq!(search(&data, "*").len(), 160);
}
