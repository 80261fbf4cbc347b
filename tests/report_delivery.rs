//! The weekly review delivered: mailed whole through a real SMTP server (HTML body, CSV
//! attached, read back as a mail client reads it; no patient ID unless the channel allows
//! them), a chat channel given the summary and a link,
//! a PDF attached (printed by Chromium, read back with pdftotext), a mail server that is down
//! retried and shown in the UI, sent again from the UI, and no
//! review mailed of a week that was over before the appliance started.

mod common;

use base64::Engine;
use common::Server;
use common::delivery::{ROSTER, Smtp, wait};
use common::receiver::Receiver;
use common::web::{audit_count, setup};

#[test]
fn the_weekly_review_is_mailed_whole_chatted_in_brief_retried_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let chat = Receiver::start();
    // A mail server that is down: a port nothing listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broken = smtp.channel("broken", "").replace(
        &format!("smtp_port = {}", smtp.port),
        &format!("smtp_port = {down}"),
    );
    let tail = format!(
        "{ROSTER}\n[report]\nattach_pdf = true\nweekly_time = \"00:00\"\n[delivery]\nlink_base = \"https://mimamori.clinic.example\"\n{}{broken}\n[[channels]]\nname = \"chat\"\nkind = \"slack\"\nurl = \"{}\"\n",
        smtp.channel("office", ""),
        chat.url("/hook"),
    );
    let mut server = Server::prepare("", "", &tail);
    // Last week's accesses, in the store before the server (and its schedule) starts.
    let at = chrono::Utc::now() - chrono::Duration::days(7);
    let mut csv = String::from("timestamp,user,action,patient\n");
    for (i, user) in ["n002", "n002", "r001"].iter().enumerate() {
        let t = (at + chrono::Duration::minutes(i as i64)).to_rfc3339();
        csv.push_str(&format!("{t},{user},VIEW_CHART,P0007\n"));
    }
    let file = dir.path().join("last-week.csv");
    std::fs::write(&file, csv).unwrap();
    let out = server.cli_config(&["import", "--format", "ehr-csv", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    server.spawn();

    // The schedule makes last week's review at start, and sends it nowhere: that week was over
    // before this appliance began keeping reviews.
    wait("last week's review made by the schedule", 30, &|| {
        server.log().contains("the weekly review is made and kept")
    });
    let week = server
        .log()
        .split("the weekly review is made and kept")
        .nth(1)
        .and_then(|l| l.split("week=").nth(1))
        .map(|w| {
            w.split_whitespace()
                .next()
                .unwrap()
                .trim_matches('"')
                .to_owned()
        })
        .expect("the week in the log line");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(smtp.mails().is_empty() && chat.requests().is_empty());
    let mut admin = setup(&server);
    let page = admin.get(&format!("/reports/weekly/{week}"));
    assert!(page.body.contains("id=\"not-sent\""), "{}", page.body);

    // Sent on request from the command line, to every email and chat channel.
    let out = server.cli_config(&["report", "weekly", "--week", &week, "--send"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("queued for office, broken, chat"), "{said}");
    wait("the mail and the chat message", 60, &|| {
        smtp.mails().len() == 1 && chat.requests().len() == 1
    });
    let kept = server.cli_config(&["report", "weekly", "--week", &week, "--format", "json"]);
    let kept: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    let checksum = kept["checksum"].as_str().unwrap();
    let link = format!("https://mimamori.clinic.example/reports/weekly/{week}");

    let mail = &smtp.mails()[0];
    let subject = mail["subject"].as_str().unwrap();
    assert!(
        subject.contains(&format!("週次アクセス確認報告 {week}")),
        "{subject}"
    );
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains(checksum) && html.contains("<table") && !html.contains("<script"),
        "the report whole, as HTML: {html}"
    );
    let text = mail["text"].as_str().unwrap();
    assert!(
        text.contains("この週の記録は 3 件です。")
            && text.contains(&link)
            && text.contains("集計表(CSV)を添付しています。"),
        "{text}"
    );
    let attachments = mail["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2, "{mail}");
    assert_eq!(attachments[0]["filename"], format!("review-{week}.csv"));
    assert_eq!(attachments[0]["content_type"], "text/csv");
    let csv = attachments[0]["content"].as_str().unwrap();
    assert!(csv.contains(checksum), "{csv}");
    // The PDF printed by Chromium, read back with poppler.
    assert_eq!(attachments[1]["filename"], format!("review-{week}.pdf"));
    assert_eq!(attachments[1]["content_type"], "application/pdf");
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(attachments[1]["content"].as_str().unwrap())
        .unwrap();
    let pdf_file = dir.path().join("review.pdf");
    std::fs::write(&pdf_file, &pdf).unwrap();
    let text = common::pdf_text(&pdf_file);
    assert!(
        text.contains(&format!("週次アクセス確認報告 {week}")) && text.contains(checksum),
        "{text}"
    );
    assert!(
        !text.contains("P0007"),
        "no patient ID in the mailed PDF either"
    );
    // No patient ID by mail to a channel without include_patient_data: ranked instead.
    assert!(
        !mail.to_string().contains("P0007") && html.contains("#1"),
        "{mail}"
    );
    let rcpt = std::fs::read_to_string(smtp.out.join("1.rcpt")).unwrap();
    assert_eq!(rcpt, "director@clinic.example\noffice@clinic.example");

    let message = chat.requests()[0].json();
    let said = message["text"].as_str().unwrap();
    assert!(
        said.contains(&week) && said.contains("この週の記録は 3 件です。") && said.contains(&link),
        "{said}"
    );
    assert!(
        !said.contains("<table"),
        "a summary, not the report: {said}"
    );
    assert!(
        !said.contains("添付"),
        "nothing is attached to a chat message: {said}"
    );

    // The mail server that is down: still waiting, its error shown with the review.
    wait("an attempt at the broken channel", 30, &|| {
        server.metric("mimamori_delivery_retries_total{channel=\"broken\"}") >= 1.0
    });
    let page = admin.get(&format!("/reports/weekly/{week}"));
    let table = page.body.split("id=\"deliveries\"").nth(1).unwrap();
    let row = |channel: &str| {
        table
            .split("<tr")
            .find(|r| r.contains(&format!("<td>{channel}</td>")))
            .unwrap_or_else(|| panic!("{channel}: {table}"))
            .to_owned()
    };
    assert!(row("office").contains("送信済み"), "{table}");
    assert!(row("chat").contains("送信済み"), "{table}");
    let broken = row("broken");
    assert!(
        broken.contains("送信待ち") && broken.contains("mail server"),
        "{broken}"
    );
    let list = admin.get("/reports/weekly");
    assert!(list.body.contains("broken: 送信待ち"), "{}", list.body);

    // Sent again from the UI: to those that took it; the one still waiting is not doubled.
    let again = admin.post(
        &format!("/reports/weekly/{week}/send"),
        &[("csrf", &page.csrf())],
    );
    assert_eq!(again.status, 303, "{}", again.body);
    wait("the second mail", 60, &|| smtp.mails().len() == 2);
    wait("the second chat message", 30, &|| {
        chat.requests().len() == 2
    });
    let page = admin.get(&format!("/reports/weekly/{week}"));
    let rows = page
        .body
        .split("id=\"deliveries\"")
        .nth(1)
        .unwrap()
        .matches("<td>broken</td>")
        .count();
    assert_eq!(rows, 1, "{}", page.body);
    wait("the sending in the audit trail", 10, &|| {
        audit_count(&server, "event.action:report.send") == 1
    });
    let audited = server.search("event.dataset:mimamori.audit AND event.action:report.send");
    assert!(
        audited[0]["message"]
            .as_str()
            .unwrap()
            .contains("queued for office, chat"),
        "what was queued, not what was asked: {audited:?}"
    );
    server.stop();
}
