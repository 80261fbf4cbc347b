use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use chrono_tz::Tz;
use serde::Deserialize;
use store::pattern::{Cidr, Glob};

use crate::windows::NoiseFilter;

/// Syslog listeners (`[syslog]` in the config file).
///
/// Defaults: `udp_listen = ["127.0.0.1:5514"]`, `tcp_listen = ["127.0.0.1:5514"]`, no TLS
/// listener, `max_message_bytes = 65536`, `max_connections = 2048`,
/// `max_connections_per_peer = 64`, `first_frame_timeout_secs = 10`, `idle_timeout_secs = 900`,
/// `udp_receive_buffer_bytes = 33554432`, no `timezone` (the clinic's), no `[[syslog.sources]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub udp_listen: Vec<SocketAddr>,
    pub tcp_listen: Vec<SocketAddr>,
    /// RFC 5425 syslog over TLS; needs `tls_cert` and `tls_key`.
    pub tls_listen: Vec<SocketAddr>,
    /// PEM certificate chain for `tls_listen`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_listen`.
    pub tls_key: Option<PathBuf>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    /// Open TCP connections from one address at most, so one host cannot take every slot.
    pub max_connections_per_peer: usize,
    /// A connection that has not sent a whole first message (or finished the TLS handshake)
    /// this long after it opened is closed.
    pub first_frame_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub udp_receive_buffer_bytes: usize,
    /// IANA zone for RFC 3164 timestamps, which carry no zone, from senders not in `sources`;
    /// none: [`DEFAULT_ZONE`] (the service fills in the clinic's).
    pub timezone: Option<String>,
    /// Known senders: which parser and time zone each one's lines get.
    pub sources: Vec<SourceConfig>,
}

/// One known syslog sender (`[[syslog.sources]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A name people recognise ("EHR server", "UTM"); stored with each event as
    /// `labels.log.source.name`.
    pub name: String,
    /// Sender addresses or CIDR ranges.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Host-name patterns (`EHR01`, `MAIN-PC*`) matched against the syslog HOSTNAME.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// `auto` (default: Snare and ATNA payloads are recognised), `syslog` (plain lines only),
    /// `snare` or `atna`.
    #[serde(default)]
    pub format: SyslogFormat,
    /// Zone of this sender's RFC 3164 timestamps and Snare times; default `syslog.timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    #[default]
    Auto,
    Syslog,
    Snare,
    Atna,
}

/// A source rule, checked.
#[derive(Debug, Clone)]
pub struct SourceRule {
    pub name: String,
    pub addresses: Vec<Cidr>,
    pub hostnames: Vec<Glob>,
    pub format: SyslogFormat,
    pub timezone: Tz,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 5514));
        SyslogConfig {
            udp_listen: vec![local],
            tcp_listen: vec![local],
            tls_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_message_bytes: 64 << 10,
            max_connections: 2048,
            max_connections_per_peer: 64,
            first_frame_timeout_secs: 10,
            idle_timeout_secs: 900,
            udp_receive_buffer_bytes: 32 << 20,
            timezone: None,
            sources: Vec::new(),
        }
    }
}

/// How many TCP connections a listener holds, from whom, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    pub max_connections: usize,
    pub per_peer: usize,
    pub first_frame: std::time::Duration,
    pub idle: std::time::Duration,
}

/// A bad value: the key (relative to the section) and what is expected.
pub type Invalid = (String, String);

/// The zone assumed where a time carries none and no zone is configured.
pub const DEFAULT_ZONE: &str = "Asia/Tokyo";

pub fn parse_zone(key: &str, name: &str) -> Result<Tz, Invalid> {
    name.parse::<Tz>().map_err(|_| {
        (
            key.to_owned(),
            format!("an IANA time zone such as \"Asia/Tokyo\", not \"{name}\""),
        )
    })
}

impl SyslogConfig {
    /// The limits every TCP and TLS listener applies.
    pub fn tcp_limits(&self) -> TcpLimits {
        TcpLimits {
            max_connections: self.max_connections,
            per_peer: self.max_connections_per_peer,
            first_frame: std::time::Duration::from_secs(self.first_frame_timeout_secs),
            idle: std::time::Duration::from_secs(self.idle_timeout_secs),
        }
    }

    /// Checks values serde cannot: returns (key, what is expected) for the first bad one.
    pub fn validate(&self) -> Result<(Tz, Vec<SourceRule>), Invalid> {
        let invalid = |key: &str, expected: &str| Err((key.to_owned(), expected.to_owned()));
        if !(480..=(16 << 20)).contains(&self.max_message_bytes) {
            return invalid(
                "max_message_bytes",
                "from 480 (RFC 5424's minimum) to 16777216",
            );
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return invalid("max_connections", "from 1 to 65536");
        }
        if self.idle_timeout_secs == 0 {
            return invalid("idle_timeout_secs", "at least 1");
        }
        if self.max_connections_per_peer == 0 {
            return invalid("max_connections_per_peer", "at least 1");
        }
        if self.first_frame_timeout_secs == 0 {
            return invalid("first_frame_timeout_secs", "at least 1");
        }
        if !self.tls_listen.is_empty() {
            if self.tls_cert.is_none() {
                return invalid("tls_cert", "a PEM certificate file when tls_listen is set");
            }
            if self.tls_key.is_none() {
                return invalid("tls_key", "a PEM private key file when tls_listen is set");
            }
        }
        let zone = parse_zone("timezone", self.timezone.as_deref().unwrap_or(DEFAULT_ZONE))?;
        let mut rules = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let key = |k: &str| format!("sources[{i}].{k}");
            if source.addresses.is_empty() && source.hostnames.is_empty() {
                return Err((
                    key("addresses"),
                    format!(
                        "at least one address or hostname pattern for source \"{}\"",
                        source.name
                    ),
                ));
            }
            let addresses = source
                .addresses
                .iter()
                .map(|a| a.parse::<Cidr>().map_err(|e| (key("addresses"), e.0)))
                .collect::<Result<_, _>>()?;
            let timezone = match &source.timezone {
                Some(name) => parse_zone(&key("timezone"), name)?,
                None => zone,
            };
            rules.push(SourceRule {
                name: source.name.clone(),
                addresses,
                hostnames: source.hostnames.iter().map(|h| Glob::new(h)).collect(),
                format: source.format,
                timezone,
            });
        }
        Ok((zone, rules))
    }
}

/// Windows events (`[windows]`): which accounts are noise.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Leave out events of machine accounts (`NAME$`); they are counted.
    pub filter_machine_accounts: bool,
    /// Leave out events of these accounts (`*` at the end matches a prefix); counted.
    pub filter_users: Vec<String>,
    /// Event ids kept whoever they are about.
    pub always_keep_event_ids: Vec<u32>,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        let f = NoiseFilter::default();
        WindowsConfig {
            filter_machine_accounts: f.machine_accounts,
            filter_users: f.users,
            always_keep_event_ids: f.always_keep,
        }
    }
}

impl WindowsConfig {
    pub fn filter(&self) -> NoiseFilter {
        NoiseFilter {
            machine_accounts: self.filter_machine_accounts,
            users: self.filter_users.clone(),
            always_keep: self.always_keep_event_ids.clone(),
        }
    }
}

/// EHR audit exports (`[ehr]`): time zone, extra column names and action words.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EhrConfig {
    /// Zone of timestamps written without one (`2026/11/24 09:15:02`); none: [`DEFAULT_ZONE`]
    /// (the service fills in the clinic's).
    pub timezone: Option<String>,
    /// More header names (CSV) or keys (JSON lines) per field, tried before the built-in ones:
    /// `timestamp`, `date`, `time`, `user`, `user_name`, `role`, `host`, `ip`, `patient`,
    /// `action`, `count`, `outcome`, `category`, `record_id`, `site`, `message`.
    pub columns: BTreeMap<String, Vec<String>>,
    /// More operation words and the normalized action each means (`"カルテ閲覧" =
    /// "record.view"`), optionally with the record kind they name (`"予約確認" =
    /// "record.view:appointments"`), tried before the built-in ones.
    pub actions: BTreeMap<String, String>,
}
