//! Syslog forwarding to the SOC's collector over TCP or TLS, octet-counted (RFC 6587 / 5425).
//! Each alert is one RFC 5424 message with its facts as structured data `[mimamori@32473 ...]`,
//! or a CEF record carried as the message of an RFC 5424 frame. A write the kernel took and
//! flushed counts as delivered: syslog has no application-level acknowledgement.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{ChannelConfig, SendError, Sent, TlsMode};
use crate::document::AlertDocument;

/// The SD-ID of mimamori's structured data (32473 is the enterprise number RFC 5612 reserves
/// for documentation and examples).
pub const SD_ID: &str = "mimamori@32473";

/// Facility 13 (log audit).
const FACILITY: u8 = 13;

/// The open stream to the collector, reused between messages.
#[derive(Default)]
pub(super) struct Connection {
    stream: Option<Box<dyn AsyncWrite + Unpin + Send>>,
}

fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped with a backslash (RFC 5424 6.3.3).
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// A header field: printable US-ASCII without spaces, at most `max`, or `-`.
fn header_field(value: &str, max: usize) -> String {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

fn frame_header(d: &AlertDocument, msgid: &str, sd: &str) -> String {
    format!(
        "<{}>1 {} {} mimamori - {msgid} {sd}",
        FACILITY * 8 + syslog_severity(&d.severity),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        header_field(&d.appliance, 255),
    )
}

/// One alert as an RFC 5424 message.
pub fn rfc5424_line(d: &AlertDocument, key: &str) -> String {
    let mut params = vec![
        ("id", d.id.clone()),
        ("alert_id", d.alert_id.to_string()),
        ("change", d.change.as_str().to_owned()),
        ("rule", d.rule.clone()),
        ("severity", d.severity.clone()),
        ("status", d.status.as_str().to_owned()),
        ("first_seen", d.first_seen.to_rfc3339()),
        ("last_seen", d.last_seen.to_rfc3339()),
        ("count", d.count.to_string()),
        ("key", key.to_owned()),
        ("schema", d.schema.clone()),
    ];
    for (k, v) in [
        ("user", &d.user),
        ("site", &d.site),
        ("by", &d.changed_by),
        ("link", &d.link),
    ] {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    }
    if let Some(p) = &d.patients {
        params.push(("patients", p.join(",")));
    }
    let sd: String = params
        .iter()
        .map(|(k, v)| format!(" {k}=\"{}\"", sd_escape(v)))
        .collect();
    let msg: String = d
        .explanation
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!(
        "{}\u{feff}{}: {msg}",
        frame_header(d, "ALERT", &format!("[{SD_ID}{sd}]")) + " ",
        d.title
    )
}

/// CEF header escaping: `\` and `|`.
fn cef_header(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// CEF extension escaping: `\`, `=`, and line breaks as `\n` / `\r`.
fn cef_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One alert as a CEF record in an RFC 5424 frame.
pub fn cef_line(d: &AlertDocument, key: &str) -> String {
    let severity = match d.severity.as_str() {
        "critical" => 10,
        "high" => 8,
        "medium" => 5,
        _ => 3,
    };
    let mut ext = vec![
        ("rt", d.last_seen.timestamp_millis().to_string()),
        ("start", d.first_seen.timestamp_millis().to_string()),
        ("end", d.last_seen.timestamp_millis().to_string()),
        ("cnt", d.count.to_string()),
        ("act", d.change.as_str().to_owned()),
        ("externalId", d.id.clone()),
        ("msg", d.explanation.clone()),
        ("cs1Label", "status".into()),
        ("cs1", d.status.as_str().into()),
        ("cs2Label", "idempotencyKey".into()),
        ("cs2", key.to_owned()),
    ];
    if let Some(u) = &d.user {
        ext.push(("suser", u.clone()));
    }
    if let Some(s) = &d.site {
        ext.push(("cs3Label", "site".into()));
        ext.push(("cs3", s.clone()));
    }
    if let Some(l) = &d.link {
        ext.push(("cs4Label", "link".into()));
        ext.push(("cs4", l.clone()));
    }
    if let Some(p) = &d.patients {
        ext.push(("cs5Label", "patients".into()));
        ext.push(("cs5", p.join(",")));
    }
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "{}CEF:0|mimamori|mimamori|{}|{}|{}|{severity}|{}",
        frame_header(d, "CEF", "-") + " ",
        env!("CARGO_PKG_VERSION"),
        cef_header(&d.rule),
        cef_header(&d.title),
        ext.join(" ")
    )
}

async fn connect(c: &ChannelConfig) -> Result<Box<dyn AsyncWrite + Unpin + Send>, SendError> {
    let address = c.address.as_deref().unwrap_or("");
    let retry = |what: &str, e: &dyn std::fmt::Display| SendError::Retry {
        reason: format!("{what} {address}: {e}"),
        after: None,
    };
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| retry("connecting to", &"timed out"))?
    .map_err(|e| retry("connecting to", &e))?;
    tcp.set_nodelay(true).ok();
    if c.tls.unwrap_or(TlsMode::None) == TlsMode::None {
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    let ca = c
        .ca_file
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&ca)
        .map_err(|e| SendError::Permanent(format!("ca_file {}: {e}", ca.display())))?;
    for cert in certs.flatten() {
        roots.add(cert).ok();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Permanent(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SendError::Permanent(format!("address {address}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| retry("TLS with", &e))?;
    Ok(Box::new(stream))
}

pub(super) async fn send(
    c: &ChannelConfig,
    conn: &mut Connection,
    body: &str,
) -> Result<Sent, SendError> {
    let lines: Vec<String> = serde_json::from_str(body)
        .map_err(|e| SendError::Permanent(format!("stored lines: {e}")))?;
    let mut frames = Vec::new();
    for line in &lines {
        frames.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
    }
    if conn.stream.is_none() {
        conn.stream = Some(connect(c).await?);
    }
    let stream = conn.stream.as_mut().expect("connected above");
    let written = async {
        stream.write_all(&frames).await?;
        stream.flush().await
    }
    .await;
    if let Err(e) = written {
        conn.stream = None;
        return Err(SendError::Retry {
            reason: format!("writing to {}: {e}", c.address.as_deref().unwrap_or("")),
            after: None,
        });
    }
    Ok(Sent(format!("{} message(s) written", lines.len())))
}
