//! A message that is not about one alert (the weekly access review): a subject, a short text,
//! an optional HTML body and attachments (email), and a link. Rendered once for a people
//! channel ([`Kind::is_people`]): email carries it whole, chat services the text and the link.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::chat::{adaptive_card, card_text, chatwork_info, clip, escape_slack as slack};
use super::{ChannelConfig, Kind, email};

/// What is said, the same to every channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub subject: String,
    /// Plain text: the chat message, and the email's text part.
    pub text: String,
    /// Lines only an email carries (what is attached, or why not).
    #[serde(default)]
    pub mail_notes: Vec<String>,
    /// The email's HTML part (inline styles only; no script, no remote images).
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Where the whole of it is read in the web UI.
    pub link: Option<String>,
}

/// A file an email carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    /// e.g. `text/csv; charset=utf-8`.
    pub content_type: String,
    /// The text, or with `base64` the bytes in base64 (a PDF).
    pub content: String,
    #[serde(default)]
    pub base64: bool,
}

impl Attachment {
    /// A binary file (kept as base64 in the delivery).
    pub fn binary(filename: String, content_type: &str, bytes: &[u8]) -> Attachment {
        use base64::Engine;
        Attachment {
            filename,
            content_type: content_type.to_owned(),
            content: base64::engine::general_purpose::STANDARD.encode(bytes),
            base64: true,
        }
    }

    /// Its bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        if self.base64 {
            base64::engine::general_purpose::STANDARD
                .decode(&self.content)
                .map_err(|e| format!("attachment {}: {e}", self.filename))
        } else {
            Ok(self.content.clone().into_bytes())
        }
    }
}

impl Kind {
    /// Read by people (email and chat services), as against systems (webhook, syslog) and
    /// automatic responses, whose receivers expect alerts only.
    pub fn is_people(self) -> bool {
        matches!(
            self,
            Kind::Email | Kind::Slack | Kind::Teams | Kind::Chatwork | Kind::Lineworks
        )
    }
}

impl ChannelConfig {
    /// The body a delivery keeps and the channel's sender sends; an error for a channel that
    /// is not read by people.
    pub fn render_message(&self, m: &Message) -> Result<String, String> {
        let with_link = match &m.link {
            Some(link) => format!("{}\n\n{link}", m.text),
            None => m.text.clone(),
        };
        Ok(match self.kind {
            Kind::Email => {
                serde_json::to_string(&email::Mail::from_message(m)).map_err(|e| e.to_string())?
            }
            Kind::Slack => {
                let text = clip(
                    &format!("*{}*\n{}", slack(&m.subject), slack(&with_link)),
                    3000,
                );
                json!({"text": text}).to_string()
            }
            Kind::Teams => {
                let block = |text: &str, bold: bool| {
                    json!({"type": "TextBlock", "wrap": true, "weight": if bold { "Bolder" } else { "Default" },
                           "text": card_text(text)})
                };
                let actions = m
                    .link
                    .iter()
                    .map(|l| json!({"type": "Action.OpenUrl", "title": "開く / Open", "url": l}))
                    .collect();
                adaptive_card(
                    vec![block(&m.subject, true), block(&m.text, false)],
                    actions,
                )
                .to_string()
            }
            Kind::Chatwork => chatwork_info(&m.subject, &with_link),
            Kind::Lineworks => clip(
                &format!("{}\n\n{with_link}", m.subject),
                super::lineworks::MAX_TEXT_CHARS,
            ),
            Kind::Webhook | Kind::Syslog | Kind::Command => {
                return Err(format!(
                    "a {} channel carries alerts only",
                    self.kind.as_str()
                ));
            }
        })
    }
}
