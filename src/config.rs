//! The configuration file: each crate owns its section; this assembles and checks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use alerting::channels::ChannelConfig;
use alerting::delivery::{DeliveryConfig, SubscriberConfig};
use ingest::import::Parsers;
use ingest::{EhrConfig, SourceRule, SyslogConfig, SyslogParser, WindowsConfig};
use rules::clinic::{
    Clinic, ClinicConfig, RoleConfig, RosterConfig, SiteConfig, default_roles, default_sites,
};
use rules::engine::{Appointments, CustomRule, CustomRuleConfig, DetectionsConfig, Engine};
use serde::Deserialize;
use store::StoreConfig;

use crate::config_errors::{line_of, parse_error};

/// The fully commented default configuration, as shipped in `deploy/mimamori.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../deploy/mimamori.toml");

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub storage: StoreConfig,
    pub syslog: SyslogConfig,
    pub windows: WindowsConfig,
    pub ehr: EhrConfig,
    pub import: ImportConfig,
    pub http: HttpConfig,
    pub clinic: ClinicConfig,
    pub sites: Vec<SiteConfig>,
    pub roles: BTreeMap<String, RoleConfig>,
    pub roster: RosterConfig,
    pub detections: DetectionsConfig,
    pub alerts: AlertsConfig,
    pub custom_rules: Vec<CustomRuleConfig>,
    pub delivery: DeliveryConfig,
    pub channels: Vec<ChannelConfig>,
    pub subscribers: Vec<SubscriberConfig>,
    pub web: web::accounts::WebConfig,
    pub report: report::schedule::ReportConfig,
    pub backup: crate::backup::BackupConfig,
}

impl Default for Config {
    /// The demo clinic: two sites, the usual roles, an empty roster.
    fn default() -> Self {
        Config {
            storage: StoreConfig::default(),
            syslog: SyslogConfig::default(),
            windows: WindowsConfig::default(),
            ehr: EhrConfig::default(),
            import: ImportConfig::default(),
            http: HttpConfig::default(),
            clinic: ClinicConfig::default(),
            sites: default_sites(),
            roles: default_roles(),
            roster: RosterConfig::default(),
            detections: DetectionsConfig::default(),
            alerts: AlertsConfig::default(),
            custom_rules: Vec::new(),
            delivery: DeliveryConfig::default(),
            channels: Vec::new(),
            subscribers: Vec::new(),
            web: web::accounts::WebConfig::default(),
            report: report::schedule::ReportConfig::default(),
            backup: crate::backup::BackupConfig::default(),
        }
    }
}

/// The alert database (`[alerts]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A condition seen again within this long continues its open alert instead of a new one.
    pub dedup_window_minutes: u32,
    /// At start, the rules re-read this many events before where they stopped, to rebuild their
    /// windows (sessions, patients viewed) without raising those alerts again.
    pub rebuild_events: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dedup_window_minutes: 60,
            rebuild_events: 200_000,
        }
    }
}

/// The web UI and API (`[http]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer tokens allowed to POST /api/v1/ingest. None: ingest over HTTP is off.
    pub ingest_tokens: Vec<String>,
    /// Bearer tokens allowed to change things: alert status, rule reload. None: those are off
    /// over HTTP (the CLI still works).
    pub admin_tokens: Vec<String>,
    /// Bearer tokens that may read search results and alerts (admin tokens may too). Required
    /// when `listen` is not a loopback address; none on loopback: reads are open there.
    pub read_tokens: Vec<String>,
    /// Largest request body accepted (after gzip decompression too); more gets 413.
    pub max_body_bytes: usize,
    /// Open connections at most; more are closed at once and counted.
    pub max_connections: usize,
    /// Open connections from one address at most, so one host cannot lock others out.
    pub max_connections_per_peer: usize,
    /// A connection that sends or takes nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// A request whose headers have not all arrived this long after its first byte (or after
    /// the connection opened) is closed, however steadily they trickle in.
    pub header_timeout_secs: u64,
    /// A request not answered within this long gets 503 (the work it started may finish).
    pub request_timeout_secs: u64,
    /// Serve HTTPS: with `tls_cert` and `tls_key`, or a certificate made for the appliance at
    /// first start (`<data_dir>/tls/`). Session cookies are `Secure` then.
    pub tls: bool,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            ingest_tokens: Vec::new(),
            admin_tokens: Vec::new(),
            read_tokens: Vec::new(),
            max_body_bytes: 32 << 20,
            max_connections: 256,
            max_connections_per_peer: 32,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            request_timeout_secs: 120,
            tls: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// File imports and the spool directory (`[import]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// Directory `serve` watches for files to import; empty: `<data_dir>/spool`.
    pub spool_dir: PathBuf,
    /// How often the spool directory is looked at.
    pub spool_poll_secs: u64,
    /// A file is imported once its size has not changed for this long (still being written).
    pub spool_settle_secs: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            spool_dir: PathBuf::new(),
            spool_poll_secs: 2,
            spool_settle_secs: 2,
        }
    }
}

/// A configuration that is wrong, said so that a person can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}{line}: `{key}` must be {expected}")]
    Invalid {
        path: PathBuf,
        line: String,
        key: String,
        expected: String,
    },
}

/// The configuration with its checked values.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Config,
    pub timezone: chrono_tz::Tz,
    pub sources: Vec<SourceRule>,
    pub ehr: ingest::ehr::EhrMapping,
    pub clinic: Clinic,
    pub custom_rules: Vec<CustomRule>,
    pub appointments: Option<Appointments>,
    /// Where it was read from (config file, --data-dir), to read it again on reload.
    pub origin: (Option<PathBuf>, Option<PathBuf>),
    /// Set by `mimamori demo` only: the banner on every page and the local mailbox.
    pub demo: Option<DemoUi>,
}

/// What `mimamori demo` adds to the web UI.
#[derive(Debug, Clone)]
pub struct DemoUi {
    pub banner: String,
    pub mailbox: PathBuf,
}

impl Checked {
    pub fn syslog_parser(&self) -> SyslogParser {
        SyslogParser::with_sources(self.timezone, self.sources.clone())
    }

    pub fn parsers(&self) -> Parsers {
        Parsers {
            syslog: self.syslog_parser(),
            ehr: self.ehr.clone(),
            filter: self.config.windows.filter(),
            zone: self.ehr.zone,
        }
    }

    /// A fresh rule engine for this configuration.
    pub fn engine(&self) -> Engine {
        Engine::new(self.clinic.clone(), self.config.detections.clone())
            .with_custom_rules(self.custom_rules.clone())
            .with_appointments(self.appointments.clone())
    }

    /// What the rules runner needs of this configuration besides the engine.
    pub fn runner_settings(&self) -> alerting::runner::RunnerSettings {
        alerting::runner::RunnerSettings {
            data_dir: self.config.storage.data_dir.clone(),
            dedup_window: chrono::Duration::minutes(i64::from(
                self.config.alerts.dedup_window_minutes,
            )),
            rebuild_events: self.config.alerts.rebuild_events,
            lateness: std::time::Duration::from_secs(
                self.config.detections.lateness_seconds.into(),
            ),
        }
    }

    /// Builds the rules from the config file again, as it is now (a reload).
    pub fn engine_source(&self) -> alerting::runner::EngineSource {
        let (path, data_dir) = self.origin.clone();
        Box::new(move || {
            let checked = Config::load(path.as_deref(), data_dir.as_deref())
                .map_err(|e| alerting::runner::Refused(e.to_string()))?;
            let summary = format!(
                "rules reloaded: {} staff, {} roles, {} sites, {} custom rules (other settings take effect at restart)",
                checked.clinic.staff.len(),
                checked.clinic.roles.len(),
                checked.clinic.sites.len(),
                checked.custom_rules.len()
            );
            Ok((checked.engine(), summary))
        })
    }

    /// Who receives the weekly review: `[report] channels` (checked at load), its language and
    /// the UI's address for links.
    pub fn review_recipients(&self) -> report::deliver::Recipients {
        let r = &self.config.report;
        report::deliver::Recipients {
            channels: r.recipients(&self.config.channels).unwrap_or_default(),
            lang: r.lang().unwrap_or_default(),
            link_base: Some(self.config.delivery.link_base.clone()).filter(|b| !b.is_empty()),
            attach_pdf: r.attach_pdf,
            browser: r.browser.clone(),
        }
    }

    /// The roster file the web UI edits: `[roster] file`, or the data folder's.
    pub fn roster_file(&self) -> PathBuf {
        self.config
            .roster
            .file
            .clone()
            .unwrap_or_else(|| default_roster_file(&self.config.storage.data_dir))
    }

    /// Whether `candidate` as the roster file makes a valid configuration (as a reload would
    /// check it), or what is wrong, naming the key.
    pub fn roster_check(&self) -> impl Fn(&Path) -> Result<(), String> + Send + Sync + 'static {
        let (path, data_dir) = self.origin.clone();
        move |candidate: &Path| {
            Config::load_with_roster(path.as_deref(), data_dir.as_deref(), Some(candidate))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        if self.config.import.spool_dir.as_os_str().is_empty() {
            self.config.storage.data_dir.join("spool")
        } else {
            self.config.import.spool_dir.clone()
        }
    }
}

impl Config {
    /// Reads `path` (or the built-in defaults), applies `data_dir`, and validates.
    pub fn load(path: Option<&Path>, data_dir: Option<&Path>) -> Result<Checked, ConfigError> {
        Config::load_with_roster(path, data_dir, None)
    }

    /// [`Config::load`] with `roster` as the roster file (a candidate the web UI checks).
    pub fn load_with_roster(
        path: Option<&Path>,
        data_dir: Option<&Path>,
        roster: Option<&Path>,
    ) -> Result<Checked, ConfigError> {
        let (mut config, text, shown) = match path {
            None => (
                Config::default(),
                String::new(),
                PathBuf::from("(built-in defaults)"),
            ),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: parse_error(&e, &text),
                })?;
                (config, text, path.to_owned())
            }
        };
        if let Some(dir) = data_dir {
            config.storage.data_dir = dir.to_owned();
        }
        // With no `[roster] file`, the roster kept in the data folder (edited in the web UI).
        let kept = default_roster_file(&config.storage.data_dir);
        if config.roster.file.is_none() && kept.exists() {
            config.roster.file = Some(kept);
        }
        if let Some(candidate) = roster {
            config.roster.file = Some(candidate.to_owned());
        }
        // Times that carry no zone are in the clinic's unless a source section says otherwise.
        if config.clinic.timezone.parse::<chrono_tz::Tz>().is_ok() {
            let zone = &config.clinic.timezone;
            config.syslog.timezone.get_or_insert_with(|| zone.clone());
            config.ehr.timezone.get_or_insert_with(|| zone.clone());
        }
        let invalid = |section: &str, (key, expected): (String, String)| ConfigError::Invalid {
            line: line_of(
                &text,
                &if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                },
            )
            .map(|n| format!(", line {n}"))
            .unwrap_or_default(),
            path: shown.clone(),
            key: if section.is_empty() {
                key
            } else {
                format!("{section}.{key}")
            },
            expected,
        };
        config
            .storage
            .validate()
            .map_err(|(k, e)| invalid("storage", (k.to_owned(), e)))?;
        config
            .storage
            .read_chain_key()
            .map_err(|(k, e)| invalid("storage", (k.to_owned(), e)))?;
        let (timezone, sources) = config.syslog.validate().map_err(|e| invalid("syslog", e))?;
        let ehr = ingest::ehr::EhrMapping::new(&config.ehr).map_err(|e| invalid("ehr", e))?;
        if config.http.max_body_bytes < 1024 {
            return Err(invalid(
                "http",
                ("max_body_bytes".into(), "at least 1024".into()),
            ));
        }
        let zero = [
            ("max_connections", config.http.max_connections as u64),
            (
                "max_connections_per_peer",
                config.http.max_connections_per_peer as u64,
            ),
            ("idle_timeout_secs", config.http.idle_timeout_secs),
            ("header_timeout_secs", config.http.header_timeout_secs),
            ("request_timeout_secs", config.http.request_timeout_secs),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0);
        if let Some((key, _)) = zero {
            return Err(invalid("http", (key.into(), "at least 1".into())));
        }
        if config.http.tls_cert.is_some() != config.http.tls_key.is_some() {
            return Err(invalid(
                "http",
                (
                    "tls_cert".into(),
                    "both tls_cert and tls_key (PEM files), or neither (a certificate is made at first start)".into(),
                ),
            ));
        }
        for (key, tokens) in [
            ("ingest_tokens", &config.http.ingest_tokens),
            ("admin_tokens", &config.http.admin_tokens),
            ("read_tokens", &config.http.read_tokens),
        ] {
            if tokens.iter().any(|t| t.len() < 16) {
                return Err(invalid(
                    "http",
                    (
                        key.into(),
                        "tokens of at least 16 characters (use e.g. `openssl rand -hex 24`)".into(),
                    ),
                ));
            }
        }
        // A forwarder's ingest token must not read or change alerts, nor a reader's change them.
        let http = &config.http;
        let shared = |a: &[String], b: &[String]| a.iter().any(|t| b.contains(t));
        for (key, other) in [
            (
                "ingest_tokens",
                shared(&http.ingest_tokens, &http.admin_tokens)
                    || shared(&http.ingest_tokens, &http.read_tokens),
            ),
            ("read_tokens", shared(&http.read_tokens, &http.admin_tokens)),
        ] {
            if other {
                return Err(invalid(
                    "http",
                    (
                        key.into(),
                        "tokens of their own: the same token is also given another role (ingest, read and admin tokens are kept apart)".into(),
                    ),
                ));
            }
        }
        alerting::delivery::check_all(&config.delivery, &config.channels, &config.subscribers)
            .map_err(|e| invalid("", e))?;
        let other_tokens = [&http.ingest_tokens, &http.admin_tokens, &http.read_tokens];
        if let Some(i) = config
            .subscribers
            .iter()
            .position(|s| other_tokens.iter().any(|t| t.contains(&s.token)))
        {
            return Err(invalid(
                "",
                (
                    format!("subscribers[{i}].token"),
                    "a token of its own (not also an ingest, read or admin token)".into(),
                ),
            ));
        }
        if config.import.spool_poll_secs == 0 {
            return Err(invalid(
                "import",
                ("spool_poll_secs".into(), "at least 1".into()),
            ));
        }
        let clinic = Clinic::new(&config.clinic, &config.sites, &config.roles, &config.roster)
            .map_err(|e| invalid("", e))?;
        config.detections.validate().map_err(|e| invalid("", e))?;
        config.web.check().map_err(|e| invalid("", e))?;
        config.report.check().map_err(|e| invalid("", e))?;
        config.backup.check().map_err(|e| invalid("", e))?;
        let custom_rules = config
            .custom_rules
            .iter()
            .enumerate()
            .map(|(i, r)| CustomRule::new(i, r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("", e))?;
        // Routing names rules and sites that exist: a typo would silently route nothing.
        let rule_names = rule_names(&custom_rules);
        for (i, c) in config.channels.iter().enumerate() {
            if let Some(r) = c.rules.iter().find(|r| !rule_names.contains(r)) {
                return Err(invalid(
                    "",
                    (
                        format!("channels[{i}].rules"),
                        format!(
                            "rule names among {}; {r:?} is not one",
                            rule_names.join(", ")
                        ),
                    ),
                ));
            }
            if let Some(site) = c
                .sites
                .iter()
                .find(|x| !config.sites.iter().any(|s| s.name.eq_ignore_ascii_case(x)))
            {
                let sites: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
                return Err(invalid(
                    "",
                    (
                        format!("channels[{i}].sites"),
                        format!("site names among {}; {site:?} is not one", sites.join(", ")),
                    ),
                ));
            }
        }
        config
            .report
            .recipients(&config.channels)
            .map_err(|e| invalid("", e))?;
        let appointments = config
            .detections
            .treatment_relationship
            .appointments_file
            .as_deref()
            .map(Appointments::load)
            .transpose()
            .map_err(|e| invalid("", e))?;
        config.delivery.timezone = clinic.zone;
        Ok(Checked {
            config,
            timezone,
            sources,
            ehr,
            clinic,
            custom_rules,
            appointments,
            origin: (path.map(Path::to_owned), data_dir.map(Path::to_owned)),
            demo: None,
        })
    }
}

/// The roster file kept in the data folder: used when `[roster] file` is not set, and where
/// the web UI keeps the roster it edits then.
pub fn default_roster_file(data_dir: &Path) -> PathBuf {
    data_dir.join("roster.csv")
}

/// Every rule an alert can come from: the detections, the appliance's own (storage, backup),
/// the custom rules.
pub fn rule_names(custom: &[CustomRule]) -> Vec<String> {
    rules::RuleId::DETECTIONS
        .iter()
        .chain(rules::RuleId::SYSTEM.iter())
        .map(|r| r.as_str().to_owned())
        .chain(custom.iter().map(|c| c.config.name.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Checked, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mimamori.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), None)
    }

    #[test]
    fn the_shipped_config_is_the_default() {
        let mut parsed: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
        // The file is for an installation; only the data directory differs from the defaults.
        assert_eq!(parsed.storage.data_dir, Path::new("/var/lib/mimamori"));
        parsed.storage.data_dir = Config::default().storage.data_dir;
        assert_eq!(parsed, Config::default());
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/mimamori.toml"))
                .unwrap();
        assert_eq!(on_disk, DEFAULT_CONFIG);
    }

    #[test]
    fn a_misspelt_key_names_file_line_and_key() {
        let err = load_text("[storage]\ncommit_interval_ms = 500\ncomit_interval_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mimamori.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("comit_interval_ms"), "{err}");
    }

    #[test]
    fn a_bad_value_points_at_its_own_section_and_array_entry() {
        let rule = |name: &str, window: u32| {
            format!(
                "[[custom_rules]]\nname = \"{name}\"\nfilter = \"event.action:login\"\nthreshold = 3\nwindow_minutes = {window}\n"
            )
        };
        let text = format!(
            "[detections.bulk_export]\nwindow_minutes = 60\n{}{}{}",
            rule("a", 10),
            rule("b", 10),
            rule("c", 0)
        );
        let err = load_text(&text).unwrap_err().to_string();
        // The third rule's block starts on line 13; its window on line 17.
        assert!(
            err.contains("line 17") && err.contains("custom_rules[2]"),
            "{err}"
        );
    }

    #[test]
    fn a_token_has_one_role_and_reads_off_loopback_need_one() {
        let t = "aaaaaaaaaaaaaaaaaaaa";
        let err = load_text(&format!(
            "[http]\ningest_tokens = [\"{t}\"]\nadmin_tokens = [\"{t}\"]\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("http.ingest_tokens") && err.contains("kept apart"),
            "{err}"
        );
        // Reachable from the LAN with no read token: reads need an API token (never open).
        let checked = load_text("[http]\nlisten = \"0.0.0.0:8480\"\n").unwrap();
        assert!(checked.config.http.read_tokens.is_empty());
    }

    #[test]
    fn channel_keys_are_checked_and_a_parse_error_hides_secret_values() {
        let err = load_text(
            "[[channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\npassword = \"SMTPPW\\qLEAK99\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("LEAK99"), "{err}");
        assert!(err.contains("line 5"), "{err}");
        // A misspelled secret key, and a channel written inline: no value is shown.
        for text in [
            "[[channels]]\nname = \"m\"\nkind = \"email\"\npasswd = \"SMTPPASSWORDSECRET\"\n",
            "channels = [{name = \"s\", kind = \"slack\", url = \"http://h/SLACKSECRETXYZ\", min_severity = \"hgh\"}]\n",
            "[[subscribers]]\nname = \"soc\"\ntokn = \"SUBSCRIBERSECRET\"\n",
        ] {
            let err = load_text(text).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{err}");
            assert!(err.contains("not shown"), "{err}");
        }
        let err = load_text(
            "[[channels]]\nname = \"s\"\nkind = \"slack\"\nurl = \"https://hooks.example/x\"\nrules = [\"bulk_exprot\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("channels[0].rules") && err.contains("bulk_exprot"),
            "{err}"
        );
        let err =
            load_text("[[channels]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://x\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("channels[0].secrets") && err.contains("whsec_"),
            "{err}"
        );
        let err = load_text(
            "[[channels]]\nname = \"s\"\nkind = \"slack\"\nurl = \"https://x.example/h\"\ntoken = \"abc\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("channels[0].token") && err.contains("slack"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_or_value_is_named() {
        let err = load_text("[http]\nlisten = 8480\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("listen"), "{err}");
        let err = load_text("[syslog]\ntimezone = \"Asia/Tokio\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("syslog.timezone") && err.contains("Asia/Tokio"),
            "{err}"
        );
        let err = load_text("[storage]\ncommit_interval_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("storage.commit_interval_ms") && err.contains("10 to 60000"),
            "{err}"
        );
    }

    #[test]
    fn data_dir_flag_overrides_the_file() {
        let checked = Config::load(None, Some(Path::new("/srv/x"))).unwrap();
        assert_eq!(checked.config.storage.data_dir, Path::new("/srv/x"));
        assert_eq!(checked.timezone, chrono_tz::Asia::Tokyo);
    }

    #[test]
    fn times_without_a_zone_are_in_the_clinics_unless_a_source_says_otherwise() {
        let checked = load_text("[clinic]\ntimezone = \"Europe/Berlin\"\n").unwrap();
        assert_eq!(checked.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(checked.ehr.zone, chrono_tz::Europe::Berlin);
        let checked =
            load_text("[ehr]\ntimezone = \"UTC\"\n[clinic]\ntimezone = \"Europe/Berlin\"\n")
                .unwrap();
        assert_eq!(checked.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(checked.ehr.zone, chrono_tz::UTC);
    }
}
