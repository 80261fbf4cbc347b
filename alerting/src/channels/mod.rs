//! Where alerts go: each `[[channels]]` entry ([`ChannelConfig`]) is one receiver of one kind.
//! A [`Channel`] renders a [`Notice`] once and sends it; an attempt ends [`Sent`] or in a
//! [`SendError`]. Each kind renders and sends in its own module.

mod chat;
mod command;
mod config;
mod email;
mod http;
mod lineworks;
mod message;
mod notice;
mod syslog;
mod webhook;

use std::time::Duration;

pub use chat::{chatwork_body, slack_body, teams_body};
pub use config::{BadKey, ChannelConfig, Kind, SyslogFormat, TlsMode, parse_quiet_hours};
pub use message::{Attachment, Message};
pub use notice::{Notice, defang, severity_ja};
pub use syslog::{cef_line, rfc5424_line};
pub use webhook::{sign, webhook_body};

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
            Kind::Command => serde_json::to_string(notice).unwrap_or_default(),
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
                Kind::Command => command::run(c, body).await,
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
