//! `mimamori simulate`: a synthetic two-site clinic with a roster, its config, and `days` of its
//! logs in the real formats (the main site's EHR as a Shift_JIS CSV export, the annex's EHR as
//! FHIR AuditEvent ndjson, the PCs' logons as Winlogbeat JSON, the VPN as syslog), with
//! incidents injected and written to `labels.csv` — and the confounders that must not raise
//! alerts: an on-call doctor and a night-shift nurse at night, logins in the grace margin, a
//! national holiday on a weekday, a logout at one site then a login at the other, small exports.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Tokyo;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone)]
struct Person {
    id: String,
    name: &'static str,
    role: &'static str,
    site: usize,
    pc: u32,
    flags: &'static str,
}

const SITES: [(&str, &str, &str); 2] = [
    ("main", "10.10.1", "MAIN-PC"),
    ("annex", "10.10.2", "ANNEX-PC"),
];

fn staff() -> Vec<Person> {
    let p = |id: &str, name, role, site, pc, flags| Person {
        id: id.into(),
        name,
        role,
        site,
        pc,
        flags,
    };
    vec![
        p("d001", "佐藤一郎", "doctor", 0, 1, ""),
        p("d002", "鈴木二郎", "doctor", 1, 1, "on_call"),
        p("d003", "高橋三郎", "doctor", 0, 2, ""),
        p("n001", "田中花子", "nurse", 0, 3, ""),
        p("n002", "山田花子", "nurse", 0, 4, ""),
        p("n003", "伊藤陽子", "nurse", 1, 2, ""),
        p("n004", "渡辺恵", "nurse", 1, 3, "night_shift"),
        p("n005", "中村愛", "nurse", 0, 5, ""),
        p("r001", "小林受付", "reception", 0, 6, ""),
        p("r002", "加藤受付", "reception", 1, 4, ""),
        p("c001", "吉田事務", "clerk", 0, 7, ""),
    ]
}

/// One access, before it is written in its site's format.
struct Access {
    at: DateTime<Utc>,
    who: usize,
    site: usize,
    action: &'static str,
    category: &'static str,
    patient: Option<String>,
    count: u64,
}

struct Label {
    rule: &'static str,
    user: String,
    at: DateTime<Utc>,
    note: String,
}

fn local(day: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    Tokyo
        .from_local_datetime(&day.and_hms_opt(h, m, 0).expect("valid time"))
        .earliest()
        .expect("Tokyo has no gaps")
        .with_timezone(&Utc)
}

/// Opening intervals of the simulated clinic (the demo clinic's): (open, close) in minutes.
fn hours(day: NaiveDate) -> Vec<(u32, u32)> {
    let holiday = rules::holidays::is_holiday(day);
    let closed_date = matches!(
        (day.month(), day.day()),
        (12, 29..=31) | (1, 2..=3) | (8, 14..=15)
    );
    if holiday || closed_date {
        return Vec::new();
    }
    match day.weekday() {
        Weekday::Sun => Vec::new(),
        Weekday::Thu | Weekday::Sat => vec![(510, 750)],
        _ => vec![(510, 750), (840, 1110)],
    }
}

/// What a role does during a working session: (action, category).
fn work(role: &str, rng: &mut Rng) -> (&'static str, &'static str) {
    let pick = |list: &[(&'static str, &'static str)], rng: &mut Rng| {
        list[rng.below(list.len() as u64) as usize]
    };
    match role {
        "doctor" => pick(
            &[
                ("record.view", "clinical_notes"),
                ("record.update", "clinical_notes"),
                ("record.view", "prescriptions"),
                ("record.update", "prescriptions"),
            ],
            rng,
        ),
        "nurse" => pick(
            &[
                ("record.view", "clinical_notes"),
                ("record.update", "clinical_notes"),
                ("record.view", "prescriptions"),
            ],
            rng,
        ),
        "reception" => pick(
            &[
                ("record.view", "appointments"),
                ("record.update", "appointments"),
                ("record.view", "demographics"),
            ],
            rng,
        ),
        _ => pick(
            &[("record.view", "billing"), ("record.update", "billing")],
            rng,
        ),
    }
}

/// Simulates `days` days from `start` (default: the days that end yesterday, so `alerts
/// --since 7d` finds the last week's incidents).
pub fn run(days: u32, seed: u64, start: Option<NaiveDate>, out: &Path) -> anyhow::Result<()> {
    let made = generate(days, seed, start, out)?;
    println!(
        "simulated {days} days from {}: {} accesses by {} staff, {} incidents in {}",
        made.start,
        made.accesses,
        made.staff,
        made.incidents,
        out.join("labels.csv").display()
    );
    let out = std::path::absolute(out)?;
    let config = out.join("mimamori.toml");
    println!(
        "next:\n  mimamori --config {config} import {logs}\n  mimamori --config {config} alerts --since {days}d",
        config = config.display(),
        logs = out.join("logs").display(),
    );
    Ok(())
}

/// What [`generate`] wrote.
pub struct Simulated {
    pub start: NaiveDate,
    pub accesses: usize,
    pub staff: usize,
    pub incidents: usize,
}

/// Writes the clinic's `days` from `start` (default: the days that end yesterday) into `out`:
/// `logs/`, `roster.csv`, `labels.csv` and `mimamori.toml`.
pub fn generate(
    days: u32,
    seed: u64,
    start: Option<NaiveDate>,
    out: &Path,
) -> anyhow::Result<Simulated> {
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let people = staff();
    // Logs dated ahead of the appliance's clock are not evaluated: the days end yesterday.
    let yesterday = Utc::now().with_timezone(&Tokyo).date_naive() - Duration::days(1);
    let latest_start = yesterday - Duration::days(i64::from(days.max(1)) - 1);
    let start = match start {
        Some(s) if s > latest_start => anyhow::bail!(
            "--start {s}: {days} days from then run past yesterday ({yesterday}); the latest start is {latest_start}"
        ),
        Some(s) => s,
        None => latest_start,
    };
    let mut accesses: Vec<Access> = Vec::new();
    let mut labels: Vec<Label> = Vec::new();
    let patient = |rng: &mut Rng| format!("P{:06}", 1 + rng.below(3000));
    let session = |accesses: &mut Vec<Access>,
                   rng: &mut Rng,
                   who: usize,
                   site: usize,
                   from: DateTime<Utc>,
                   minutes: i64,
                   logout: bool| {
        accesses.push(Access {
            at: from,
            who,
            site,
            action: "login",
            category: "",
            patient: None,
            count: 0,
        });
        // Activity every ten minutes or so: a session stays alive between logins.
        let n = (minutes / 10).max(2) as u64 + rng.below(3);
        for k in 0..n {
            let at = from + Duration::minutes(minutes * (k as i64 + 1) / (n as i64 + 2));
            let (action, category) = work(people[who].role, rng);
            accesses.push(Access {
                at,
                who,
                site,
                action,
                category,
                patient: Some(patient(rng)),
                count: 1,
            });
        }
        if logout {
            accesses.push(Access {
                at: from + Duration::minutes(minutes),
                who,
                site,
                action: "logout",
                category: "",
                patient: None,
                count: 0,
            });
        }
    };

    for d in 0..days {
        let day = start + Duration::days(i64::from(d));
        let spans = hours(day);
        for (who, p) in people.iter().enumerate() {
            if p.flags == "night_shift" {
                // Night shift: 21:00 to 23:30 every day, at the annex. Expected, no alert.
                let at = local(day, 21, rng.below(20) as u32);
                session(&mut accesses, &mut rng, who, p.site, at, 150, true);
                continue;
            }
            for (i, &(open, close)) in spans.iter().enumerate() {
                // In by up to 25 min before opening (the grace margin is 30), out by 20 after.
                let login = open - 25 + rng.below(30) as u32;
                let logout = close - 10 + rng.below(30) as u32;
                let mut site = p.site;
                // n002 works the afternoon at the annex: logout at main, then login there.
                if p.id == "n002" && i == 1 {
                    site = 1;
                }
                session(
                    &mut accesses,
                    &mut rng,
                    who,
                    site,
                    local(day, login / 60, login % 60),
                    i64::from(logout - login),
                    true,
                );
            }
            // Doctors export small lists now and then (below the limit).
            if p.role == "doctor" && !spans.is_empty() && rng.below(4) == 0 {
                let at = local(day, 11, rng.below(50) as u32);
                accesses.push(Access {
                    at,
                    who,
                    site: p.site,
                    action: "record.export",
                    category: "demographics",
                    patient: None,
                    count: 5 + rng.below(40),
                });
            }
        }
        // The on-call doctor checks a chart from the annex at night, now and then.
        if rng.below(3) == 0 {
            let who = people
                .iter()
                .position(|p| p.flags == "on_call")
                .expect("an on-call doctor");
            let at = local(day, 23, rng.below(50) as u32);
            session(&mut accesses, &mut rng, who, 1, at, 15, true);
        }

        // Incidents, one kind a day in turn, on people who are not exempt.
        let ordinary: Vec<usize> = people
            .iter()
            .enumerate()
            .filter(|(_, p)| p.flags.is_empty())
            .map(|(i, _)| i)
            .collect();
        let who = ordinary[rng.below(ordinary.len() as u64) as usize];
        let p = &people[who];
        match d % 4 {
            0 => {
                // A login late at night (on a holiday or Sunday any time is off hours too).
                let at = if spans.is_empty() {
                    local(day, 10, 0)
                } else {
                    local(day, 22, rng.below(50) as u32)
                };
                session(&mut accesses, &mut rng, who, p.site, at, 20, true);
                labels.push(Label {
                    rule: "off_hours_login",
                    user: p.id.clone(),
                    at,
                    note: "login outside opening hours".into(),
                });
            }
            1 if !spans.is_empty() => {
                // Reception or clerk reads clinical notes; others export (not allowed for nurses).
                let r = people
                    .iter()
                    .position(|x| x.role == "reception" && x.site == 0)
                    .expect("reception");
                let at = local(day, 10, 15 + rng.below(30) as u32);
                accesses.push(Access {
                    at,
                    who: r,
                    site: 0,
                    action: "record.view",
                    category: "clinical_notes",
                    patient: Some(patient(&mut rng)),
                    count: 1,
                });
                labels.push(Label {
                    rule: "access_outside_role",
                    user: people[r].id.clone(),
                    at,
                    note: "reception read clinical notes".into(),
                });
            }
            2 if !spans.is_empty() => {
                // Logged in at main without logging out, then at the annex ten minutes later,
                // within opening hours (mornings only on Thursdays and Saturdays).
                let at = if spans.len() > 1 {
                    local(day, 15, rng.below(20) as u32)
                } else {
                    local(day, 11, rng.below(20) as u32)
                };
                let w = people.iter().position(|x| x.id == "d003").expect("d003");
                accesses.push(Access {
                    at,
                    who: w,
                    site: 1,
                    action: "login",
                    category: "",
                    patient: None,
                    count: 0,
                });
                labels.push(Label {
                    rule: "concurrent_sessions",
                    user: "d003".into(),
                    at,
                    note: "logged in at the annex while active at main".into(),
                });
            }
            3 if !spans.is_empty() => {
                if rng.below(2) == 0 {
                    let w = people.iter().position(|x| x.id == "d001").expect("d001");
                    let at = local(day, 16, rng.below(30) as u32);
                    accesses.push(Access {
                        at,
                        who: w,
                        site: 0,
                        action: "record.export",
                        category: "demographics",
                        patient: None,
                        count: 300 + rng.below(2000),
                    });
                    labels.push(Label {
                        rule: "bulk_export",
                        user: "d001".into(),
                        at,
                        note: "export of hundreds of records".into(),
                    });
                } else {
                    let w = people.iter().position(|x| x.id == "n005").expect("n005");
                    let at = local(day, 15, 0);
                    for k in 0..70 {
                        accesses.push(Access {
                            at: at + Duration::seconds(k * 40),
                            who: w,
                            site: 0,
                            action: "record.view",
                            category: "clinical_notes",
                            patient: Some(format!("P9{:05}", rng.below(99_999))),
                            count: 1,
                        });
                    }
                    labels.push(Label {
                        rule: "bulk_export",
                        user: "n005".into(),
                        at: at + Duration::seconds(49 * 40),
                        note: "70 charts in 47 minutes".into(),
                    });
                }
            }
            _ => {}
        }
    }
    accesses.sort_by_key(|a| a.at);
    write_all(out, &people, &accesses, &labels, &mut rng)?;
    Ok(Simulated {
        start,
        accesses: accesses.len(),
        staff: people.len(),
        incidents: labels.len(),
    })
}

fn write_all(
    out: &Path,
    people: &[Person],
    accesses: &[Access],
    labels: &[Label],
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let mut roster = String::from("id,name,roles,site,start,end,flags\n");
    for p in people {
        writeln!(
            roster,
            "{},{},{},{},2020-04-01,,{}",
            p.id, p.name, p.role, SITES[p.site].0, p.flags
        )?;
    }
    std::fs::write(out.join("roster.csv"), roster)?;
    // Absolute paths, so the config works from any directory.
    let out = &std::path::absolute(out)?;
    std::fs::write(
        out.join("mimamori.toml"),
        format!(
            "# The simulated clinic: the demo clinic's hours, sites and roles, with this roster.\n\
             [storage]\ndata_dir = \"{}\"\n\n[roster]\nfile = \"{}\"\n",
            out.join("data").display(),
            out.join("roster.csv").display()
        ),
    )?;
    let mut csv =
        String::from("日時,利用者ID,利用者名,職種,端末,IPアドレス,患者ID,操作,件数,結果,種別\r\n");
    let mut fhir = String::new();
    let mut winlog = String::new();
    let mut syslog = String::new();
    let mut record = [100_000u64; 64];
    for (n, a) in accesses.iter().enumerate() {
        let p = &people[a.who];
        let (site, net, pc) = SITES[a.site];
        let pc_num = if a.site == p.site { p.pc } else { 9 };
        let host = format!("{pc}{pc_num:02}");
        let ip = format!("{net}.{}", 10 + pc_num);
        let t = a.at.with_timezone(&Tokyo);
        // Windows logons and logoffs on the PC, with machine-account noise between them.
        if a.action == "login" || a.action == "logout" {
            let slot = (a.site * 32 + pc_num as usize) % 64;
            record[slot] += 1;
            let (id, user) = if a.action == "login" {
                (4624, p.id.as_str())
            } else {
                (4634, p.id.as_str())
            };
            writeln!(
                winlog,
                r#"{{"@timestamp":"{}","event_id":{id},"log_name":"Security","computer_name":"{host}.clinic.local","record_number":"{}","source_name":"Microsoft-Windows-Security-Auditing","keywords":["Audit Success"],"event_data":{{"TargetUserName":"{user}","TargetDomainName":"CLINIC","LogonType":"2","TargetLogonId":"0x{:x}","IpAddress":"-"}}}}"#,
                a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                record[slot],
                0x10000 + n
            )?;
            if rng.below(3) == 0 {
                record[slot] += 1;
                writeln!(
                    winlog,
                    r#"{{"@timestamp":"{}","event_id":4624,"log_name":"Security","computer_name":"{host}.clinic.local","record_number":"{}","source_name":"Microsoft-Windows-Security-Auditing","keywords":["Audit Success"],"event_data":{{"TargetUserName":"SYSTEM","TargetDomainName":"NT AUTHORITY","LogonType":"5"}}}}"#,
                    a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    record[slot]
                )?;
            }
        }
        if p.flags == "on_call" && t.hour() >= 22 && a.action == "login" {
            // The on-call doctor comes in over the VPN first.
            writeln!(
                syslog,
                "<134>1 {} utm01 vpn - - - user={} action=login result=success src=203.0.113.{}",
                a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                p.id,
                10 + rng.below(200)
            )?;
        }
        if site == "main" {
            let op = match (a.action, a.category) {
                ("login", _) => "ログイン",
                ("logout", _) => "ログアウト",
                ("record.export", _) => "CSV出力",
                ("record.view", "appointments") => "予約参照",
                ("record.update", "appointments") => "予約更新",
                ("record.view", _) => "カルテ参照",
                _ => "カルテ更新",
            };
            let kind = match a.category {
                "clinical_notes" => "診療録",
                "prescriptions" => "処方",
                "appointments" => "予約",
                "demographics" => "患者基本情報",
                "billing" => "会計",
                _ => "",
            };
            let count = if a.count > 0 {
                a.count.to_string()
            } else {
                String::new()
            };
            write!(
                csv,
                "{},{},{},{},{host},{ip},{},{op},{count},成功,{kind}\r\n",
                t.format("%Y/%m/%d %H:%M:%S"),
                p.id,
                p.name,
                p.role,
                a.patient.as_deref().unwrap_or("")
            )?;
        } else {
            let resource = match a.category {
                "appointments" => "Appointment",
                "prescriptions" => "MedicationRequest",
                "billing" => "Invoice",
                "demographics" => "Patient",
                _ => "Composition",
            };
            let (type_code, subtype, letter) = match a.action {
                "login" => ("110114", "110122", "E"),
                "logout" => ("110114", "110123", "E"),
                "record.view" => ("rest", "read", "R"),
                "record.export" => ("110106", "110106", "R"),
                _ => ("rest", "update", "U"),
            };
            let mut entity = String::new();
            if let Some(pt) = &a.patient {
                entity = format!(
                    r#","entity":[{{"what":{{"reference":"{resource}/{n}"}}}},{{"what":{{"reference":"Patient/{pt}"}}}}]"#
                );
            }
            writeln!(
                fhir,
                r#"{{"resourceType":"AuditEvent","id":"sim-{n}","type":{{"code":"{type_code}"}},"subtype":[{{"code":"{subtype}"}}],"action":"{letter}","recorded":"{}","outcome":"0","agent":[{{"who":{{"identifier":{{"value":"{}"}},"display":"{}"}},"requestor":true,"network":{{"address":"{ip}","type":"2"}}}}],"source":{{"site":"annex","observer":{{"display":"{host}"}}}}{entity}}}"#,
                a.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                p.id,
                p.name
            )?;
        }
    }
    let logs = out.join("logs");
    std::fs::write(
        logs.join("ehr-main.csv"),
        encoding_rs::SHIFT_JIS.encode(&csv).0,
    )?;
    std::fs::write(logs.join("ehr-annex.ndjson"), fhir)?;
    std::fs::write(logs.join("winlogbeat.jsonl"), winlog)?;
    std::fs::write(logs.join("vpn.log"), syslog)?;
    let mut f = std::fs::File::create(out.join("labels.csv"))?;
    writeln!(f, "rule,user,time,note")?;
    for l in labels {
        writeln!(f, "{},{},{},{}", l.rule, l.user, l.at.to_rfc3339(), l.note)?;
    }
    Ok(())
}

use chrono::Timelike;
