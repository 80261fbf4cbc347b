//! mimamori: collects a clinic's access logs, keeps them searchable in a hash-chained log that
//! `mimamori verify` checks, and raises alerts. This binary wires the crates together: CLI, HTTP
//! server, configuration.

mod accounts;
mod alerts;
mod backup;
mod bench;
mod bench_delivery;
mod bench_import;
mod bench_rules;
mod config;
mod config_errors;
mod delivery;
mod demo;
mod import;
mod output;
mod owner;
mod report;
mod serve;
mod simulate;
mod store_admin;
mod web_ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use alerting::db::AlertStatus;

use crate::config::Config;

/// mimalloc instead of glibc's allocator: measured in `mimamori bench` (ARCHITECTURE.md,
/// "Performance"), for the peak memory glibc's per-thread arenas kept after a burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mimamori",
    version,
    about = "Watches over a clinic's access logs"
)]
struct Cli {
    /// Configuration file (TOML); without one, built-in defaults are used.
    #[arg(long, global = true, env = "MIMAMORI_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default ./mimamori-data); overrides the config file.
    #[arg(long, global = true, env = "MIMAMORI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Try it in one command: a made-up two-site clinic's week with incidents, imported, the
    /// rules run, alert mails delivered to a local mailbox, and the web UI on 127.0.0.1 with a
    /// `demo` administrator whose password is printed. Safe to run again.
    Demo {
        /// The demo's folder (data, simulated logs, mailbox); only a folder it made is reused.
        #[arg(long, default_value = "mimamori-demo")]
        dir: PathBuf,
        /// The web UI's address (loopback only).
        #[arg(long, default_value = "127.0.0.1:8480")]
        http: std::net::SocketAddr,
        /// Syslog over UDP and TCP (loopback only).
        #[arg(long, default_value = "127.0.0.1:5514")]
        syslog: std::net::SocketAddr,
        /// Delete the demo's data and simulate a new week.
        #[arg(long)]
        fresh: bool,
    },
    /// Run the service: syslog listeners, store, HTTP API.
    Serve,
    /// Reports for review (works while the server runs).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Search stored events, newest first (works while the server runs).
    Search {
        /// Query: words, `field:value`, AND/OR/NOT, "phrases", ranges. Empty or `*` for all.
        query: String,
        /// Oldest time: RFC 3339, a date, or an age such as 24h, 7d.
        #[arg(long)]
        from: Option<String>,
        /// Newest time (exclusive), same forms as --from.
        #[arg(long)]
        to: Option<String>,
        /// Events shown at most (newest first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Matches skipped first: where the page starts (the end of the output says the next).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// One JSON event per line.
        #[arg(long)]
        json: bool,
        /// Include `event.original` (the raw input, verbatim) in JSON output.
        #[arg(long)]
        original: bool,
    },
    /// Import log files or directories (`.gz` too): EVTX, Windows event XML, Winlogbeat and
    /// NXLog JSON, EHR CSV and JSON lines, FHIR AuditEvent, IHE ATNA, syslog. Records already
    /// stored are skipped. Exit code 3 when records were rejected (unless --allow-rejects).
    Import {
        /// auto, evtx, winxml, winlogbeat, nxlog, ehr-csv (csv), ehr-jsonl, fhir, atna, syslog,
        /// json (jsonl, ndjson), xml.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Exit 0 even when some records were rejected.
        #[arg(long)]
        allow_rejects: bool,
        /// Where to write every rejected record (default: <data_dir>/import-reports/).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Files or directories to import.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List alerts, newest first (works while the server runs); `ack` and `close` change one.
    Alerts {
        #[command(subcommand)]
        change: Option<AlertChange>,
        /// Alerts seen since: RFC 3339, a date, or an age such as 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// open, acknowledged or closed.
        #[arg(long)]
        status: Option<String>,
        /// Alerts listed at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON alert per line.
        #[arg(long)]
        json: bool,
    },
    /// Where alerts are sent (email, chat, webhooks, syslog): `list` and `test`.
    Channels {
        #[command(subcommand)]
        command: ChannelsCommand,
    },
    /// Accounts of the web UI: `add`, `list`, `passwd`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens with scopes: `add`, `list`, `revoke`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The rules: `check` validates the clinic model and detections in the config.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Write a synthetic two-site clinic (roster, config, logs in the real formats) with
    /// injected incidents listed in labels.csv, for trying the rules and measuring them.
    Simulate {
        /// Days simulated.
        #[arg(long, default_value_t = 28)]
        days: u32,
        /// Seed of the simulation: the same seed and start give the same logs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First day (YYYY-MM-DD); default: the days that end yesterday.
        #[arg(long)]
        start: Option<chrono::NaiveDate>,
        /// Directory the logs, roster, labels and config are written to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the stored audit trail: every log record against its checksum and the hash chain,
    /// and every indexed event against the log. Exit code 1 on any finding.
    Verify,
    /// Rebuild the search index from the write-ahead log (stop the server first).
    Reindex,
    /// Back up the data (log, alerts, accounts, reviews) and the config into a folder, while
    /// the service runs; only what changed since the last backup there is copied.
    Backup {
        /// The backup folder (a USB disk or NAS share; keep one copy offline).
        #[arg(long)]
        to: PathBuf,
        /// Keep only the newest N backups in the folder.
        #[arg(long)]
        keep: Option<usize>,
    },
    /// Restore a backup into an empty data directory, rebuild the index and verify the log.
    Restore {
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// Which backup (a name under snapshots/); the newest by default.
        #[arg(long)]
        snapshot: Option<String>,
        /// Restore nothing: read every file of every backup in the folder (or of --snapshot)
        /// against its checksum. Exit code 1 when one is missing or damaged.
        #[arg(long)]
        check: bool,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Measure ingest throughput, search latency and index size on this machine.
    Bench {
        /// Events to send over TCP.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Searches to time per query kind.
        #[arg(long, default_value_t = 500)]
        searches: usize,
        /// Size of each generated import file (Winlogbeat JSON, EHR CSV, FHIR ndjson), MB.
        #[arg(long, default_value_t = 64)]
        import_mb: u64,
        /// Also import one Winlogbeat file of this many MB and report its peak memory (e.g. 2048).
        #[arg(long, default_value_t = 0)]
        big_file_mb: u64,
        /// Keep the bench's data directory (to time searches over it again with --searches-in).
        #[arg(long)]
        keep: bool,
        /// Only time the searches, over the data directory a kept bench of `--events` left.
        #[arg(long, value_name = "DIR")]
        searches_in: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AlertChange {
    /// Someone is looking at it.
    Ack {
        /// The alert's number (`mimamori alerts` lists them).
        id: i64,
    },
    /// Done with it: say why (kept with the alert for the access review).
    Close {
        /// The alert's number.
        id: i64,
        /// Why it is closed (kept with the alert).
        #[arg(long)]
        reason: String,
    },
    /// Open it again.
    Reopen {
        /// The alert's number.
        id: i64,
    },
    /// The messages sent (or being sent) to the channels: state, tries, the receiver's answer.
    Deliveries {
        /// Only those given up on.
        #[arg(long)]
        failed: bool,
        /// Only this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Deliveries shown at most (newest first).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON delivery per line.
        #[arg(long)]
        json: bool,
        /// Queue a dead delivery again (by its number).
        #[arg(long)]
        retry: Option<i64>,
    },
    /// Mute alerts for a while (they are still raised and kept, only not sent).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// One alert whole: explanation, evidence event ids, and who changed its status when.
    Show {
        /// The alert's number.
        id: i64,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; its password is generated and printed once unless --password-stdin.
    Add {
        name: String,
        /// admin (everything), auditor (plus alerts and sign-off) or viewer (search, reports).
        #[arg(long)]
        role: String,
        /// Read the password from one line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every account with its role and state.
    List,
    /// Set a new password (generated unless --password-stdin); the account's sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token (printed once; only its digest is kept).
    Add {
        name: String,
        /// search, alerts:read, alerts:write, ingest (repeat for several).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// Every token: scopes, state, when created and last used (never the token itself).
    List,
    /// Stop a token from working, at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Mute alerts that match (at least one of --rule, --user, --site) for a time.
    Add {
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// How long: 30m, 2h, 3d (at most 90d).
        #[arg(long = "for")]
        duration: String,
        /// Why (kept with the silence).
        #[arg(long)]
        reason: String,
    },
    /// Silences in force (--all: also ended ones).
    List {
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Expire { id: i64 },
}

#[derive(Subcommand)]
enum ChannelsCommand {
    /// Each channel: kind, routing, queue, last message sent, last error.
    List,
    /// Send a test message now and print what the receiver answered.
    Test {
        /// The channel's name in the config.
        name: String,
    },
}

/// How a review is written and whether it is sent.
#[derive(clap::Args)]
struct ReviewOptions {
    /// html, pdf (printed by Chromium), csv or json.
    #[arg(long, default_value = "html")]
    format: String,
    /// ja or en.
    #[arg(long, default_value = "ja")]
    lang: String,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Send the kept review (kept now if it is not yet) to the report channels
    /// (`[report] channels`): queued, and sent by the server's senders with retries.
    #[arg(long)]
    send: bool,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// The weekly access review: totals, off-hours use, alerts and their triage, account
    /// changes, the patients opened by the most staff, holes in the audit trail, a heat map.
    Weekly {
        /// The ISO week, e.g. 2026-W48 (default: last week, in the clinic's time zone).
        #[arg(long)]
        week: Option<String>,
        #[command(flatten)]
        options: ReviewOptions,
    },
    /// The same review over a calendar month, each person against their 3-month average.
    Monthly {
        /// The month, e.g. 2026-11 (default: last month, in the clinic's time zone).
        #[arg(long)]
        month: Option<String>,
        #[command(flatten)]
        options: ReviewOptions,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate the clinic model, roster and detections; print what they amount to.
    Check,
    /// Run the rules over a file of events offline: which fire and why, and which came close.
    /// Nothing is stored.
    Test {
        /// A log file in any import format.
        #[arg(long)]
        events: PathBuf,
        /// Its format (as for `import --format`).
        #[arg(long, default_value = "auto")]
        format: String,
    },
    /// Replay the rules (or one rule) over the stored history and list what they would have
    /// raised, before a new or changed rule is switched on. Nothing is stored.
    Backtest {
        /// How far back: an age (90d) or a date.
        #[arg(long, default_value = "90d")]
        from: String,
        /// Only this rule (a detection name or a custom rule's name).
        #[arg(long)]
        rule: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the fully commented default configuration.
    Default,
    /// Check a configuration file and print the result.
    Check,
}

/// Exit codes: 0 ok, 1 failure at run time, 2 bad usage, configuration or query, 3 an import
/// that rejected records.
fn main() -> ExitCode {
    // Nothing mimamori writes (the log, the index, the databases) is readable by other users,
    // whatever the shell's umask: at most rwxr-x--- (the unit sets the same).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o027));
    let cli = Cli::parse();
    // rustls needs one crypto provider for the whole process (ring: no C toolchain needed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", config::DEFAULT_CONFIG);
            Ok(())
        }
        Command::Simulate {
            days,
            seed,
            start,
            out,
        } => simulate::run(days, seed, start, &out).map_err(Failure::Runtime),
        Command::Demo {
            dir,
            http,
            syslog,
            fresh,
        } => {
            if cli.config.is_some() || cli.data_dir.is_some() {
                eprintln!(
                    "mimamori: note: demo ignores --config and --data-dir (and MIMAMORI_CONFIG, MIMAMORI_DATA_DIR): it keeps everything in --dir"
                );
            }
            demo::run(&demo::Options {
                dir,
                http,
                syslog,
                fresh,
            })
        }
        command => match Config::load(cli.config.as_deref(), cli.data_dir.as_deref())
            .map_err(|e| Failure::Usage(e.to_string()))
            .and_then(|checked| {
                let data_dir = &checked.config.storage.data_dir;
                owner::act_as_owner(data_dir).map_err(Failure::Runtime)?;
                // Half a restore is no data directory: nothing works on it but a new restore
                // (which says what to do itself).
                if !matches!(command, Command::Restore { .. }) {
                    store::refuse_half_restored(data_dir)
                        .map_err(|e| Failure::Usage(e.to_string()))?;
                }
                Ok(checked)
            }) {
            Err(e) => Err(e),
            Ok(checked) => match command {
                Command::Serve => serve::serve(checked).map_err(Failure::Runtime),
                Command::Report { command } => {
                    let (span, period, o) = match command {
                        ReportCommand::Weekly { week, options } => {
                            (::report::Span::Week, week, options)
                        }
                        ReportCommand::Monthly { month, options } => {
                            (::report::Span::Month, month, options)
                        }
                    };
                    report::review(
                        &checked,
                        span,
                        period.as_deref(),
                        &o.format,
                        &o.lang,
                        o.out.as_deref(),
                        o.send,
                    )
                }
                Command::Search {
                    query,
                    from,
                    to,
                    limit,
                    offset,
                    json,
                    original,
                } => {
                    let wanted = serve::Wanted {
                        query: &query,
                        from: from.as_deref(),
                        to: to.as_deref(),
                        limit,
                        offset,
                    };
                    serve::search(&checked, wanted, serve::Output { json, original })
                }
                Command::Config {
                    command: ConfigCommand::Check,
                } => {
                    println!(
                        "configuration is valid; data in {}",
                        checked.config.storage.data_dir.display()
                    );
                    Ok(())
                }
                Command::Import {
                    format,
                    allow_rejects,
                    report,
                    paths,
                } => match format.parse() {
                    Err(message) => Err(Failure::Usage(format!("--format: {message}"))),
                    Ok(format) => {
                        let options = import::Options {
                            format,
                            allow_rejects,
                            report,
                        };
                        import::run(&checked, &paths, options)
                    }
                },
                Command::Alerts {
                    change: Some(change),
                    ..
                } => match change {
                    AlertChange::Ack { id } => {
                        alerts::set_status(&checked, id, AlertStatus::Acknowledged, None)
                    }
                    AlertChange::Close { id, reason } => {
                        alerts::set_status(&checked, id, AlertStatus::Closed, Some(&reason))
                    }
                    AlertChange::Reopen { id } => {
                        alerts::set_status(&checked, id, AlertStatus::Open, None)
                    }
                    AlertChange::Show { id, json } => alerts::show(&checked, id, json),
                    AlertChange::Deliveries {
                        failed,
                        channel,
                        limit,
                        json,
                        retry,
                    } => delivery::deliveries(
                        &checked,
                        delivery::DeliveryView {
                            failed,
                            channel: channel.as_deref(),
                            limit,
                            json,
                            retry,
                        },
                    ),
                    AlertChange::Silence { command } => match command {
                        SilenceCommand::Add {
                            rule,
                            user,
                            site,
                            duration,
                            reason,
                        } => delivery::add_silence(
                            &checked,
                            delivery::NewSilence {
                                rule,
                                user,
                                site,
                                duration,
                                reason,
                            },
                        ),
                        SilenceCommand::List { all } => delivery::list_silences(&checked, all),
                        SilenceCommand::Expire { id } => delivery::expire_silence(&checked, id),
                    },
                },
                Command::Alerts {
                    change: None,
                    since,
                    status,
                    limit,
                    json,
                } => alerts::list(&checked, since.as_deref(), status.as_deref(), limit, json),
                Command::Channels {
                    command: ChannelsCommand::List,
                } => delivery::list_channels(&checked),
                Command::Channels {
                    command: ChannelsCommand::Test { name },
                } => delivery::test_channel(&checked, &name),
                Command::Rules {
                    command: RulesCommand::Check,
                } => {
                    alerts::print_rules(&checked);
                    Ok(())
                }
                Command::Rules {
                    command: RulesCommand::Test { events, format },
                } => match format.parse() {
                    Err(message) => Err(Failure::Usage(format!("--format: {message}"))),
                    Ok(format) => alerts::test(&checked, &events, format),
                },
                Command::Rules {
                    command: RulesCommand::Backtest { from, rule },
                } => alerts::backtest(&checked, &from, rule.as_deref()),
                Command::User { command } => match command {
                    UserCommand::Add {
                        name,
                        role,
                        password_stdin,
                    } => accounts::add(&checked, &name, &role, password_stdin),
                    UserCommand::List => accounts::list(&checked),
                    UserCommand::Passwd {
                        name,
                        password_stdin,
                    } => accounts::passwd(&checked, &name, password_stdin),
                },
                Command::Token { command } => match command {
                    TokenCommand::Add { name, scopes } => {
                        accounts::add_token(&checked, &name, &scopes)
                    }
                    TokenCommand::List => accounts::list_tokens(&checked),
                    TokenCommand::Revoke { name } => accounts::revoke_token(&checked, &name),
                },
                Command::Verify => store_admin::verify(&checked),
                Command::Reindex => store_admin::reindex(&checked),
                Command::Backup { to, keep } => backup::backup(&checked, &to, keep),
                Command::Restore {
                    from,
                    snapshot,
                    check: true,
                } => backup::check(&from, snapshot.as_deref()),
                Command::Restore { from, snapshot, .. } => {
                    backup::restore(&checked, &from, snapshot.as_deref())
                }
                Command::Bench {
                    events,
                    searches,
                    import_mb,
                    big_file_mb,
                    keep,
                    searches_in,
                } => match searches_in {
                    Some(dir) => bench::searches_only(&dir, events, searches),
                    None => bench::run(events, searches, import_mb, big_file_mb, keep),
                }
                .map_err(Failure::Runtime),
                Command::Config {
                    command: ConfigCommand::Default,
                }
                | Command::Simulate { .. }
                | Command::Demo { .. } => unreachable!("handled above"),
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("mimamori: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("mimamori: {}", causes(&e));
            ExitCode::from(1)
        }
        Err(Failure::Rejected(message)) => {
            eprintln!("mimamori: {message}");
            ExitCode::from(3)
        }
    }
}

/// An error with its causes, each said once (many errors already name their cause).
pub fn causes(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// How a command failed, which decides the exit code.
pub enum Failure {
    /// The user asked for something wrong (config, query, time): exit 2.
    Usage(String),
    /// Something failed at run time: exit 1.
    Runtime(anyhow::Error),
    /// An import finished but refused some records: exit 3.
    Rejected(String),
}
