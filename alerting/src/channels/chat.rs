//! Chat services: a Slack-compatible incoming webhook (`text` + `blocks`), a Microsoft Teams
//! Workflows webhook (an Adaptive Card in a message), and Chatwork's room messages API.

use serde_json::{Value, json};

use super::http::answer;
use super::{ChannelConfig, Notice, SendError, Sent, defang};

/// Slack: `text` is the fallback (phone notifications), `blocks` the message.
pub fn slack_body(notice: &Notice) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&notice.subject(), 150)}
    })];
    for d in notice.alerts.iter().take(15) {
        let facts: Vec<Value> = notice
            .facts(d)
            .into_iter()
            .take(10)
            .map(|(l, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{l}*\n{}", escape_slack(&v)), 2000)}))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&format!("*{}*\n{}", escape_slack(&d.title), escape_slack(&defang(&d.explanation))), 3000)},
            "fields": facts
        }));
        if let Some(link) = &d.link {
            blocks.push(json!({
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "plain_text", "text": "開く / Open"}, "url": link}]
            }));
        }
    }
    json!({"text": clip(&escape_slack(&notice.subject()), 3000), "blocks": blocks})
}

/// Text for an Adaptive Card, whose TextBlocks and facts read markdown: brackets made
/// full-width, so text from a log (an account name) cannot become a link.
pub(super) fn card_text(text: &str) -> String {
    text.replace('[', "［").replace(']', "］")
}

/// Teams Workflows: a message with one Adaptive Card attachment.
pub fn teams_body(notice: &Notice) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
        "text": card_text(&notice.subject())
    })];
    let mut actions = Vec::new();
    for d in notice.alerts.iter().take(15) {
        body.push(json!({"type": "TextBlock", "weight": "Bolder", "wrap": true, "text": card_text(&d.title)}));
        body.push(
            json!({"type": "TextBlock", "wrap": true, "text": card_text(&defang(&d.explanation))}),
        );
        let facts: Vec<Value> = notice
            .facts(d)
            .into_iter()
            .map(|(l, v)| json!({"title": l, "value": card_text(&v)}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
        if let Some(link) = &d.link
            && actions.len() < 5
        {
            actions.push(json!({"type": "Action.OpenUrl", "title": format!("開く / Open #{}", d.alert_id), "url": link}));
        }
    }
    adaptive_card(body, actions)
}

/// A Teams Workflows message: one Adaptive Card of `body` elements and `actions`.
pub(super) fn adaptive_card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions
            }
        }]
    })
}

/// Chatwork's message notation: `[info][title]…[/title]…[/info]`.
pub fn chatwork_body(notice: &Notice) -> String {
    chatwork_info(&notice.subject(), &notice.plain_text())
}

/// A Chatwork `[info]` box; tags in the text would be read as markup, so its brackets are
/// made full-width.
pub(super) fn chatwork_info(title: &str, text: &str) -> String {
    format!(
        "[info][title]{}[/title]{}[/info]",
        card_text(title),
        card_text(text)
    )
}

pub(super) async fn send_chatwork(
    client: &reqwest::Client,
    c: &ChannelConfig,
    body: &str,
) -> Result<Sent, SendError> {
    let base = c.url.as_deref().unwrap_or("https://api.chatwork.com");
    let url = format!(
        "{}/v2/rooms/{}/messages",
        base.trim_end_matches('/'),
        c.room_id.as_deref().unwrap_or("")
    );
    let form = [("body", body), ("self_unread", "1")];
    let result = client
        .post(url)
        .header("X-ChatWorkToken", c.token.as_deref().unwrap_or(""))
        .form(&form)
        .send()
        .await;
    answer(result).await
}

pub(super) fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `n` characters (the services refuse longer fields).
pub(super) fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}
