//! `mimamori report weekly` over weeks of known events: every number equals what a search over
//! the same week returns or what the events were built to give, in Tokyo (a week with a
//! national holiday) and in New York (the week daylight saving ends: 169 hours, one local
//! hour twice).

mod common;

use std::path::Path;
use std::process::Command;

use common::BIN;

struct Clinic {
    dir: tempfile::TempDir,
}

impl Clinic {
    /// A clinic with `config` (the `[clinic]` section's extra lines) and `rows` of an EHR export
    /// imported (`time,user,patient`).
    fn new(config: &str, rows: &[(&str, &str, &str)]) -> Clinic {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mimamori.toml"),
            format!(
                "[storage]\ndata_dir = \"{}\"\n\n[clinic]\n{config}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut csv = String::from("timestamp,user,action,patient\n");
        for (at, user, patient) in rows {
            csv.push_str(&format!("{at},{user},VIEW_CHART,{patient}\n"));
        }
        std::fs::write(dir.path().join("ehr.csv"), csv).unwrap();
        let clinic = Clinic { dir };
        let out = clinic.run(&["import", "--format", "ehr-csv"], Some("ehr.csv"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        clinic
    }

    fn run(&self, args: &[&str], file: Option<&str>) -> std::process::Output {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(self.dir.path().join("mimamori.toml"))
            .args(args);
        if let Some(f) = file {
            command.arg(self.dir.path().join(f));
        }
        command.output().unwrap()
    }

    fn report(&self, week: &str) -> serde_json::Value {
        let out = self.run(
            &["report", "weekly", "--week", week, "--format", "json"],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// How many events `query` finds between `from` and `to` (RFC 3339).
    fn count(&self, query: &str, from: &str, to: &str) -> usize {
        let out = self.run(
            &[
                "search", query, "--from", from, "--to", to, "--json", "--limit", "1000",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .count()
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn number(report: &serde_json::Value, list: &str, key: &str, value: &str, field: &str) -> u64 {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x[key] == value)
        .map_or(0, |x| x[field].as_u64().unwrap())
}

/// The report's numbers equal the searches': the total, each source and each person.
fn agrees_with_search(clinic: &Clinic, report: &serde_json::Value) {
    let (from, to) = (
        report["from"].as_str().unwrap(),
        report["to"].as_str().unwrap(),
    );
    assert_eq!(
        report["events"].as_u64().unwrap() as usize,
        clinic.count("*", from, to)
    );
    for s in report["sources"].as_array().unwrap() {
        let query = format!("event.dataset:{}", s["value"].as_str().unwrap());
        assert_eq!(
            s["count"].as_u64().unwrap() as usize,
            clinic.count(&query, from, to)
        );
    }
    for p in report["staff"].as_array().unwrap() {
        let query = format!("user.name:{}", p["user"].as_str().unwrap());
        assert_eq!(
            p["events"].as_u64().unwrap() as usize,
            clinic.count(&query, from, to),
            "{query}"
        );
    }
}

#[test]
fn a_tokyo_week_with_a_national_holiday() {
    // On the roster: those with events; r009, never seen (dormant); n003, gone before the week
    // ended; n004, hired within the last 30 days (neither dormant).
    let roster = [
        ("n001", "roles = [\"nurse\"]"),
        ("n002", "roles = [\"nurse\"]"),
        ("d001", "roles = [\"nurse\"]"),
        ("r009", "roles = [\"reception\"]\nstart = \"2026-01-05\""),
        ("n003", "roles = [\"nurse\"]\nend = \"2026-11-01\""),
        ("n004", "roles = [\"nurse\"]\nstart = \"2026-11-20\""),
    ]
    .map(|(id, rest)| format!("[[roster.staff]]\nid = \"{id}\"\nname = \"{id}\"\n{rest}\n"))
    .join("");
    // The schedule explains Tuesday's P0001 and Wednesday's P0003, nothing else.
    let schedule = tempfile::tempdir().unwrap();
    let appointments = schedule.path().join("appointments.csv");
    std::fs::write(
        &appointments,
        "patient_id,date,site\nP0001,2026-11-24,\nP0003,2026/11/25,\n",
    )
    .unwrap();
    let clinic = Clinic::new(
        &format!(
            "timezone = \"Asia/Tokyo\"\n{roster}\n[detections.treatment_relationship]\nappointments_file = \"{}\"\n",
            appointments.display()
        ),
        &[
            // The week before: n001 four times (and once more on Sunday night), their usual.
            ("2026-11-17T10:00:00+09:00", "n001", "P0002"),
            ("2026-11-17T10:05:00+09:00", "n001", "P0002"),
            ("2026-11-17T10:10:00+09:00", "n001", "P0002"),
            ("2026-11-17T10:15:00+09:00", "n001", "P0002"),
            // Before and after the week: not counted.
            ("2026-11-22T23:59:00+09:00", "n001", "P0001"),
            ("2026-11-30T00:00:00+09:00", "n001", "P0001"),
            // 勤労感謝の日 (Monday 23 November): a closed day.
            ("2026-11-23T10:00:00+09:00", "n002", "P0001"),
            // Tuesday: in hours, then at night.
            ("2026-11-24T10:00:00+09:00", "n001", "P0001"),
            ("2026-11-24T22:00:00+09:00", "n001", "P0003"),
            // Wednesday's lunch break past the 30-minute grace: outside hours.
            ("2026-11-25T13:15:00+09:00", "n002", "P0003"),
            // Thursday afternoon (mornings only): outside hours.
            ("2026-11-26T15:00:00+09:00", "d001", "P0001"),
        ],
    );
    let report = clinic.report("2026-W48");
    assert_eq!(report["from"], "2026-11-22T15:00:00Z");
    assert_eq!(report["to"], "2026-11-29T15:00:00Z");
    assert_eq!(report["events"], 5);
    agrees_with_search(&clinic, &report);
    assert_eq!(number(&report, "staff", "user", "n001", "events"), 2);
    assert_eq!(
        report["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["user"] == "n001")
            .unwrap()["change_percent"],
        -60,
        "2 against the usual 5 (the four and Sunday night's, the week before)"
    );
    assert_eq!(
        number(&report, "off_hours", "user", "n001", "outside_hours"),
        1
    );
    assert_eq!(
        number(&report, "off_hours", "user", "n002", "outside_hours"),
        1
    );
    assert_eq!(
        number(&report, "off_hours", "user", "n002", "closed_days"),
        1
    );
    assert_eq!(
        number(&report, "off_hours", "user", "d001", "outside_hours"),
        1
    );
    assert_eq!(report["outside_hours_total"], 3);
    assert_eq!(report["closed_day_total"], 1);
    let closed: Vec<&str> = report["closed_days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["why"].as_str().unwrap())
        .collect();
    assert_eq!(closed, ["勤労感謝の日", ""], "the holiday and Sunday");
    // P0001: n002, n001, d001 (the accesses outside the week not counted).
    assert_eq!(report["dormant_days"], 30);
    assert_eq!(report["dormant_total"], 1);
    assert_eq!(report["dormant"][0]["user"], "r009");
    assert!(report["dormant"][0]["last_seen"].is_null());
    let spot = &report["spot_checks"];
    assert_eq!(spot["schedule"], true);
    assert_eq!(spot["sampled"], 5, "every access of a week this small");
    assert_eq!(spot["unexplained"], 3);
    let listed: Vec<(&str, &str)> = spot["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user"].as_str().unwrap(), u["patient"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("n002", "P0001"), ("n001", "P0003"), ("d001", "P0001")],
        "the holiday's, Tuesday night's and Thursday's, oldest first"
    );
    assert_eq!(report["patients"][0]["patient"], "P0001");
    assert_eq!(report["patients"][0]["staff"], 3);
    assert_eq!(report["patients"][0]["accesses"], 3);
    let heat = &report["heat"];
    assert_eq!(heat[0][10], 1, "Monday 10:00");
    assert_eq!(heat[1][10], 1);
    assert_eq!(heat[1][22], 1);
    assert_eq!(heat[2][13], 1);
    assert_eq!(heat[3][15], 1);
    let cells: u64 = heat
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d.as_array().unwrap())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(cells, 5);
    // Each person with use outside hours gets their own map, the most such use first.
    let people: Vec<&str> = report["people_heat"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"].as_str().unwrap())
        .collect();
    assert_eq!(people.len(), 3, "{people:?}");
    assert_eq!(people[0], "n002", "the holiday and the lunch break");
    assert_eq!(report["people_heat"][0]["why"], "off_hours");
    assert_eq!(report["people_heat"][0]["heat"][0][10], 1, "Monday 10:00");
    assert_eq!(
        report["people_heat"][0]["heat"][2][13], 1,
        "Wednesday 13:15"
    );
    // The checksum is the week's events': made again, the same.
    assert_eq!(report["checksum"].as_str().unwrap().len(), 64);
    assert_eq!(clinic.report("2026-W48")["checksum"], report["checksum"]);
    assert_ne!(clinic.report("2026-W47")["checksum"], report["checksum"]);

    // The HTML and CSV say the same, in Japanese by default and in English on request.
    let html = clinic.run(&["report", "weekly", "--week", "2026-W48"], None);
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(html.contains("<html lang=\"ja\">"), "{html}");
    assert!(
        html.contains("診療時間外 3 件、休診日 1 件の利用があります。"),
        "{html}"
    );
    assert!(html.contains(report["checksum"].as_str().unwrap()));
    assert!(
        html.contains("30 日以上使われていない名簿のアカウントが 1 件あります。")
            && html.contains("<td style=\"border-bottom:1px solid #e3e7ec;padding:4px 8px;vertical-align:top\">r009</td>"),
        "{html}"
    );
    assert!(
        !html.contains("<script"),
        "nothing an email client would drop"
    );
    assert_eq!(html.matches("class=\"person-heat\"").count(), 3);
    let en = clinic.run(
        &["report", "weekly", "--week", "2026-W48", "--lang", "en"],
        None,
    );
    assert!(
        String::from_utf8_lossy(&en.stdout)
            .contains("3 events outside opening hours and 1 on closed days.")
    );
    let out = clinic.path().join("w48.csv");
    let csv = clinic.run(
        &[
            "report",
            "weekly",
            "--week",
            "2026-W48",
            "--format",
            "csv",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(csv.status.success());
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with('\u{feff}'), "a BOM for Excel");
    assert!(csv.contains("staff,n001,2,-60"), "{csv}");
    assert!(csv.contains("closed_days,n002,1,"), "{csv}");
    assert!(csv.contains("dormant,r009,,"), "{csv}");
    assert!(
        csv.contains(",d001,P0001\r\n") || csv.contains(",d001,P0001\n"),
        "{csv}"
    );

    // Printed as PDF by Chromium: the same words and checksum, read back with poppler.
    let pdf = clinic.path().join("w48.pdf");
    let out = clinic.run(
        &[
            "report",
            "weekly",
            "--week",
            "2026-W48",
            "--format",
            "pdf",
            "--out",
            pdf.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF"));
    let text = common::pdf_text(&pdf);
    assert!(
        text.contains("週次アクセス確認報告 2026-W48")
            && text.contains("診療時間外 3 件、休診日 1 件の利用があります。")
            && text.contains(report["checksum"].as_str().unwrap()),
        "{text}"
    );

    // A week that is no week is refused, saying what is expected.
    let bad = clinic.run(&["report", "weekly", "--week", "2026-W60"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("an ISO week like 2026-W48"));
    for (week, says) in [
        ("0-W01", "an ISO week like 2026-W48"),
        ("9999-W52", "an ISO week like 2026-W48"),
        ("2099-W01", "not over yet"),
    ] {
        let bad = clinic.run(&["report", "weekly", "--week", week], None);
        assert_eq!(bad.status.code(), Some(2), "{week}: {bad:?}");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains(says),
            "{week}: {bad:?}"
        );
    }
}

#[test]
fn a_new_york_week_when_daylight_saving_ends() {
    let clinic = Clinic::new(
        "timezone = \"America/New_York\"\nnational_holidays = false",
        &[
            // Sunday 25 October 23:30 EDT: the week before.
            ("2026-10-26T03:30:00Z", "n001", "P0001"),
            // Monday 00:30 EDT: the week's first hour, outside hours.
            ("2026-10-26T04:30:00Z", "n001", "P0001"),
            // Tuesday 10:00 EDT: in hours.
            ("2026-10-27T14:00:00Z", "n002", "P0001"),
            // Sunday 1 November 01:30, twice: EDT, then EST an hour later.
            ("2026-11-01T05:30:00Z", "n003", "P0002"),
            ("2026-11-01T06:30:00Z", "n003", "P0002"),
            // Monday 2 November 00:30 EST: the next week.
            ("2026-11-02T05:30:00Z", "n001", "P0001"),
        ],
    );
    let report = clinic.report("2026-W44");
    assert_eq!(report["from"], "2026-10-26T04:00:00Z");
    assert_eq!(report["to"], "2026-11-02T05:00:00Z", "169 hours");
    assert_eq!(report["events"], 4);
    agrees_with_search(&clinic, &report);
    assert_eq!(
        number(&report, "off_hours", "user", "n001", "outside_hours"),
        1
    );
    assert_eq!(
        number(&report, "off_hours", "user", "n003", "closed_days"),
        2
    );
    assert_eq!(
        number(&report, "off_hours", "user", "n002", "outside_hours"),
        0
    );
    let heat = &report["heat"];
    assert_eq!(heat[0][0], 1, "Monday 00:30");
    assert_eq!(heat[1][10], 1, "Tuesday 10:00");
    assert_eq!(heat[6][1], 2, "Sunday's 01:00 hour happened twice");
    assert_eq!(
        report["spot_checks"]["schedule"], false,
        "no schedule: not spot-checked"
    );
}

#[test]
fn a_month_in_new_york_with_its_daylight_saving_hour() {
    let clinic = Clinic::new(
        "timezone = \"America/New_York\"\nnational_holidays = false",
        &[
            // October, the month before: n001 three times a month is their usual.
            ("2026-10-06T14:00:00Z", "n001", "P0001"),
            ("2026-10-07T14:00:00Z", "n001", "P0001"),
            ("2026-10-08T14:00:00Z", "n001", "P0001"),
            // 1 November 00:30 EDT, the month's first hour; 30 November 23:30 EST, its last.
            ("2026-11-01T04:30:00Z", "n001", "P0002"),
            ("2026-12-01T04:30:00Z", "n002", "P0002"),
            // 1 December 00:30 EST: the next month.
            ("2026-12-01T05:30:00Z", "n001", "P0003"),
        ],
    );
    let out = clinic.run(
        &[
            "report", "monthly", "--month", "2026-11", "--format", "json",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["span"], "month");
    assert_eq!(report["week"], "2026-11");
    assert_eq!(report["from"], "2026-11-01T04:00:00Z");
    assert_eq!(report["to"], "2026-12-01T05:00:00Z", "30 days and an hour");
    assert_eq!(report["events"], 2);
    agrees_with_search(&clinic, &report);
    let n001 = report["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user"] == "n001")
        .unwrap();
    assert_eq!(
        n001["usual"], 3.0,
        "October's three, the only month before with events"
    );
    assert_eq!(n001["change_percent"], -67);
    let html = clinic.run(&["report", "monthly", "--month", "2026-11"], None);
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(
        html.contains("月次アクセス確認報告 2026-11") && html.contains("この月の記録は 2 件です。"),
        "{html}"
    );
    let wrong = clinic.run(&["report", "monthly", "--month", "2026-W48"], None);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("a month like 2026-11"));
}

#[test]
fn a_source_silent_longer_than_usual_is_a_finding() {
    // Every six hours for five weeks (2026-W44 to W48, Tokyo), but nothing from Wednesday
    // noon to Friday noon of the last.
    let start = chrono::DateTime::parse_from_rfc3339("2026-10-26T00:00:00+09:00").unwrap();
    let mut rows = Vec::new();
    for i in 0..(5 * 7 * 4) {
        let at = start + chrono::Duration::hours(6 * i);
        let silent = (chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:01+09:00").unwrap()
            ..chrono::DateTime::parse_from_rfc3339("2026-11-27T12:00:00+09:00").unwrap())
            .contains(&at);
        if !silent {
            rows.push(at.to_rfc3339());
        }
    }
    let rows: Vec<(&str, &str, &str)> =
        rows.iter().map(|t| (t.as_str(), "n001", "P0001")).collect();
    let clinic = Clinic::new("timezone = \"Asia/Tokyo\"", &rows);
    let report = clinic.report("2026-W48");
    let silences = report["silences"].as_array().unwrap();
    assert_eq!(silences.len(), 1, "{silences:?}");
    assert_eq!(silences[0]["source"], "ehr.audit");
    assert_eq!(silences[0]["hours"], 47, "Wednesday 13:00 to Friday 12:00");
    assert_eq!(
        silences[0]["usual_hours"], 5,
        "five empty hours between two events"
    );
    assert_eq!(silences[0]["from"], "2026-11-25T04:00:00Z");
    // The week before, as regular as ever: nothing to report.
    assert_eq!(clinic.report("2026-W47")["silences"], serde_json::json!([]));
}

#[test]
fn an_access_hidden_among_many_is_drawn_by_the_spot_check() {
    // Monday 2026-11-23 is a holiday; Tuesday: one look at P0999 (no appointment) at 08:30,
    // then 100 explained accesses from 11:00 to 11:10, all in the 08:00-12:00 slice.
    let schedule = tempfile::tempdir().unwrap();
    let appointments = schedule.path().join("appointments.csv");
    std::fs::write(&appointments, "patient_id,date,site\nP0001,2026-11-24,\n").unwrap();
    let mut rows = vec![("2026-11-24T08:30:00+09:00".to_owned(), "n002", "P0999")];
    for i in 0..100 {
        rows.push((
            format!("2026-11-24T11:{:02}:{:02}+09:00", i / 10, (i % 10) * 6),
            "n001",
            "P0001",
        ));
    }
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|(t, u, p)| (t.as_str(), *u, *p)).collect();
    let clinic = Clinic::new(
        &format!(
            "timezone = \"Asia/Tokyo\"\n[detections.treatment_relationship]\nappointments_file = \"{}\"\n",
            appointments.display()
        ),
        &rows,
    );
    let spot = clinic.report("2026-W48")["spot_checks"].clone();
    assert!(spot["sampled"].as_u64().unwrap() <= 20, "{spot}");
    assert_eq!(
        spot["listed"][0]["patient"], "P0999",
        "drawn at random, not the slice's newest 20: {spot}"
    );
}

#[test]
fn one_account_in_two_cases_is_one_person_and_stray_events_are_no_usual() {
    let mut rows: Vec<(String, &str, &str)> = vec![
        // 2026-W44: one stray event, before the clinic's logs really began.
        ("2026-10-27T10:00:00+09:00".into(), "x001", "P0001"),
    ];
    // 2026-W47: n005's usual week, eight accesses.
    for i in 0..8 {
        rows.push((format!("2026-11-17T10:0{i}:00+09:00"), "n005", "P0002"));
    }
    // 2026-W48: the account written two ways, three accesses in all.
    for (t, u) in [
        ("2026-11-24T10:00:00+09:00", "n005"),
        ("2026-11-24T10:01:00+09:00", "n005"),
        ("2026-11-24T10:02:00+09:00", "N005"),
    ] {
        rows.push((t.into(), u, "P0003"));
    }
    let rows: Vec<(&str, &str, &str)> = rows.iter().map(|(t, u, p)| (t.as_str(), *u, *p)).collect();
    let clinic = Clinic::new("timezone = \"Asia/Tokyo\"", &rows);
    let report = clinic.report("2026-W48");
    let staff = report["staff"].as_array().unwrap();
    assert_eq!(staff.len(), 1, "{staff:?}");
    assert_eq!(staff[0]["user"], "n005", "the spelling seen most");
    assert_eq!(staff[0]["events"], 3, "as `user.name:n005` finds them");
    assert_eq!(
        staff[0]["usual"], 8.0,
        "W47 alone: W44's one stray event is not a week of usual work"
    );
    agrees_with_search(&clinic, &report);
}
