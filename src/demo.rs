//! `mimamori demo`: one command, no config. It simulates a two-site clinic's week with planted
//! incidents, imports it (the rules run over it in time order), starts a local SMTP server that
//! keeps what the email channel sends, creates (or resets) the `demo` administrator, and serves
//! the whole service on loopback addresses with a banner saying it is a demo.
//!
//! Everything lives in one folder (`./mimamori-demo` by default) marked by a `DEMO` file: a
//! folder without it is never touched. Running it again reuses the same week (the import skips
//! what is stored), so it is safe; `--fresh` starts over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;

use crate::Failure;
use crate::config::{Config, DemoUi};

/// The file that marks a folder as the demo's, with the simulated week's first day.
const MARKER: &str = "DEMO";
/// Days simulated.
const DAYS: u32 = 7;
/// The demo's administrator.
pub const DEMO_USER: &str = "demo";

pub struct Options {
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub syslog: SocketAddr,
    pub fresh: bool,
}

pub fn run(options: &Options) -> Result<(), Failure> {
    let dir = std::path::absolute(&options.dir)
        .with_context(|| format!("{}", options.dir.display()))
        .map_err(Failure::Runtime)?;
    for (name, addr) in [("--http", options.http), ("--syslog", options.syslog)] {
        if addr.port() == 0 {
            return Err(Failure::Usage(format!(
                "{name} {addr}: give a port (the demo prints its links with it)"
            )));
        }
        if !addr.ip().is_loopback() {
            return Err(Failure::Usage(format!(
                "{name} {addr}: the demo listens on this machine only (127.0.0.1 or ::1); use `mimamori serve` with a config for real use"
            )));
        }
    }
    let start = prepare(&dir, options.fresh)?;
    // A demo already running here keeps its settings: nothing is rewritten under it.
    let data = dir.join("data");
    if data.is_dir() {
        store::lock_data_dir(&data).map_err(|e| {
            Failure::Usage(format!(
                "{}: {e}; a demo is already running in this folder (stop it first, or use another --dir)",
                data.display()
            ))
        })?;
    }
    // Found now, not after a minute of importing.
    let free = std::net::TcpListener::bind(options.http)
        .map(drop)
        .map_err(|e| ("--http", options.http, e))
        .and_then(|()| {
            std::net::TcpListener::bind(options.syslog)
                .and_then(|_tcp| std::net::UdpSocket::bind(options.syslog).map(drop))
                .map_err(|e| ("--syslog", options.syslog, e))
        });
    if let Err((name, addr, e)) = free {
        return Err(Failure::Usage(format!(
            "{name} {addr}: cannot listen there ({e}); is a demo or server already running? Stop it or choose another port"
        )));
    }
    let sim = dir.join("simulated");
    // Marked whole when written: an interrupted run's half week is made again.
    let whole = sim.join("WHOLE");
    let made = if whole.is_file() {
        None
    } else {
        let _ = std::fs::remove_dir_all(&sim);
        let made = crate::simulate::generate(DAYS, 1, Some(start), &sim)
            .and_then(|made| {
                std::fs::write(&whole, "the simulated week is complete\n")
                    .with_context(|| format!("cannot write {}", whole.display()))?;
                Ok(made)
            })
            .map_err(Failure::Runtime)?;
        Some(made)
    };
    let mailbox = dir.join("mailbox");
    let smtp = start_mail_receiver(&mailbox).map_err(Failure::Runtime)?;
    let config_path = dir.join("mimamori.toml");
    std::fs::write(&config_path, config_text(&dir, options, smtp))
        .with_context(|| format!("cannot write {}", config_path.display()))
        .map_err(Failure::Runtime)?;
    let mut checked = Config::load(Some(&config_path), None)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("the demo's own configuration: {e}")))?;
    let end = start + chrono::Duration::days(i64::from(DAYS) - 1);
    match &made {
        Some(m) => println!(
            "mimamori demo: a two-site clinic's week, {start} to {end}: {} accesses by {} staff, {} incidents planted (listed in {})",
            m.accesses,
            m.staff,
            m.incidents,
            sim.join("labels.csv").display()
        ),
        None => println!(
            "mimamori demo: the clinic week {start} to {end} already in {} (--fresh starts over)",
            dir.display()
        ),
    }
    // The week's alerts are mailed when the service starts (a real install starts at the end).
    std::fs::create_dir_all(&checked.config.storage.data_dir)
        .map_err(anyhow::Error::new)
        .and_then(|()| {
            alerting::delivery::route_from_the_start(&alerting::runner::alerts_db_path(
                &checked.config.storage.data_dir,
            ))
            .map_err(anyhow::Error::new)
        })
        .map_err(Failure::Runtime)?;
    println!("importing the week and running the rules over it ...");
    let options_import = crate::import::Options {
        format: ingest::import::Format::Auto,
        allow_rejects: true,
        report: None,
    };
    crate::import::run(&checked, &[sim.join("logs")], options_import)?;
    let password = demo_account(&checked).map_err(Failure::Runtime)?;
    checked.demo = Some(DemoUi {
        banner: "デモ: 架空の診療所の1週間です。実際の患者・職員のデータではありません。\
                 / Demo: a made-up clinic's week, no real patients or staff."
            .into(),
        mailbox: mailbox.clone(),
    });
    let syslog = options.syslog;
    let dir_shown = dir.display().to_string();
    crate::serve::serve_then(checked, move |running| {
        let http = running.http_addr;
        println!(
            "\nready:\n  web UI    http://{http}/  sign in as `{DEMO_USER}` with the password {password}\n  \
             mailbox   http://{http}/mailbox  (alert mails, received by a local SMTP server on {smtp}; nothing leaves this machine)\n  \
             syslog    {syslog} UDP and TCP, e.g.  logger -n {ip} -P {port} -T \"user=n002 action=VIEW_CHART patient=P000042\"\n  \
             data      {dir_shown}  (run again to reuse it; --fresh starts over)\n\
             Ctrl-C stops it. For real use: `mimamori serve` with a config (README.md).",
            ip = syslog.ip(),
            port = syslog.port(),
        );
    })
    .map_err(Failure::Runtime)
}

/// Makes `dir` the demo's folder, or checks that it is; returns the simulated week's first day.
fn prepare(dir: &Path, fresh: bool) -> Result<NaiveDate, Failure> {
    if dir.exists() && !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "--dir {}: not a folder",
            dir.display()
        )));
    }
    let marker = dir.join(MARKER);
    let kept = std::fs::read_to_string(&marker).ok();
    let not_ours = kept.is_none()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
    if not_ours {
        return Err(Failure::Usage(format!(
            "{} is not empty and is not a demo folder (no {MARKER} file): choose another with --dir",
            dir.display()
        )));
    }
    let kept_start = kept.as_deref().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("start="))
            .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
    });
    if fresh && kept.is_some() {
        // A demo still running on the folder holds its data directory: never pull it away.
        let data = dir.join("data");
        let _held = if data.is_dir() {
            Some(store::lock_data_dir(&data).map_err(|e| {
                Failure::Usage(format!(
                    "{}: {e}; stop the demo that is running there first",
                    data.display()
                ))
            })?)
        } else {
            None
        };
        for part in ["data", "simulated", "mailbox", "mimamori.toml"] {
            let path = dir.join(part);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Failure::Runtime(
                    anyhow::Error::new(e).context(format!("cannot remove {}", path.display())),
                ));
            }
        }
    }
    let start = match kept_start.filter(|_| !fresh) {
        Some(start) => start,
        None => {
            // The week that ended yesterday, in the clinic's zone.
            let today = chrono::Utc::now()
                .with_timezone(&chrono_tz::Asia::Tokyo)
                .date_naive();
            today - chrono::Duration::days(i64::from(DAYS))
        }
    };
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::write(
                &marker,
                format!(
                    "mimamori demo folder: `mimamori demo --fresh` may delete what is in it\nstart={start}\n"
                ),
            )
        })
        .with_context(|| format!("cannot write {}", marker.display()))
        .map_err(Failure::Runtime)?;
    Ok(start)
}

/// The demo's configuration: the built-in clinic with the simulated roster, loopback listeners,
/// and one email channel to the local mailbox (plain SMTP, on this machine only).
fn config_text(dir: &Path, options: &Options, smtp: SocketAddr) -> String {
    let path = |p: &str| toml_string(&dir.join(p).display().to_string());
    format!(
        "# Written by `mimamori demo` each time it starts: the demo's own settings, not for real use.\n\
         [storage]\ndata_dir = {data}\n\n\
         [syslog]\nudp_listen = [\"{syslog}\"]\ntcp_listen = [\"{syslog}\"]\n\n\
         [http]\nlisten = \"{http}\"\n\n\
         [roster]\nfile = {roster}\n\n\
         [delivery]\nlink_base = \"http://{http}\"\ngroup_wait_seconds = 2\n\n\
         [[channels]]\nname = \"demo-mailbox\"\nkind = \"email\"\nsmtp_host = \"{ip}\"\nsmtp_port = {port}\n\
         tls = \"none\"\nfrom = \"mimamori <mimamori@demo.invalid>\"\nto = [\"院長 <director@demo.invalid>\"]\n\
         min_severity = \"medium\"\n",
        data = path("data"),
        roster = path("simulated/roster.csv"),
        syslog = options.syslog,
        http = options.http,
        ip = smtp.ip(),
        port = smtp.port(),
    )
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Starts the SMTP receiver on a loopback port of its own, on a thread of its own, for as long
/// as the process runs.
fn start_mail_receiver(dir: &Path) -> anyhow::Result<SocketAddr> {
    let mailbox = alerting::mailbox::Mailbox::new(dir);
    let (tell, told) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("demo-mailbox".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = tell.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                match alerting::mailbox::smtp::Receiver::start(loopback, mailbox).await {
                    Ok(receiver) => {
                        let _ = tell.send(Ok(receiver.addr));
                        std::future::pending::<()>().await;
                        drop(receiver);
                    }
                    Err(e) => {
                        let _ = tell.send(Err(e));
                    }
                }
            });
        })?;
    told.recv()?.with_context(|| {
        format!(
            "cannot start the demo's mail receiver for {}",
            dir.display()
        )
    })
}

/// Creates the `demo` administrator, or gives it a new password; returns the password.
fn demo_account(checked: &crate::config::Checked) -> anyhow::Result<String> {
    use web::accounts::{AccountDb, Role, accounts_db_path};
    let db = AccountDb::open(&accounts_db_path(&checked.config.storage.data_dir))?;
    let password = web::accounts::random_token()
        .chars()
        .take(16)
        .collect::<String>();
    let exists = db.list()?.iter().any(|a| a.name == DEMO_USER);
    if exists {
        db.set_password(DEMO_USER, &password)?;
        db.clear_failures(DEMO_USER);
    } else {
        db.add(DEMO_USER, Role::Admin, &password, "mimamori demo")?;
    }
    Ok(password)
}
