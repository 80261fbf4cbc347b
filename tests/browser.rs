//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, installed by `.ci/run`) through the first-run setup, signing out and
//! in, a Japanese word search, a patient access report and closing an alert as a false
//! positive, then adding a person to the roster. Screenshots of each step are kept in `target/screenshots/`.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::delivery::{ROSTER, raise_alerts, wait};
use fantoccini::{Client, ClientBuilder, Locator};

const PASSWORD: &str = "kanri-sha-2026";

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (Debian: chromium-driver; .ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, port }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--lang=ja-JP"],
            "prefs": {"intl": {"accept_languages": "ja-JP,ja"}},
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page's path is `path` and `css` is on it. A `path` of
/// `/search?q=` also waits for the query to hold `q=`, so that a page that
/// already had `css` before a click is not taken for the one after it.
async fn arrive(client: &Client, path: &str, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    loop {
        let url = client.current_url().await.unwrap();
        if url.path() == path
            && url.query().unwrap_or("").contains(query)
            && client.find(Locator::Css(css)).await.is_ok()
        {
            return;
        }
        if Instant::now() > deadline {
            shot(client, "failure").await;
            let page = client.source().await.unwrap_or_default();
            panic!("never reached {path} ({css}); at {url}: {page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sign_in_search_report_and_close_an_alert_in_chromium() {
    let server = Server::start_full("", "", ROSTER);
    raise_alerts(&server);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut tcp = std::net::TcpStream::connect(server.tcp).unwrap();
    writeln!(
        tcp,
        "<134>1 {now} ehr01 ehr - - - user=n002 action=VIEW_CHART patient=P0042 src=10.10.1.23 山田太郎さんのカルテを参照"
    )
    .unwrap();
    drop(tcp);
    wait("alerts raised", 30, &|| {
        common::delivery::alerts(&server).len() >= 2
    });
    wait("events searchable", 20, &|| {
        server.search("カルテ").len() == 1
    });
    let base = format!("http://{}", server.http);
    let driver = driver();
    let client = browser(&driver).await;

    // First run: the home page leads to the setup; the admin is created and signed in.
    client.goto(&format!("{base}/")).await.unwrap();
    arrive(&client, "/setup", "#create").await;
    assert!(
        text(&client, "h1").await.contains("初期設定"),
        "Japanese for a Japanese browser"
    );
    shot(&client, "01-setup").await;
    fill(&client, "#name", "admin").await;
    fill(&client, "#password", PASSWORD).await;
    fill(&client, "#password2", PASSWORD).await;
    click(&client, "#create").await;
    arrive(&client, "/search", "#q").await;
    assert!(text(&client, "#signed-in").await.contains("admin"));

    // Sign out and in again.
    click(&client, "#logout").await;
    arrive(&client, "/login", "#login").await;
    fill(&client, "#name", "admin").await;
    fill(&client, "#password", "not-the-password").await;
    click(&client, "#login").await;
    arrive(&client, "/login", "#login-error").await;
    shot(&client, "02-login-refused").await;
    fill(&client, "#name", "admin").await;
    fill(&client, "#password", PASSWORD).await;
    click(&client, "#login").await;
    arrive(&client, "/search", "#q").await;

    // A Japanese word.
    fill(&client, "#q", "カルテ").await;
    click(&client, "#search").await;
    arrive(&client, "/search?q=", "#total").await;
    assert_eq!(text(&client, "#total").await, "1");
    assert!(
        text(&client, "#results")
            .await
            .contains("山田太郎さんのカルテを参照")
    );
    shot(&client, "03-search").await;

    // The patient access report.
    client
        .goto(&format!("{base}/reports/patient"))
        .await
        .unwrap();
    fill(&client, "#patient", "P0099").await;
    click(&client, "#show").await;
    arrive(&client, "/reports/patient", "#accesses-table").await;
    let table = text(&client, "#accesses-table").await;
    assert!(
        table.contains("n002") && table.contains("山田花子"),
        "{table}"
    );
    shot(&client, "04-patient-report").await;

    // Close the VIP chart alert as a false positive.
    let id = common::delivery::alerts(&server)
        .iter()
        .find(|a| a["rule"] == "sensitive_records")
        .map(|a| a["id"].as_i64().unwrap())
        .unwrap();
    client.goto(&format!("{base}/alerts")).await.unwrap();
    arrive(&client, "/alerts", "#alerts").await;
    shot(&client, "05-alerts").await;
    click(&client, &format!("a[href=\"/alerts/{id}\"]")).await;
    arrive(&client, &format!("/alerts/{id}"), "#close-form").await;
    click(&client, "#resolution-false_positive").await;
    fill(&client, "#close-reason", "主治医の指示による閲覧").await;
    click(&client, "#close").await;
    arrive(&client, &format!("/alerts/{id}"), "#resolution").await;
    assert_eq!(text(&client, "#resolution").await, "誤検知だった");
    assert!(
        text(&client, "#history")
            .await
            .contains("主治医の指示による閲覧")
    );
    shot(&client, "06-alert-closed").await;

    // Add a person to the roster, as the office manager would.
    client.goto(&format!("{base}/settings")).await.unwrap();
    arrive(&client, "/settings", "#roster-add").await;
    click(&client, "#roster-add").await;
    arrive(&client, "/settings/roster", "#roster-form").await;
    fill(&client, "input[name=id]", "n077").await;
    fill(&client, "input[name=name]", "佐藤 次郎").await;
    click(&client, "input[name=role][value=nurse]").await;
    shot(&client, "07-roster-form").await;
    click(&client, "button[value=save]").await;
    arrive(&client, "/settings", "#roster-saved").await;
    assert!(text(&client, "#roster-table").await.contains("佐藤 次郎"));
    shot(&client, "08-roster-saved").await;
    client.close().await.unwrap();

    let (_, body) = common::http_get(server.http, &format!("/api/v1/alerts/{id}")).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["alert"]["status"], "closed");
    assert_eq!(answer["alert"]["resolution"], "false_positive");
}
