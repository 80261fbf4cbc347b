//! The web UI wired to this configuration: the accounts database, the clinic model, the
//! first-run setup's token.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use web::accounts::{AccountDb, accounts_db_path};
use web::ui::{Ui, UiMetrics};

use crate::config::Checked;

/// The account database (accounts, sessions, API tokens). One that cannot be opened turns
/// the UI and the API tokens off, said loudly; collection goes on.
pub fn accounts(checked: &Checked) -> Option<Arc<AccountDb>> {
    let path = accounts_db_path(&checked.config.storage.data_dir);
    match AccountDb::open(&path) {
        Ok(accounts) => Some(Arc::new(accounts)),
        Err(e) => {
            tracing::error!(
                error = %e,
                "the web UI and API tokens are off: the account database cannot be used \
                 (restore accounts.db from a backup, or move it aside to start over with /setup)"
            );
            None
        }
    }
}

/// The UI for `checked` (none when `[web] enabled = false`). While nobody has an account, the
/// first-run setup's one-time token is printed to stderr (not the log), with where to use it.
pub fn build(
    checked: &Checked,
    reloader: Option<Arc<alerting::runner::Reloader>>,
    accounts: Option<Arc<AccountDb>>,
    registry: &prometheus::Registry,
    http: std::net::SocketAddr,
) -> anyhow::Result<Option<Arc<Ui>>> {
    let config = &checked.config.web;
    let http_config = &checked.config.http;
    if [
        &http_config.ingest_tokens,
        &http_config.read_tokens,
        &http_config.admin_tokens,
    ]
    .iter()
    .any(|t| !t.is_empty())
    {
        tracing::warn!(
            "http.ingest_tokens, read_tokens and admin_tokens are deprecated: create API tokens \
             with scopes instead (`mimamori token add NAME --scope search`), kept only as digests"
        );
    }
    let Some(accounts) = accounts.filter(|_| config.enabled) else {
        return Ok(None);
    };
    let mut ui = Ui::new(
        accounts,
        Arc::new(checked.clinic.clone()),
        checked.appointments.clone().map(Arc::new),
        config.secure_cookies || checked.config.http.tls,
        UiMetrics::new(registry)?,
    );
    ui.limits = config.limits();
    if let Some(demo) = &checked.demo {
        ui.banner = Some(demo.banner.clone());
        ui.mailbox = Some(alerting::mailbox::Mailbox::new(&demo.mailbox));
    }
    // The roster is edited here only where a reload can put the change in force.
    if reloader.is_some() {
        ui.roster = Some(web::ui::RosterFile {
            path: checked.roster_file(),
            check: Box::new(checked.roster_check()),
        });
    }
    ui.reloader = reloader;
    let reports = report::archive::reports_db_path(&checked.config.storage.data_dir);
    ui.signoff_days = i64::from(checked.config.report.signoff_days);
    ui.dormant_days = i64::from(checked.config.report.dormant_days);
    ui.pdf_browser = checked.config.report.browser.clone();
    if let Ok(schedule) = checked.config.report.check() {
        ui.review_schedule = schedule;
    }
    ui.review_recipients = Some(checked.review_recipients()).filter(|r| !r.channels.is_empty());
    match report::archive::ReportDb::open(&reports) {
        Ok(db) => ui.reports = Some(Arc::new(db)),
        Err(e) => {
            tracing::error!(error = %e, "the weekly reviews are off: the report database cannot be used")
        }
    }
    if ui.accounts.is_empty()? {
        let host = if http.ip().is_unspecified() {
            "<this appliance's address>".to_owned()
        } else {
            http.to_string()
        };
        let scheme = if checked.config.http.tls {
            "https"
        } else {
            "http"
        };
        // The token goes into a file only the service's user (and root) can read, never into
        // the log, which the journal keeps and others may read.
        let file = checked.config.storage.data_dir.join(SETUP_TOKEN_FILE);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{}", ui.setup_token));
        let elsewhere = match written {
            Ok(()) => format!(
                "from another with {scheme}://{host}/setup?token=TOKEN, TOKEN being in {} (`sudo cat` it)",
                file.display()
            ),
            Err(e) => {
                tracing::warn!(error = %e, path = %file.display(), "the setup token could not be written; set up from this machine");
                "from another after `mimamori user add NAME --role admin`".to_owned()
            }
        };
        eprintln!(
            "mimamori: no account yet. Create the first administrator at {scheme}://{host}/setup \
             (from this machine), or {elsewhere}, or run `mimamori user add NAME --role admin`."
        );
    } else {
        let _ = std::fs::remove_file(checked.config.storage.data_dir.join(SETUP_TOKEN_FILE));
    }
    Ok(Some(Arc::new(ui)))
}

/// Where the one-time setup token is kept while no account exists.
const SETUP_TOKEN_FILE: &str = "setup-token";

/// The TLS acceptor of the HTTP port when `http.tls` is on: the configured certificate, or
/// one made for the appliance's names and addresses at first start.
pub fn https_acceptor(checked: &Checked) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let http = &checked.config.http;
    if !http.tls {
        return Ok(None);
    }
    let (cert, key) = match (&http.tls_cert, &http.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let mut names: Vec<String> = checked.config.web.allowed_hosts.clone();
            if !http.listen.ip().is_unspecified() {
                names.push(http.listen.ip().to_string());
            }
            if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
                names.push(host.trim().to_owned());
            }
            names.retain(|n| !n.is_empty());
            let dir = checked.config.storage.data_dir.join("tls");
            web::https::self_signed(&dir, &names).map_err(|e| anyhow::anyhow!("HTTPS: {e}"))?
        }
    };
    let acceptor = ingest::tls_acceptor(&cert, &key).map_err(|e| anyhow::anyhow!("HTTPS: {e}"))?;
    Ok(Some(acceptor))
}
