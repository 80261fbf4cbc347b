//! Delivers [`rules::Alert`]s to people and to the SOC: email, chat, webhooks, with an outbox so
//! nothing is lost while an endpoint is down.
//!
//! [`db::AlertDb`] stores alerts (SQLite); the delivery channels come with their issue.

pub mod db;

use serde::{Deserialize, Serialize};

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Chat,
    Webhook,
    Syslog,
}

/// One alert to deliver on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub channel: ChannelKind,
    pub alert: rules::Alert,
}
