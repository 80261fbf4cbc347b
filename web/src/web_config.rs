//! The web UI's settings (`[web]`) and where its accounts are kept.

use std::path::{Path, PathBuf};

use chrono::Duration;

use crate::sessions::SessionLimits;

/// The web UI's settings (`[web]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the pages (the API is served either way).
    pub enabled: bool,
    /// Mark the session cookie `Secure`: set it when a TLS proxy serves the UI over HTTPS.
    pub secure_cookies: bool,
    /// Signed out after this long without a request.
    pub session_idle_minutes: u32,
    /// Signed out this long after signing in.
    pub session_hours: u32,
    /// Host names the appliance is reached by (`mimamori.clinic.local`). A request naming
    /// another host is refused (a web page elsewhere cannot rebind its name to this appliance);
    /// addresses (`192.0.2.10:8480`) and `localhost` are always accepted.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            secure_cookies: false,
            session_idle_minutes: 30,
            session_hours: 12,
            allowed_hosts: Vec::new(),
        }
    }
}

impl WebConfig {
    /// What is wrong with these settings, as (key, expected).
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(1..=24 * 60).contains(&self.session_idle_minutes) {
            return Err((
                "web.session_idle_minutes".into(),
                "from 1 to 1440 (a day)".into(),
            ));
        }
        if !(1..=24 * 7).contains(&self.session_hours) {
            return Err(("web.session_hours".into(), "from 1 to 168 (a week)".into()));
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ' ', ':']))
        {
            return Err((
                "web.allowed_hosts".into(),
                format!("host names without port or scheme (mimamori.clinic.local), not {bad:?}"),
            ));
        }
        Ok(())
    }

    pub fn limits(&self) -> SessionLimits {
        SessionLimits {
            idle: Duration::minutes(i64::from(self.session_idle_minutes.max(1))),
            absolute: Duration::hours(i64::from(self.session_hours.max(1))),
        }
    }
}

/// Where the accounts are kept: `<data_dir>/accounts.db`.
pub fn accounts_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("accounts.db")
}
