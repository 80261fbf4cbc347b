//! The review as PDF: its HTML printed by headless Chromium (the page as a browser shows it,
//! Japanese fonts and all), for a printed, filed copy. Chromium is not part of mimamori: the
//! appliance uses the one installed (`[report] browser`, or `chromium`, `chromium-browser`,
//! `google-chrome` on the PATH) and says how to get one when there is none. It runs with a
//! page policy that allows no script and no fetch, no name resolution, a profile of its own in
//! a private temporary folder, and a time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ReportError;

/// The longest a PDF may take to print.
pub const PRINT_TIMEOUT: Duration = Duration::from_secs(60);

/// The browsers looked for on the PATH when none is configured.
const BROWSERS: &[&str] = &[
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The browser to print with: `configured`, or the first of [`BROWSERS`] on the PATH.
pub fn browser(configured: Option<&Path>) -> Result<PathBuf, ReportError> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(ReportError::Render(format!(
                "PDF: report.browser {} is not a file",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    BROWSERS
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            ReportError::Render(
                "PDF needs Chromium, which is not installed: `apt install chromium`, or set \
                 [report] browser to a Chrome or Chromium binary"
                    .into(),
            )
        })
}

/// `html` printed to PDF by `browser`.
pub fn from_html(html: &str, browser: &Path) -> Result<Vec<u8>, ReportError> {
    let fail = |what: &str| ReportError::Render(format!("PDF: {what}"));
    let dir = private_dir().map_err(|e| fail(&format!("a temporary folder: {e}")))?;
    let result = (|| {
        let page = dir.join("review.html");
        let out = dir.join("review.pdf");
        // The page may run nothing and fetch nothing (it has no script or external resource;
        // this says so to the browser).
        let html = html.replacen(
            "<head>",
            "<head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            1,
        );
        std::fs::write(&page, html).map_err(|e| fail(&e.to_string()))?;
        let mut command = Command::new(browser);
        command
            .arg("--headless")
            .arg("--disable-gpu")
            .arg("--no-first-run")
            .arg("--disable-extensions")
            // Nothing is fetched: the review has no external resource, and may have no network.
            .arg("--host-resolver-rules=MAP * ~NOTFOUND")
            .arg("--no-pdf-header-footer")
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--print-to-pdf={}", out.display()))
            .arg(format!("file://{}", page.display()))
            .env("HOME", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Chromium refuses to run as root inside its sandbox.
        if is_root() {
            command.arg("--no-sandbox");
        }
        // Its own process group: on a timeout the browser and every helper it started go.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| fail(&format!("cannot run {}: {e}", browser.display())))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < PRINT_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(format!("-{}", child.id()))
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(&format!(
                        "{} did not finish within {} s",
                        browser.display(),
                        PRINT_TIMEOUT.as_secs()
                    )));
                }
                Err(e) => return Err(fail(&e.to_string())),
            }
        };
        let pdf = std::fs::read(&out).unwrap_or_default();
        if !pdf.starts_with(b"%PDF") {
            return Err(fail(&format!(
                "{} printed no PDF ({status})",
                browser.display()
            )));
        }
        Ok(pdf)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The prefix of the printing folders; one left by a process killed while printing (it holds
/// the review's HTML, patient IDs and all) is removed by the next print.
const DIR_PREFIX: &str = "mimamori-pdf-";

/// Removes printing folders older than twice [`PRINT_TIMEOUT`]: nobody prints in them still.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > PRINT_TIMEOUT * 2);
        let ours = entry.file_name().to_string_lossy().starts_with(DIR_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if ours && old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new folder only this user can read, in the system's temporary folder.
fn private_dir() -> std::io::Result<PathBuf> {
    remove_stale();
    use std::os::unix::fs::DirBuilderExt;
    let mut random = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
