//! Just enough MIME to show a received mail: headers (with RFC 2047 encoded words), nested
//! multiparts, base64 and quoted-printable bodies, attachments by name. Bodies are taken as
//! UTF-8 (what the channels send); anything else is shown lossily, never trusted.

use std::io::Read;
use std::path::Path;

use base64::Engine;

/// Parts read at most, however the message nests them.
const MAX_PARTS: usize = 64;
/// Header bytes read for a listing.
const HEAD_BYTES: u64 = 64 * 1024;

/// A message's header section, unfolded, names lowercased.
#[derive(Debug, Default)]
pub(crate) struct Head {
    fields: Vec<(String, String)>,
}

impl Head {
    fn parse(text: &str) -> Head {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Head { fields }
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header's value with its encoded words decoded.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.raw(name).map(decode_words)
    }

    /// `text/html` from `Content-Type: text/html; charset=utf-8`, and one of its parameters.
    fn content_type(&self) -> (String, Option<String>) {
        let value = self.raw("content-type").unwrap_or("text/plain");
        let kind = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (kind, parameter(value, "boundary"))
    }
}

/// A parameter of a header value (`boundary="x"`, `filename=y`).
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (key, v) = p.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The headers of the message in `path`, read from its first bytes only.
pub(crate) fn read_head(path: &Path) -> std::io::Result<Head> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(HEAD_BYTES)
        .read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let end = text.find("\r\n\r\n").or_else(|| text.find("\n\n"));
    Ok(Head::parse(&text[..end.unwrap_or(text.len())]))
}

/// An attached file, by name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    pub content_type: String,
    pub bytes: usize,
}

/// A received mail, decoded for reading.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub date: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentInfo>,
}

impl Mail {
    pub fn parse(bytes: &[u8]) -> Mail {
        let (head, body) = split(bytes);
        let mut mail = Mail {
            from: head.header("from").unwrap_or_default(),
            to: head.header("to").unwrap_or_default(),
            subject: head.header("subject").unwrap_or_default(),
            date: head.header("date").unwrap_or_default(),
            ..Mail::default()
        };
        let mut parts = 0;
        mail.walk(&head, body, &mut parts);
        mail
    }

    fn walk(&mut self, head: &Head, body: &[u8], parts: &mut usize) {
        *parts += 1;
        if *parts > MAX_PARTS {
            return;
        }
        let (kind, boundary) = head.content_type();
        if let (true, Some(boundary)) = (kind.starts_with("multipart/"), boundary) {
            for part in multipart(body, &boundary) {
                let (head, body) = split(part);
                self.walk(&head, body, parts);
            }
            return;
        }
        let decoded = decode_body(head.raw("content-transfer-encoding"), body);
        let disposition = head.raw("content-disposition").unwrap_or("");
        let name = parameter(disposition, "filename")
            .or_else(|| parameter(head.raw("content-type").unwrap_or(""), "name"));
        let attached = disposition.to_ascii_lowercase().starts_with("attachment");
        match (kind.as_str(), attached) {
            ("text/plain", false) if self.text.is_none() => {
                self.text = Some(String::from_utf8_lossy(&decoded).into_owned());
            }
            ("text/html", false) if self.html.is_none() => {
                self.html = Some(String::from_utf8_lossy(&decoded).into_owned());
            }
            _ => self.attachments.push(AttachmentInfo {
                name: name.map(|n| decode_words(&n)).unwrap_or_default(),
                content_type: kind,
                bytes: decoded.len(),
            }),
        }
    }
}

/// Headers and body.
fn split(bytes: &[u8]) -> (Head, &[u8]) {
    let at = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
    let (end, skip) = match (at(b"\r\n\r\n"), at(b"\n\n")) {
        (Some(a), Some(b)) if b < a => (b, 2),
        (Some(a), _) => (a, 4),
        (None, Some(b)) => (b, 2),
        (None, None) => (bytes.len(), 0),
    };
    let head = Head::parse(&String::from_utf8_lossy(&bytes[..end]));
    (head, &bytes[(end + skip).min(bytes.len())..])
}

/// The parts between `--boundary` lines.
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let marker = format!("--{boundary}");
    let marker = marker.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + marker.len() <= body.len() {
        let at_line_start = i == 0 || body[i - 1] == b'\n';
        if at_line_start && &body[i..i + marker.len()] == marker {
            starts.push(i);
            i += marker.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for pair in starts.windows(2) {
        let from = pair[0] + marker.len();
        let part = &body[from..pair[1]];
        let part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        parts.push(part);
        if parts.len() >= MAX_PARTS {
            break;
        }
    }
    parts
}

fn decode_body(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        Some("base64") => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .unwrap_or_else(|_| body.to_vec())
        }
        Some("quoted-printable") => quoted_printable(body, false),
        _ => body.to_vec(),
    }
}

/// Quoted-printable (RFC 2045), or the `Q` encoding of header words (`_` is a space).
fn quoted_printable(input: &[u8], header: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' if input[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if input[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            b'_' if header => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`); whitespace between two
/// encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, word) = rest.split_at(start);
        let decoded = word[2..].splitn(3, '?').collect::<Vec<_>>();
        let parsed = (decoded.len() == 3)
            .then(|| {
                let end = decoded[2].find("?=")?;
                let text = &decoded[2][..end];
                let bytes = match decoded[1].to_ascii_lowercase().as_str() {
                    "b" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()?,
                    "q" => quoted_printable(text.as_bytes(), true),
                    _ => return None,
                };
                let used = 2 + decoded[0].len() + 1 + decoded[1].len() + 1 + end + 2;
                Some((String::from_utf8_lossy(&bytes).into_owned(), used))
            })
            .flatten();
        match parsed {
            Some((text, used)) => {
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &word[used..];
                after_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &word[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_and_bodies_are_decoded() {
        assert_eq!(
            decode_words("=?utf-8?b?44CQ6YeN6KaB44CR?= =?utf-8?q?=E5=A4=9C_x?= tail"),
            "【重要】夜 x tail"
        );
        assert_eq!(decode_words("plain =?bad"), "plain =?bad");
        assert_eq!(quoted_printable(b"a=3Db=\r\nc", false), b"a=bc");
        assert_eq!(quoted_printable(b"end=", false), b"end=");
    }

    #[test]
    fn a_multipart_mail_gives_text_html_and_attachments() {
        let mail = "From: mimamori <m@demo.invalid>\r\nTo: director@demo.invalid\r\n\
            Subject: =?utf-8?b?5pyI?=\r\nContent-Type: multipart/mixed; boundary=\"X\"\r\n\r\n\
            --X\r\nContent-Type: multipart/alternative; boundary=Y\r\n\r\n\
            --Y\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            5pel5pys6Kqe\r\n--Y\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--Y--\r\n\
            --X\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"r.csv\"\r\n\r\n\
            a,b\r\n--X--\r\n";
        let mail = Mail::parse(mail.as_bytes());
        assert_eq!(mail.subject, "月");
        assert_eq!(mail.text.as_deref(), Some("日本語"));
        assert_eq!(mail.html.as_deref().map(str::trim), Some("<p>hi</p>"));
        assert_eq!(mail.attachments.len(), 1);
        assert_eq!(mail.attachments[0].name, "r.csv");
    }
}
