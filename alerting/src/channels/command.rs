//! The optional automatic response: a program the admin configures (disable the account in the
//! EHR, block an address at the UTM), run when a matching rule raises an alert. It gets the
//! notice (its alert documents) as JSON on stdin and the first alert's facts in `MIMAMORI_*`
//! environment variables, never as arguments (an account name from a log could look like an
//! option). Exit 0: done; exit 75 (EX_TEMPFAIL): try again later; anything else: failed, not
//! retried. It runs in a process group of its own: when it exits, or runs past the time
//! allowed, anything it left running there is stopped. What it printed is kept with the
//! delivery and shown with the alert.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::http::short;
use super::{ATTEMPT_TIMEOUT, ChannelConfig, Notice, SendError, Sent};

/// Output kept from the program, at most (the rest is read and dropped, so it never blocks).
const OUTPUT_BYTES: usize = 64 << 10;

/// How long output is still read after the program exited (a child it left may hold the pipe).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Kills the program's process group when dropped: after it exits, on a timeout, at shutdown.
struct Group(Option<rustix::process::Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads `from` to its end into `kept` (at most [`OUTPUT_BYTES`] kept, the rest dropped), so
/// what was read is there even if the reading is abandoned.
async fn drain(mut from: impl AsyncRead + Unpin, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

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
        .process_group(0)
        .kill_on_drop(true);
    if let Some(d) = notice.alerts.first() {
        command
            .env("MIMAMORI_ALERT_ID", d.alert_id.to_string())
            .env("MIMAMORI_RULE", &d.rule)
            .env("MIMAMORI_SEVERITY", &d.severity)
            .env("MIMAMORI_USER", d.user.as_deref().unwrap_or(""))
            .env("MIMAMORI_SITE", d.site.as_deref().unwrap_or(""));
        if d.change == crate::outbox::Change::Test {
            // `mimamori channels test`: the program should do nothing real.
            command.env("MIMAMORI_TEST", "1");
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| SendError::Permanent(format!("cannot run {program}: {e}")))?;
    let _group = Group(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let input = body.to_owned();
    // A program that does not read its input must not block us.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    let (out, err) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let readers = [
        tokio::spawn(drain(stdout, out.clone())),
        tokio::spawn(drain(stderr, err.clone())),
    ];
    let status = tokio::time::timeout(ATTEMPT_TIMEOUT, child.wait()).await;
    writer.abort();
    // Output still on its way is read for a moment; a child left holding the pipe is not waited
    // for.
    for task in readers {
        let abort = task.abort_handle();
        let _ = tokio::time::timeout(OUTPUT_GRACE, task).await;
        abort.abort();
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner()))
            .trim()
            .to_owned()
    };
    let said = short(format!("{} {}", text(&out), text(&err)).trim());
    let status = match status {
        Err(_) => {
            return Err(SendError::Retry {
                reason: format!(
                    "{program} did not finish within {} s (stopped)",
                    ATTEMPT_TIMEOUT.as_secs()
                ),
                after: None,
            });
        }
        Ok(Err(e)) => {
            return Err(SendError::Retry {
                reason: format!("{program}: {e}"),
                after: None,
            });
        }
        Ok(Ok(status)) => status,
    };
    match status.code() {
        Some(0) => Ok(Sent(format!("exit 0: {said}"))),
        Some(75) => Err(SendError::Retry {
            reason: format!("exit 75 (try again): {said}"),
            after: None,
        }),
        Some(code) => Err(SendError::Permanent(format!("exit {code}: {said}"))),
        None => Err(SendError::Permanent(format!("killed by a signal: {said}"))),
    }
}
