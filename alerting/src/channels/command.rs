//! The optional automatic response: a program the admin configures (disable the account in the
//! EHR, block an address at the UTM), run when a matching rule raises an alert. It gets the
//! notice (its alert documents) as JSON on stdin and the first alert's facts in `MIMAMORI_*`
//! environment variables, never as arguments (an account name from a log could look like an
//! option). Exit 0: done; exit 75 (EX_TEMPFAIL): try again later; anything else: failed, not
//! retried. What it printed is kept with the delivery and shown with the alert.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::http::short;
use super::{ATTEMPT_TIMEOUT, ChannelConfig, Notice, SendError, Sent};

/// Output kept from the program, at most.
const OUTPUT_BYTES: u64 = 64 << 10;

pub(super) async fn run(c: &ChannelConfig, body: &str) -> Result<Sent, SendError> {
    let notice: Notice = serde_json::from_str(body)
        .map_err(|e| SendError::Permanent(format!("stored notice: {e}")))?;
    let Some((program, args)) = c.command.split_first() else {
        return Err(SendError::Permanent("no command configured".into()));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("MIMAMORI_IDEMPOTENCY_KEY", &notice.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(d) = notice.alerts.first() {
        command
            .env("MIMAMORI_ALERT_ID", d.alert_id.to_string())
            .env("MIMAMORI_RULE", &d.rule)
            .env("MIMAMORI_SEVERITY", &d.severity)
            .env("MIMAMORI_USER", d.user.as_deref().unwrap_or(""))
            .env("MIMAMORI_SITE", d.site.as_deref().unwrap_or(""));
    }
    let mut child = command
        .spawn()
        .map_err(|e| SendError::Permanent(format!("cannot run {program}: {e}")))?;
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let body = body.to_owned();
    let run = async move {
        // A program that does not read its input must not block us.
        let write = async move {
            let _ = stdin.write_all(body.as_bytes()).await;
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (mut stdout, mut stderr) = (stdout.take(OUTPUT_BYTES), stderr.take(OUTPUT_BYTES));
        let read_out = stdout.read_to_end(&mut out);
        let read_err = stderr.read_to_end(&mut err);
        let (_, _, _) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    let (status, out, err) = tokio::time::timeout(ATTEMPT_TIMEOUT, run)
        .await
        .map_err(|_| SendError::Retry {
            reason: format!(
                "{program} did not finish within {} s (killed)",
                ATTEMPT_TIMEOUT.as_secs()
            ),
            after: None,
        })?;
    let status = status.map_err(|e| SendError::Retry {
        reason: format!("{program}: {e}"),
        after: None,
    })?;
    let said = short(&format!(
        "{} {}",
        String::from_utf8_lossy(&out).trim(),
        String::from_utf8_lossy(&err).trim()
    ));
    match status.code() {
        Some(0) => Ok(Sent(format!("exit 0: {}", said.trim()))),
        Some(75) => Err(SendError::Retry {
            reason: format!("exit 75 (try again): {}", said.trim()),
            after: None,
        }),
        Some(code) => Err(SendError::Permanent(format!(
            "exit {code}: {}",
            said.trim()
        ))),
        None => Err(SendError::Permanent(format!(
            "killed by a signal: {}",
            said.trim()
        ))),
    }
}
