//! Where alerts go: each `[[channels]]` entry is one receiver of one kind. This module holds the
//! configuration (checked with the key at fault), what a message says ([`Notice`]), and the
//! outcome of one attempt ([`Sent`] or [`SendError`]); each kind renders and sends in its own
//! module.

mod chat;
mod email;
mod http;
mod lineworks;
mod syslog;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use rules::Severity;
use serde::{Deserialize, Serialize};

use crate::document::AlertDocument;

pub use chat::{chatwork_body, slack_body, teams_body};
pub use syslog::{cef_line, rfc5424_line};
pub use webhook::{sign, webhook_body};

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
        }
    }

    /// The least time between two messages: the receivers' published rate limits.
    fn default_interval(self) -> Duration {
        match self {
            Kind::Slack | Kind::Teams | Kind::Chatwork | Kind::Lineworks => Duration::from_secs(1),
            Kind::Email | Kind::Webhook | Kind::Syslog => Duration::ZERO,
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
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(()),
                _ => Err(bad(k, "an http(s):// URL")),
            }
        };
        if let Some(q) = &self.quiet_hours
            && parse_quiet_hours(q).is_none()
        {
            return Err(bad("quiet_hours", "\"HH:MM-HH:MM\", e.g. \"20:00-08:00\""));
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
                    if webhook::secret_key(s).is_none() {
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
            Kind::Syslog => {
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

/// What one message says: one or more alerts (a group, or a morning digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// The delivery's idempotency key: the same on every retry, never on another message.
    pub key: String,
    pub alerts: Vec<AlertDocument>,
    /// Held over quiet hours.
    #[serde(default)]
    pub digest: bool,
    /// The clinic's zone (IANA name): times in messages to people are local.
    pub timezone: String,
}

impl Notice {
    /// A one-line subject, Japanese first.
    pub fn subject(&self) -> String {
        match self.alerts.as_slice() {
            [one] => format!(
                "[mimamori] {} {}: {}{}",
                severity_ja(&one.severity),
                one.change.label().split(" / ").next().unwrap_or(""),
                one.title.split(" / ").next().unwrap_or(&one.title),
                one.user
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            ),
            many => format!(
                "[mimamori] {}{}件 / {} alerts",
                if self.digest {
                    "まとめ: アラート"
                } else {
                    "アラート"
                },
                many.len(),
                many.len()
            ),
        }
    }
}

impl Notice {
    fn zone(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::Asia::Tokyo)
    }

    /// A time as the clinic reads it: `2026/11/24(火) 22:40`.
    pub fn local(&self, t: chrono::DateTime<chrono::Utc>) -> String {
        let local = t.with_timezone(&self.zone());
        let day = ["月", "火", "水", "木", "金", "土", "日"]
            [chrono::Datelike::weekday(&local).num_days_from_monday() as usize];
        format!(
            "{}({day}) {}",
            local.format("%Y/%m/%d"),
            local.format("%H:%M")
        )
    }

    /// The facts of one alert, label (Japanese / English) and value, for every people channel.
    pub fn facts(&self, d: &AlertDocument) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("重要度 / Severity", severity_ja(&d.severity)),
            ("状態 / Status", d.change.label().to_owned()),
        ];
        if let Some(u) = &d.user {
            out.push(("職員 / Staff", u.clone()));
        }
        if let Some(s) = &d.site {
            out.push(("拠点 / Site", s.clone()));
        }
        let when = if d.first_seen == d.last_seen {
            self.local(d.first_seen)
        } else {
            format!("{} – {}", self.local(d.first_seen), self.local(d.last_seen))
        };
        out.push(("日時 / When", when));
        out.push(("件数 / Count", d.count.to_string()));
        if let Some(by) = &d.changed_by {
            out.push(("対応者 / By", by.clone()));
        }
        if let Some(r) = &d.status_reason {
            out.push(("理由 / Reason", r.clone()));
        }
        if let Some(p) = d.patients.as_ref().filter(|p| !p.is_empty()) {
            out.push(("患者 / Patients", p.join(", ")));
        }
        out
    }

    /// The whole notice as plain text (email, Chatwork, LINE WORKS).
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        if self.digest {
            out.push_str(
                "静かな時間帯に保留したアラートのまとめです。/ Alerts held over quiet hours.\n\n",
            );
        }
        for d in &self.alerts {
            out.push_str(&format!("■ {}\n{}\n", d.title, d.explanation));
            for (label, value) in self.facts(d) {
                out.push_str(&format!("{label}: {value}\n"));
            }
            if let Some(link) = &d.link {
                out.push_str(&format!("{link}\n"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "mimamori ({})",
            self.alerts.first().map_or("", |d| d.appliance.as_str())
        ));
        out
    }
}

/// Severity in Japanese then English, e.g. "【重大/critical】".
pub fn severity_ja(severity: &str) -> String {
    let ja = match severity {
        "critical" => "緊急",
        "high" => "重要",
        "medium" => "注意",
        _ => "情報",
    };
    format!("【{ja}/{severity}】")
}

/// The result of one attempt the receiver accepted: what it answered (kept, shown by
/// `alerts deliveries` and `channels test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent(pub String);

/// Why an attempt failed. Texts never hold a secret (no URL, token or password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (a timeout, 5xx, 429), after `after` if the receiver said so.
    #[error("{reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Will fail the same way again (a rejected message, bad credentials): dead at once.
    #[error("{0}")]
    Permanent(String),
}

/// A channel ready to send: its config plus the connections and tokens it keeps.
pub struct Channel {
    pub config: ChannelConfig,
    client: reqwest::Client,
    syslog: Option<syslog::Connection>,
    lineworks: Option<lineworks::TokenCache>,
}

/// How long one attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

impl Channel {
    pub fn new(config: ChannelConfig) -> Result<Channel, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mimamori/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &config.ca_file
            && matches!(
                config.kind,
                Kind::Slack | Kind::Teams | Kind::Webhook | Kind::Chatwork | Kind::Lineworks
            )
        {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
            builder = builder.tls_certs_merge([cert]);
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        let syslog = (config.kind == Kind::Syslog).then(syslog::Connection::default);
        let lineworks = (config.kind == Kind::Lineworks).then(lineworks::TokenCache::default);
        Ok(Channel {
            config,
            client,
            syslog,
            lineworks,
        })
    }

    /// Renders the message body once (kept with the delivery, so a retry sends the same bytes).
    pub fn render(&self, notice: &Notice) -> Result<String, String> {
        let c = &self.config;
        Ok(match c.kind {
            Kind::Email => serde_json::to_string(&email::render(notice)).unwrap_or_default(),
            Kind::Slack => slack_body(notice).to_string(),
            Kind::Teams => teams_body(notice).to_string(),
            Kind::Chatwork => chatwork_body(notice),
            Kind::Lineworks => lineworks::text(notice),
            Kind::Webhook => webhook_body(notice, c.template.as_deref())?,
            Kind::Syslog => {
                let format = c.format.unwrap_or(SyslogFormat::Rfc5424);
                let lines: Vec<String> = notice
                    .alerts
                    .iter()
                    .map(|d| match format {
                        SyslogFormat::Rfc5424 => rfc5424_line(d, &notice.key),
                        SyslogFormat::Cef => cef_line(d, &notice.key),
                    })
                    .collect();
                serde_json::to_string(&lines).unwrap_or_default()
            }
        })
    }

    /// One attempt to deliver a rendered body.
    pub async fn send(&mut self, key: &str, body: &str) -> Result<Sent, SendError> {
        let c = &self.config;
        let attempt = async {
            match c.kind {
                Kind::Email => email::send(c, key, body).await,
                Kind::Slack | Kind::Teams => {
                    http::post_json(&self.client, c.url.as_deref().unwrap_or(""), &[], body).await
                }
                Kind::Chatwork => chat::send_chatwork(&self.client, c, body).await,
                Kind::Webhook => webhook::send(&self.client, c, key, body).await,
                Kind::Lineworks => {
                    let cache = self.lineworks.get_or_insert_with(Default::default);
                    lineworks::send(&self.client, c, cache, body).await
                }
                Kind::Syslog => {
                    let conn = self.syslog.get_or_insert_with(Default::default);
                    syslog::send(c, conn, body).await
                }
            }
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(5), attempt).await {
            Ok(result) => result,
            Err(_) => {
                // A half-written syslog frame must not be followed by another on that stream.
                self.syslog = None;
                Err(SendError::Retry {
                    reason: "no answer within 35 s".into(),
                    after: None,
                })
            }
        }
    }
}
