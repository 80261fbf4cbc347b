//! The configuration file: each crate owns its section; this assembles and checks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ingest::SyslogConfig;
use serde::Deserialize;
use store::StoreConfig;

/// The fully commented default configuration, as shipped in `deploy/mimamori.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../deploy/mimamori.toml");

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub storage: StoreConfig,
    pub syslog: SyslogConfig,
    pub http: HttpConfig,
}

/// The web UI and API (`[http]`). Default: `listen = "127.0.0.1:8480"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
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
}

impl Config {
    /// Reads `path` (or the built-in defaults), applies `data_dir`, and validates.
    pub fn load(path: Option<&Path>, data_dir: Option<&Path>) -> Result<Checked, ConfigError> {
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
                    message: e.to_string(),
                })?;
                (config, text, path.to_owned())
            }
        };
        if let Some(dir) = data_dir {
            config.storage.data_dir = dir.to_owned();
        }
        let invalid = |section: &str, (key, expected): (&str, String)| ConfigError::Invalid {
            line: line_of(&text, key)
                .map(|n| format!(", line {n}"))
                .unwrap_or_default(),
            path: shown.clone(),
            key: format!("{section}.{key}"),
            expected,
        };
        config
            .storage
            .validate()
            .map_err(|e| invalid("storage", e))?;
        let timezone = config.syslog.validate().map_err(|e| invalid("syslog", e))?;
        Ok(Checked { config, timezone })
    }
}

/// The line where `key = ...` is set, for messages about values serde accepted but we do not.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
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
        let parsed: Config = toml::from_str(DEFAULT_CONFIG).unwrap();
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
}
