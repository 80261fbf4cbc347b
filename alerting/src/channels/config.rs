//! One `[[channels]]` entry: its kind, routing, and the keys each kind needs, checked with the
//! key at fault named.

use std::path::PathBuf;
use std::time::Duration;

use rules::Severity;
use serde::{Deserialize, Serialize};

/// The kinds of channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Email,
    Slack,
    Teams,
    Chatwork,
    Lineworks,
    Webhook,
    Syslog,
    /// An automatic response: a program run when a rule fires (off unless configured).
    Command,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Slack => "slack",
            Kind::Teams => "teams",
            Kind::Chatwork => "chatwork",
            Kind::Lineworks => "lineworks",
            Kind::Webhook => "webhook",
            Kind::Syslog => "syslog",
            Kind::Command => "command",
        }
    }

    /// The least time between two messages: the receivers' published rate limits.
    fn default_interval(self) -> Duration {
        match self {
            Kind::Slack | Kind::Teams | Kind::Chatwork | Kind::Lineworks => Duration::from_secs(1),
            Kind::Email | Kind::Webhook | Kind::Syslog | Kind::Command => Duration::ZERO,
        }
    }
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text: only for a receiver on the same machine or a trusted wire.
    None,
    /// SMTP: upgrade with STARTTLS (required, never silently plain).
    Starttls,
    /// TLS from the first byte (SMTPS on 465, syslog over TLS on 6514).
    #[serde(alias = "implicit")]
    Tls,
}

/// How syslog forwarding writes each alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    Rfc5424,
    Cef,
}

/// One `[[channels]]` entry. Which keys a kind needs is checked by [`ChannelConfig::check`].
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: Kind,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Routing: alerts below this severity are not sent here.
    #[serde(default = "low")]
    pub min_severity: Severity,
    /// Routing: only these rules (none: all).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Routing: only these sites (none: all).
    #[serde(default)]
    pub sites: Vec<String>,
    /// Patient ids and names in messages: only for trusted receivers.
    #[serde(default)]
    pub include_patient_data: bool,
    /// "HH:MM-HH:MM" in the clinic's zone: alerts below `quiet_min_severity` wait for its end
    /// and go out together as one digest.
    #[serde(default)]
    pub quiet_hours: Option<String>,
    #[serde(default = "high")]
    pub quiet_min_severity: Severity,
    /// Least milliseconds between two messages (default: the receiver's rate limit).
    #[serde(default)]
    pub min_interval_ms: Option<u64>,
    // slack, teams, webhook; chatwork and lineworks: the API base (tests, proxies)
    #[serde(default)]
    pub url: Option<String>,
    // webhook: `whsec_...` secrets; several while one is rotated out
    #[serde(default)]
    pub secrets: Vec<String>,
    // webhook: a file whose text, with {{field}} filled in, is the body instead of the document
    #[serde(default)]
    pub template: Option<PathBuf>,
    // chatwork
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    // email
    #[serde(default)]
    pub smtp_host: Option<String>,
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    /// A PEM file of the CA that signed the receiver's certificate (a clinic's own mail server
    /// or SOC collector); without it, the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    // syslog
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub format: Option<SyslogFormat>,
    // command: the program and its arguments (no shell); the alerts come on stdin as JSON and
    // in MIMAMORI_* environment variables
    #[serde(default)]
    pub command: Vec<String>,
    // lineworks
    #[serde(default)]
    pub bot_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub auth_url: Option<String>,
}

fn yes() -> bool {
    true
}
fn low() -> Severity {
    Severity::Low
}
fn high() -> Severity {
    Severity::High
}

/// Secrets are never printed: a channel shows its name and kind only.
impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A config key that is wrong: which (`channels[2].url`), and what is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadKey {
    pub key: String,
    pub expected: String,
}

impl ChannelConfig {
    /// Checks the keys the kind needs. `i` is the entry's position, for the key's name.
    pub fn check(&self, i: usize) -> Result<(), BadKey> {
        let bad = |k: &str, e: &str| BadKey {
            key: format!("channels[{i}].{k}"),
            expected: e.to_owned(),
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(bad(
                "name",
                "a name of 1-64 letters, digits, '-' or '_' (used in commands and metrics)",
            ));
        }
        let need = |v: &Option<String>, k: &str, e: &str| match v.as_deref() {
            Some(s) if !s.trim().is_empty() => Ok(()),
            _ => Err(bad(k, e)),
        };
        let https_url = |k: &str| -> Result<(), BadKey> {
            match self.url.as_deref() {
                // The URL itself is never shown: it may be the secret.
                Some(u)
                    if (u.starts_with("https://") || u.starts_with("http://"))
                        && reqwest::Url::parse(u).is_ok_and(|u| u.host().is_some()) =>
                {
                    Ok(())
                }
                _ => Err(bad(k, "a well-formed http(s):// URL")),
            }
        };
        if let Some(t) = &self.template
            && !t.is_file()
        {
            return Err(bad(
                "template",
                &format!("a readable file; {} is not one", t.display()),
            ));
        }
        if let Some(q) = &self.quiet_hours
            && parse_quiet_hours(q).is_none()
        {
            return Err(bad("quiet_hours", "\"HH:MM-HH:MM\", e.g. \"20:00-08:00\""));
        }
        // A key of another kind is a mistake (a token on a Slack channel does nothing).
        if let Some(key) = self.foreign_key() {
            return Err(bad(
                key,
                &format!(
                    "not set: it is not a key of a {} channel",
                    self.kind.as_str()
                ),
            ));
        }
        match self.kind {
            Kind::Slack | Kind::Teams => https_url("url")?,
            Kind::Webhook => {
                https_url("url")?;
                if self.secrets.is_empty() {
                    return Err(bad(
                        "secrets",
                        "at least one signing secret \"whsec_<base64>\" (the SOC's receiver checks the signature)",
                    ));
                }
                for s in &self.secrets {
                    if super::webhook::secret_key(s).is_none() {
                        return Err(bad(
                            "secrets",
                            "secrets of the form \"whsec_<base64 of 24-64 random bytes>\"",
                        ));
                    }
                }
            }
            Kind::Chatwork => {
                need(&self.token, "token", "the Chatwork API token")?;
                need(&self.room_id, "room_id", "the room's number")?;
                if !self
                    .room_id
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .all(|c| c.is_ascii_digit())
                {
                    return Err(bad("room_id", "the room's number (digits only)"));
                }
            }
            Kind::Lineworks => {
                for (v, k) in [
                    (&self.bot_id, "bot_id"),
                    (&self.client_id, "client_id"),
                    (&self.client_secret, "client_secret"),
                    (&self.service_account, "service_account"),
                ] {
                    need(v, k, "the value from the LINE WORKS Developer Console")?;
                }
                if self.private_key_file.is_none() {
                    return Err(bad(
                        "private_key_file",
                        "the service account's private key (PEM, PKCS#8)",
                    ));
                }
                if self.channel_id.is_none() == self.user_id.is_none() {
                    return Err(bad(
                        "channel_id",
                        "either channel_id (a talk room) or user_id (one person), not both",
                    ));
                }
            }
            Kind::Email => {
                need(&self.smtp_host, "smtp_host", "the mail server's host name")?;
                need(
                    &self.from,
                    "from",
                    "the sender address, e.g. \"mimamori <mimamori@clinic.example>\"",
                )?;
                if self.to.is_empty() {
                    return Err(bad("to", "at least one recipient address"));
                }
                for (k, v) in std::iter::once(("from", self.from.as_deref().unwrap_or("")))
                    .chain(self.to.iter().map(|t| ("to", t.as_str())))
                {
                    if v.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(bad(k, &format!("mail addresses; {v:?} is not one")));
                    }
                }
                if self.tls == Some(TlsMode::None) && self.password.is_some() {
                    return Err(bad(
                        "tls",
                        "\"starttls\" or \"tls\" when a password is sent",
                    ));
                }
                if self.username.is_some() != self.password.is_some() {
                    return Err(bad("password", "both username and password, or neither"));
                }
            }
            Kind::Command => {
                let program = self.command.first().map(std::path::Path::new);
                if !program.is_some_and(|p| p.is_absolute()) {
                    return Err(bad(
                        "command",
                        "[\"/absolute/path/to/program\", \"arg\", ...] (run without a shell)",
                    ));
                }
            }
            Kind::Syslog => {
                if self.tls == Some(TlsMode::Starttls) {
                    return Err(bad(
                        "tls",
                        "\"tls\" (TLS from the first byte, usually port 6514) or \"none\"",
                    ));
                }
                need(&self.address, "address", "the collector's \"host:port\"")?;
                if !self.address.as_deref().unwrap_or("").contains(':') {
                    return Err(bad(
                        "address",
                        "\"host:port\", e.g. \"soc.example.net:6514\"",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first key set that belongs to another kind of channel.
    fn foreign_key(&self) -> Option<&'static str> {
        use Kind::*;
        let set: [(&'static str, bool, &[Kind]); 19] = [
            (
                "url",
                self.url.is_some(),
                &[Slack, Teams, Webhook, Chatwork, Lineworks],
            ),
            ("secrets", !self.secrets.is_empty(), &[Webhook]),
            ("template", self.template.is_some(), &[Webhook]),
            ("token", self.token.is_some(), &[Chatwork]),
            ("room_id", self.room_id.is_some(), &[Chatwork]),
            ("smtp_host", self.smtp_host.is_some(), &[Email]),
            ("smtp_port", self.smtp_port.is_some(), &[Email]),
            ("tls", self.tls.is_some(), &[Email, Syslog]),
            ("username", self.username.is_some(), &[Email]),
            ("password", self.password.is_some(), &[Email]),
            ("from", self.from.is_some(), &[Email]),
            ("to", !self.to.is_empty(), &[Email]),
            (
                "ca_file",
                self.ca_file.is_some(),
                &[Email, Syslog, Slack, Teams, Webhook, Chatwork, Lineworks],
            ),
            ("address", self.address.is_some(), &[Syslog]),
            ("format", self.format.is_some(), &[Syslog]),
            ("command", !self.command.is_empty(), &[Command]),
            ("bot_id", self.bot_id.is_some(), &[Lineworks]),
            (
                "service_account",
                self.service_account.is_some(),
                &[Lineworks],
            ),
            (
                "private_key_file",
                self.private_key_file.is_some(),
                &[Lineworks],
            ),
        ];
        set.into_iter()
            .find(|(_, is_set, kinds)| *is_set && !kinds.contains(&self.kind))
            .map(|(key, _, _)| key)
    }

    pub fn interval(&self) -> Duration {
        self.min_interval_ms
            .map_or_else(|| self.kind.default_interval(), Duration::from_millis)
    }

    /// Whether an alert of this rule, severity and site is sent here.
    pub fn routes(&self, rule: &str, severity: Severity, site: Option<&str>) -> bool {
        self.enabled
            && severity >= self.min_severity
            && (self.rules.is_empty() || self.rules.iter().any(|r| r == rule))
            && (self.sites.is_empty()
                || site.is_some_and(|s| self.sites.iter().any(|x| x.eq_ignore_ascii_case(s))))
    }

    /// Every secret this channel holds: kept out of logs, errors and metrics (tests grep for
    /// them).
    pub fn secrets(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        for v in [&self.token, &self.password, &self.client_secret] {
            out.extend(v.as_deref());
        }
        if matches!(self.kind, Kind::Slack | Kind::Teams | Kind::Webhook) {
            out.extend(self.url.as_deref());
        }
        out
    }
}

/// "HH:MM-HH:MM" as minutes of the day (start, end); the end may be the next morning.
pub fn parse_quiet_hours(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.split_once('-')?;
    let minutes = |t: &str| {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (a, b) = (minutes(a)?, minutes(b)?);
    (a != b).then_some((a, b))
}
