//! The web UI wired to this configuration: the accounts database, the clinic model, the
//! first-run setup's token.

use std::sync::Arc;

use anyhow::Context;
use web::accounts::{AccountDb, accounts_db_path};
use web::ui::{Ui, UiMetrics};

use crate::config::Checked;

/// The UI for `checked` (none when `[web] enabled = false`). While nobody has an account, the
/// first-run setup's one-time token is printed to stderr (not the log), with where to use it.
pub fn build(
    checked: &Checked,
    registry: &prometheus::Registry,
    http: std::net::SocketAddr,
) -> anyhow::Result<Option<Arc<Ui>>> {
    let config = &checked.config.web;
    if !config.enabled {
        return Ok(None);
    }
    let path = accounts_db_path(&checked.config.storage.data_dir);
    let accounts = AccountDb::open(&path)
        .with_context(|| format!("cannot open the account database {}", path.display()))?;
    let mut ui = Ui::new(
        accounts,
        Arc::new(checked.clinic.clone()),
        checked.appointments.clone().map(Arc::new),
        config.secure_cookies,
        UiMetrics::new(registry)?,
    );
    ui.limits = config.limits();
    if ui.accounts.is_empty()? {
        let host = if http.ip().is_unspecified() {
            "<this appliance's address>".to_owned()
        } else {
            http.to_string()
        };
        eprintln!(
            "mimamori: no account yet. Create the first administrator at http://{host}/setup \
             (from this machine), or from another with http://{host}/setup?token={}, \
             or run `mimamori user add NAME --role admin`.",
            ui.setup_token
        );
    }
    Ok(Some(Arc::new(ui)))
}
