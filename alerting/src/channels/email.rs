//! Email over SMTP (lettre, rustls): STARTTLS required or TLS from the first byte, optional
//! login, several recipients; a Japanese subject and body in UTF-8, plain text plus HTML. The
//! delivery's idempotency key is the `Message-ID`, so a mail resent after a crash can be
//! recognised as the same.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{ChannelConfig, Notice, SendError, Sent, TlsMode};

/// The rendered mail, kept with the delivery.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Mail {
    subject: String,
    text: String,
    html: String,
    /// Files carried (the weekly review's CSV); none for alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<super::Attachment>,
}

impl Mail {
    /// A message that is not an alert: its HTML as given, or the text as HTML.
    pub(super) fn from_message(m: &super::Message) -> Mail {
        let html = m.html.clone().unwrap_or_else(|| {
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"></head><body><pre style=\"font-family:sans-serif;white-space:pre-wrap\">{}</pre></body></html>",
                esc(&m.text)
            )
        });
        let mut text = m.text.clone();
        for note in &m.mail_notes {
            text.push_str(&format!("\n\n{note}"));
        }
        if let Some(link) = &m.link {
            text.push_str(&format!("\n\n{link}"));
        }
        Mail {
            subject: m.subject.clone(),
            text,
            html,
            attachments: m.attachments.clone(),
        }
    }
}

pub(super) fn render(notice: &Notice) -> Mail {
    let mut html = String::from(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head><body style=\"font-family:sans-serif;font-size:15px;line-height:1.5;max-width:640px\">",
    );
    if notice.digest {
        html.push_str(
            "<p>静かな時間帯に保留したアラートのまとめです。<br>Alerts held over quiet hours.</p>",
        );
    }
    for d in &notice.alerts {
        let colour = match d.severity.as_str() {
            "critical" => "#b00020",
            "high" => "#d35400",
            "medium" => "#b7950b",
            _ => "#555555",
        };
        html.push_str(&format!(
            "<h2 style=\"font-size:17px;border-left:6px solid {colour};padding-left:8px\">{}</h2><p>{}</p><table style=\"border-collapse:collapse\">",
            esc(&d.title),
            esc(&super::defang(&d.explanation))
        ));
        for (label, value) in notice.facts(d) {
            html.push_str(&format!(
                "<tr><th style=\"text-align:left;padding:2px 12px 2px 0;color:#555;font-weight:normal;white-space:nowrap\">{}</th><td>{}</td></tr>",
                esc(label),
                esc(&value)
            ));
        }
        html.push_str("</table>");
        if let Some(link) = &d.link {
            html.push_str(&format!(
                "<p><a href=\"{}\">mimamori で開く / Open in mimamori</a></p>",
                esc(link)
            ));
        }
    }
    html.push_str("<p style=\"color:#777;font-size:12px\">mimamori</p></body></html>");
    Mail {
        subject: notice.subject(),
        text: notice.plain_text(),
        html,
        attachments: Vec::new(),
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn send(c: &ChannelConfig, key: &str, body: &str) -> Result<Sent, SendError> {
    let permanent =
        |what: &str, e: &dyn std::fmt::Display| SendError::Permanent(format!("{what}: {e}"));
    let mail: Mail = serde_json::from_str(body).map_err(|e| permanent("stored mail", &e))?;
    let from: Mailbox = c
        .from
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|e| permanent("from", &e))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(mail.subject)
        .message_id(Some(format!("<{key}@mimamori>")));
    for to in &c.to {
        builder = builder.to(to.parse().map_err(|e| permanent("to", &e))?);
    }
    let mut body = MultiPart::alternative_plain_html(mail.text, mail.html);
    if !mail.attachments.is_empty() {
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in mail.attachments {
            let kind = ContentType::parse(&a.content_type)
                .map_err(|e| permanent("attachment type", &e))?;
            let bytes = a.bytes().map_err(|e| permanent("stored mail", &e))?;
            mixed = mixed.singlepart(Attachment::new(a.filename).body(bytes, kind));
        }
        body = mixed;
    }
    let message = builder
        .multipart(body)
        .map_err(|e| permanent("building the mail", &e))?;
    let host = c.smtp_host.as_deref().unwrap_or("");
    let mode = c.tls.unwrap_or(TlsMode::Starttls);
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .timeout(Some(super::ATTEMPT_TIMEOUT));
    let port = c.smtp_port.unwrap_or(match mode {
        TlsMode::Tls => 465,
        TlsMode::Starttls => 587,
        TlsMode::None => 25,
    });
    transport = transport.port(port);
    if mode != TlsMode::None {
        let mut params = TlsParameters::builder(host.to_owned());
        if let Some(ca) = &c.ca_file {
            let pem = std::fs::read(ca).map_err(|e| permanent(&ca.display().to_string(), &e))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| permanent("ca_file", &e))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|e| permanent("TLS settings", &e))?;
        transport = transport.tls(match mode {
            TlsMode::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        });
    }
    if let (Some(user), Some(password)) = (&c.username, &c.password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let response = transport.build().send(message).await.map_err(|e| {
        // lettre's errors name the server's answer, never the password.
        if e.is_permanent() {
            SendError::Permanent(format!("the mail server refused: {e}"))
        } else {
            SendError::Retry {
                reason: format!("mail server: {e}"),
                after: None,
            }
        }
    })?;
    let said: Vec<&str> = response.message().collect();
    Ok(Sent(format!(
        "SMTP {} {}",
        response.code(),
        super::http::short(&said.join(" "))
    )))
}
