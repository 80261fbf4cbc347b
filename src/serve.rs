//! `mimamori serve` and `mimamori search`: start the stages in data-flow order (store first,
//! then the listeners that feed it, then HTTP), and stop them in reverse.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ingest::import::Importer;
use ingest::{IngestMetrics, SyslogContext, TcpSyslogListener, UdpSyslogListener, tls_acceptor};
use store::{EventIndex, Health, Store, StoreError, StoreMetrics};
use tokio::task::JoinHandle;
use tracing::info;

use crate::Failure;
use crate::config::Checked;
use alerting::runner::{RulesRunner, alerts_db_path};
use web::{AppState, event_json, router, search_request};

/// A running service.
pub struct Running {
    pub tcp_addrs: Vec<SocketAddr>,
    pub tls_addrs: Vec<SocketAddr>,
    pub udp_addrs: Vec<SocketAddr>,
    pub http_addr: SocketAddr,
    store: Store,
    rules: Option<RulesRunner>,
    delivery: Option<alerting::delivery::Delivery>,
    tasks: Vec<JoinHandle<()>>,
    udp_stop: Arc<AtomicBool>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
}

pub async fn start(checked: &Checked, registry: prometheus::Registry) -> anyhow::Result<Running> {
    let config = &checked.config;
    let store_config = config.storage.clone();
    let store_metrics = StoreMetrics::new(&registry)?;
    let store = tokio::task::spawn_blocking(move || Store::open(&store_config, store_metrics))
        .await?
        .context("cannot open the store")?;
    let metrics = IngestMetrics::new(&registry)?;
    let context = Arc::new(SyslogContext::new(
        checked.syslog_parser(),
        config.syslog.max_message_bytes,
        metrics.clone(),
        store.sender(),
        config.windows.filter(),
    ));
    let importer = Arc::new(Importer::new(
        Arc::new(checked.parsers()),
        store.handle(),
        metrics,
    ));
    let rules = RulesRunner::start(
        &checked.runner_settings(),
        checked.engine(),
        checked.engine_source(),
        &store.handle(),
        &registry,
        store.health(),
    )?;
    let mut running = Running {
        tcp_addrs: Vec::new(),
        tls_addrs: Vec::new(),
        udp_addrs: Vec::new(),
        http_addr: config.http.listen,
        rules: Some(rules),
        delivery: None,
        store,
        tasks: Vec::new(),
        udp_stop: Arc::new(AtomicBool::new(false)),
        udp_threads: Vec::new(),
    };
    // From here a failure must still stop what was started: collect, then clean up on error.
    let delivery = alerting::delivery::Delivery::start(
        &alerts_db_path(&config.storage.data_dir),
        &config.delivery,
        &config.channels,
        &registry,
        running.store.health(),
    );
    match delivery {
        Ok(d) => running.delivery = Some(d),
        Err(e) => {
            running.shutdown().await.ok();
            return Err(anyhow::Error::new(e).context("cannot start alert delivery"));
        }
    }
    match bind_all(checked, &registry, context, importer, &mut running).await {
        Ok(()) => Ok(running),
        Err(e) => {
            running.shutdown().await.ok();
            Err(e)
        }
    }
}

async fn bind_all(
    checked: &Checked,
    registry: &prometheus::Registry,
    context: Arc<SyslogContext>,
    importer: Arc<Importer>,
    running: &mut Running,
) -> anyhow::Result<()> {
    let syslog = &checked.config.syslog;
    if let (false, Some(cert), Some(key)) = (
        syslog.tls_listen.is_empty(),
        syslog.tls_cert.as_deref(),
        syslog.tls_key.as_deref(),
    ) {
        let acceptor = tls_acceptor(cert, key).map_err(|e| anyhow::anyhow!("syslog TLS: {e}"))?;
        for addr in &syslog.tls_listen {
            let listener = TcpSyslogListener::bind(*addr, context.clone(), syslog.tcp_limits())
                .await?
                .with_tls(acceptor.clone());
            let local = listener.local_addr()?;
            running.tls_addrs.push(local);
            let task = spawn_stage(
                &running.health(),
                format!("syslog-tls {local}"),
                listener.run(),
            );
            running.tasks.push(task);
        }
    }
    for addr in &syslog.tcp_listen {
        let listener = TcpSyslogListener::bind(*addr, context.clone(), syslog.tcp_limits()).await?;
        let local = listener.local_addr()?;
        running.tcp_addrs.push(local);
        let task = spawn_stage(
            &running.health(),
            format!("syslog-tcp {local}"),
            listener.run(),
        );
        running.tasks.push(task);
    }
    for addr in &syslog.udp_listen {
        let listener =
            UdpSyslogListener::bind(*addr, context.clone(), syslog.udp_receive_buffer_bytes)?;
        let local = listener.local_addr()?;
        running.udp_addrs.push(local);
        let stop = running.udp_stop.clone();
        let health = running.health();
        let stage = format!("syslog-udp {local}");
        health.running(&stage);
        running.udp_threads.push(
            std::thread::Builder::new()
                .name("syslog-udp".into())
                .spawn(move || {
                    let _guard = health.guard(&stage);
                    listener.run(stop.clone());
                    if !stop.load(Ordering::Relaxed) {
                        health.failed(&stage, "stopped unexpectedly");
                    }
                })?,
        );
    }
    drop(context);
    let listener = tokio::net::TcpListener::bind(checked.config.http.listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", checked.config.http.listen))?;
    running.http_addr = listener.local_addr()?;
    let spool = ingest::spool::Spool::new(
        checked.spool_dir(),
        Duration::from_secs(checked.config.import.spool_poll_secs),
        Duration::from_secs(checked.config.import.spool_settle_secs),
    )?;
    let task = spawn_stage(
        &running.health(),
        "spool".into(),
        spool.run(importer.clone()),
    );
    running.tasks.push(task);
    let accounts = crate::web_ui::accounts(checked);
    let open_reads = checked.config.http.listen.ip().is_loopback() && accounts.is_some();
    let ui = crate::web_ui::build(
        checked,
        running.rules.as_ref().map(|r| r.reloader.clone()),
        accounts.clone(),
        registry,
        running.http_addr,
    )?;
    let app_reports = ui.as_ref().and_then(|u| u.reports.clone());
    let app = router(AppState {
        index: running.store.index().clone(),
        store: Some(running.store.handle()),
        health: running.health(),
        registry: registry.clone(),
        importer: Some(importer),
        ingest_tokens: Arc::new(checked.config.http.ingest_tokens.clone()),
        admin_tokens: Arc::new(checked.config.http.admin_tokens.clone()),
        read_tokens: Arc::new(checked.config.http.read_tokens.clone()),
        alerts: Some(Arc::new(std::sync::Mutex::new(
            alerting::db::AlertDb::open(
                &alerts_db_path(&checked.config.storage.data_dir),
                chrono::Duration::minutes(i64::from(checked.config.alerts.dedup_window_minutes)),
            )
            .context("cannot open the alert database")?,
        ))),
        reloader: running.rules.as_ref().map(|r| r.reloader.clone()),
        search_slots: Arc::new(tokio::sync::Semaphore::new(web::SEARCH_SLOTS)),
        request_timeout: Duration::from_secs(checked.config.http.request_timeout_secs),
        max_body_bytes: checked.config.http.max_body_bytes,
        subscribers: Arc::new(checked.config.subscribers.clone()),
        origin: checked.config.delivery.origin(),
        rule_names: Arc::new(crate::config::rule_names(&checked.custom_rules)),
        site_names: Arc::new(
            checked
                .config
                .sites
                .iter()
                .map(|s| s.name.clone())
                .collect(),
        ),
        streams: Arc::new(tokio::sync::Semaphore::new(web::api::delivery::MAX_STREAMS)),
        ui: ui.clone(),
        accounts,
        // With the token store unreadable, reads stay closed (a token could not be checked).
        open_reads,
        allowed_hosts: Arc::new({
            // The machine's own name is this appliance too (it is in the made certificate).
            let mut hosts = checked.config.web.allowed_hosts.clone();
            if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
                hosts.push(name.trim().to_owned());
            }
            hosts.retain(|h| !h.is_empty());
            hosts
        }),
    });
    // The weekly review, made when due.
    // (With the web UI off, or its databases unusable, the schedule still runs; a report
    // database it cannot open is a failed stage in /healthz.)
    if checked.config.report.weekly || checked.config.report.monthly {
        let archive = match app_reports.clone() {
            Some(archive) => Ok(archive),
            None => report::archive::ReportDb::open(&report::archive::reports_db_path(
                &checked.config.storage.data_dir,
            ))
            .map(Arc::new),
        };
        match archive {
            Ok(archive) => {
                let (checked, index) = (checked.clone(), running.index().clone());
                let reloader = running.rules.as_ref().map(|r| r.reloader.clone());
                let health = running.health();
                running.tasks.push(spawn_stage(
                    &running.health(),
                    crate::report::STAGE.into(),
                    async move {
                        crate::report::schedule(&checked, index, archive, reloader, health).await
                    },
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "the scheduled reviews are off: the report database cannot be used");
                running.health().failed(
                    crate::report::STAGE,
                    &format!("the report database cannot be used: {e}"),
                );
            }
        }
    }
    // The daily backup, when `[backup] dir` is set.
    if checked.config.backup.dir.is_some() {
        let (checked, health) = (checked.clone(), running.health());
        running.tasks.push(spawn_stage(
            &running.health(),
            crate::backup::STAGE.into(),
            async move { crate::backup::schedule(checked, health).await },
        ));
    }
    let listener = web::listener::BoundedListener::new(
        listener,
        web::listener::HttpLimits {
            max_connections: checked.config.http.max_connections,
            per_peer: checked.config.http.max_connections_per_peer,
            idle: Duration::from_secs(checked.config.http.idle_timeout_secs),
            header_timeout: Duration::from_secs(checked.config.http.header_timeout_secs),
        },
        registry,
    )?;
    let app = app.into_make_service_with_connect_info::<web::listener::ClientAddr>();
    let task = match crate::web_ui::https_acceptor(checked)? {
        Some(acceptor) => {
            let deadline = Duration::from_secs(checked.config.http.header_timeout_secs);
            let listener = web::https::TlsListener::new(listener, acceptor, deadline)?;
            spawn_stage(&running.health(), "http".into(), async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "HTTPS server stopped");
                }
            })
        }
        None => spawn_stage(&running.health(), "http".into(), async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }),
    };
    running.tasks.push(task);
    info!(
        http = %running.http_addr,
        tcp = ?running.tcp_addrs,
        tls = ?running.tls_addrs,
        udp = ?running.udp_addrs,
        data_dir = %checked.config.storage.data_dir.display(),
        "mimamori is running"
    );
    Ok(())
}

/// Runs a stage as a task; if it ever ends by itself, it is reported failed (at shutdown the
/// task is aborted instead, and nothing is reported).
fn spawn_stage(
    health: &Health,
    name: String,
    stage: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    health.running(&name);
    let health = health.clone();
    tokio::spawn(async move {
        stage.await;
        health.failed(&name, "stopped unexpectedly");
    })
}

impl Running {
    pub fn index(&self) -> &EventIndex {
        self.store.index()
    }

    pub fn health(&self) -> Health {
        self.store.health().clone()
    }

    /// Stops listeners, drains what they sent into the log and commits the index.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.udp_stop.store(true, Ordering::Relaxed);
        let store = self.store;
        let udp_threads = self.udp_threads;
        let rules = self.rules;
        let delivery = self.delivery;
        tokio::task::spawn_blocking(move || {
            // Messages not yet sent stay queued in alerts.db for the next start.
            if let Some(d) = delivery {
                d.stop();
            }
            for t in udp_threads {
                let _ = t.join();
            }
            let result = store.shutdown();
            // The rules read to the end of the log, then stop.
            if let Some(r) = rules {
                r.join();
            }
            result
        })
        .await??;
        Ok(())
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MIMAMORI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: a file or journald gets plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mimamori")
        .build()?)
}

pub fn serve(checked: Checked) -> anyhow::Result<()> {
    serve_then(checked, |_| {})
}

/// [`serve`], calling `ready` once everything listens.
pub fn serve_then(checked: Checked, ready: impl FnOnce(&Running)) -> anyhow::Result<()> {
    init_tracing();
    runtime()?.block_on(async {
        let running = start(&checked, prometheus::Registry::new()).await?;
        ready(&running);
        // SIGHUP reloads the roster and the rules; a bad file keeps the old ones.
        if let (Some(reloader), Ok(mut hup)) = (
            running.rules.as_ref().map(|r| r.reloader.clone()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
        ) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let r = reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                }
            });
        }
        let health = running.health();
        let failed = tokio::select! {
            () = shutdown_signal() => None,
            failed = health.wait_failed() => Some(failed),
        };
        if let Some((stage, reason)) = failed {
            // Exit non-zero so the service manager restarts us: every acknowledged event is in
            // the log, and the next start replays what the index and rules had not done.
            tracing::error!(
                stage,
                reason,
                "a stage died; stopping so that mimamori is restarted"
            );
            let stop = tokio::time::timeout(Duration::from_secs(15), running.shutdown()).await;
            if stop.is_err() {
                tracing::error!("shutdown did not finish in 15 s; exiting anyway");
            }
            anyhow::bail!("stage {stage} stopped: {reason}");
        }
        info!("stopping: draining accepted events into the log and the index");
        running.shutdown().await?;
        info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// How `mimamori search` prints.
pub struct Output {
    pub json: bool,
    pub original: bool,
}

/// Where `mimamori search` looks: the query, the time range, and the page.
pub struct Wanted<'a> {
    pub query: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub limit: usize,
    pub offset: usize,
}

pub fn search(checked: &Checked, wanted: Wanted<'_>, output: Output) -> Result<(), Failure> {
    let Output { json, original } = output;
    let mut request = search_request(
        wanted.query,
        wanted.from,
        wanted.to,
        Some(wanted.limit),
        Some(wanted.offset),
        checked.timezone,
    )
    .map_err(|e| Failure::Usage(e.0))?;
    // The command line is the operator's own process: `--limit` bounds it, not a server's
    // per-answer size.
    request.max_bytes = usize::MAX;
    let index = EventIndex::open_read_only(&checked.config.storage.data_dir)
        .map_err(|e| Failure::Runtime(e.into()))?;
    let results = index.search(&request).map_err(|e| match e {
        StoreError::BadQuery(message) => Failure::Usage(format!("bad query: {message}")),
        other => Failure::Runtime(other.into()),
    })?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let write = |out: &mut std::io::StdoutLock, line: String| writeln!(out, "{line}");
    for event in &results.events {
        let line = if json {
            crate::output::json_safe(&event_json(event, original).to_string()).into_owned()
        } else {
            let local = event.timestamp.with_timezone(&checked.timezone);
            // Text from senders may carry terminal escapes (`ESC]0;...BEL`, `ESC[2J`): shown
            // escaped, never acted on.
            fn shown(v: Option<&str>) -> std::borrow::Cow<'_, str> {
                crate::output::printable(v.unwrap_or("-"))
            }
            format!(
                "{}  {:<16} {:<12} {:<14} {:<10} {}",
                local.format("%Y-%m-%d %H:%M:%S%.3f"),
                shown(event.host.as_deref()),
                shown(event.user.as_deref()),
                crate::output::printable(&event.action),
                shown(event.patient.as_deref()),
                crate::output::printable(&event.message.chars().take(200).collect::<String>())
            )
        };
        if write(&mut out, line).is_err() {
            return Ok(()); // stdout closed (e.g. piped to head)
        }
    }
    if !json {
        let _ = writeln!(
            out,
            "{} of {} matching events (times in {})",
            results.events.len(),
            results.total,
            checked.timezone
        );
    }
    let next = wanted.offset + results.events.len() + results.unreadable as usize;
    if results.truncated || (next as u64) < results.total {
        eprintln!(
            "mimamori: more matches: add --offset {next} for the next page{}",
            if results.truncated {
                " (this one stopped at the size a page may have)"
            } else {
                ""
            }
        );
    }
    if results.unreadable > 0 {
        eprintln!(
            "mimamori: {} matching events could not be read from the log (a damaged or missing log block); run `mimamori verify` to see which records, and restore them from a backup",
            results.unreadable
        );
    }
    Ok(())
}
