//! `mimamori demo`: one command imports a simulated week, mails its alerts to a local mailbox
//! over real SMTP, and serves the UI with a banner; running it again is safe.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::web::Browser;
use common::{BIN, free_tcp_and_udp_port, free_tcp_port};

struct Demo {
    child: Child,
    password: String,
    http: SocketAddr,
    said: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the demo in `dir` and reads what it prints up to its password.
    fn start(dir: &Path) -> Demo {
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let syslog = format!("127.0.0.1:{}", free_tcp_and_udp_port());
        let mut child = Command::new(BIN)
            .args(["demo", "--dir"])
            .arg(dir)
            .args(["--http", &http.to_string(), "--syslog", &syslog])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.with_extension("stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut said = String::new();
        let password = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    let err = std::fs::read_to_string(dir.with_extension("stderr"));
                    panic!("the demo ended before it was ready: {said}\nstderr: {err:?}")
                })
                .unwrap();
            said.push_str(&line);
            said.push('\n');
            if let Some(rest) = line.split("with the password ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        // The rest of its output is not needed; keep the pipe drained.
        std::thread::spawn(move || for _ in lines {});
        Demo {
            child,
            password,
            http,
            said,
        }
    }

    fn stop(mut self) {
        Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap(); // SIGTERM
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the demo stops cleanly on SIGTERM: {status}"
        );
    }
}

fn mails(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("mailbox"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_demo_imports_a_week_mails_its_alerts_locally_serves_the_ui_and_runs_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let demo = Demo::start(&dir);
    assert!(demo.said.contains("incidents planted"), "{}", demo.said);
    assert!(
        demo.said.contains("rejected             0"),
        "{}",
        demo.said
    );

    // The alerts went out by SMTP to the local receiver.
    let deadline = Instant::now() + Duration::from_secs(60);
    while mails(&dir) == 0 {
        assert!(Instant::now() < deadline, "no alert mail arrived");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut browser = Browser::new(demo.http);
    browser.sign_in("demo", &demo.password);
    let search = browser.get("/search");
    assert!(search.body.contains("id=\"banner\""), "{}", search.body);
    assert!(search.body.contains("デモ"));
    let alerts = browser.get("/alerts");
    assert!(alerts.body.contains("/alerts/1"), "{}", alerts.body);
    let mailbox = browser.get("/mailbox");
    assert_eq!(mailbox.status, 200);
    assert!(
        mailbox.body.contains("director@demo.invalid"),
        "{}",
        mailbox.body
    );
    let first = mailbox
        .body
        .split("href=\"/mailbox/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a mail is listed")
        .to_owned();
    let mail = browser.get(&format!("/mailbox/{first}"));
    assert!(
        mail.body.contains("アラート") && mail.body.contains("alert"),
        "the subject and text are decoded: {}",
        mail.body
    );
    assert_eq!(browser.get("/mailbox/..%2Fmimamori.toml").status, 404);
    let old_password = demo.password.clone();
    demo.stop();

    // Again: the same week, nothing stored twice, a new password.
    let again = Demo::start(&dir);
    assert!(again.said.contains("already in"), "{}", again.said);
    assert!(
        again.said.contains("accepted             0"),
        "{}",
        again.said
    );
    assert_ne!(again.password, old_password);
    let mut browser = Browser::new(again.http);
    browser.sign_in("demo", &again.password);
    let mut stranger = Browser::new(again.http);
    let token = stranger.get("/login").csrf();
    let refused = stranger.post(
        "/login",
        &[
            ("csrf", &token),
            ("name", "demo"),
            ("password", &old_password),
            ("next", "/search"),
        ],
    );
    assert_ne!(refused.status, 303, "the old password no longer signs in");
    // A second demo in the same folder, on other ports, is refused before it changes anything.
    let config = std::fs::read_to_string(dir.join("mimamori.toml")).unwrap();
    let (http, syslog) = (free_tcp_port(), free_tcp_and_udp_port());
    let second = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--syslog", &format!("127.0.0.1:{syslog}")])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));
    assert_eq!(
        std::fs::read_to_string(dir.join("mimamori.toml")).unwrap(),
        config
    );
    again.stop();

    // A port in use is found before the week is imported.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .arg("--http")
        .arg(taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("cannot listen there"),
        "{refused:?}"
    );
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("importing"));

    // A folder the demo did not make is never used.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let refused = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a demo folder"));
    assert_eq!(
        std::fs::read_to_string(other.join("keep.txt")).unwrap(),
        "mine"
    );
}
