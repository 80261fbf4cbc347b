//! The payloads of a sealed block, stored by field: the values of one field for every record
//! of the block lie together, and a string value that also appears in the record's
//! `event.original` (the parsed user, patient, address, message ...) is stored as where it is in
//! the original. The parsed event mostly repeats its raw line, and this stores the line once.
//!
//! It works on the JSON text as written, byte for byte: a payload is cut into its keys and
//! value texts, and put back together from them. A payload that is not a flat-enough JSON
//! object, or does not come back identical, is kept as it is.
//!
//! ```text
//! raw:     u8 codec (1) | varint records | varint shapes | shape* | varint shape of each record
//!          | varint columns | (varint name length | name)* | (varint length | entries)*
//!          | (varint length | payload)* of the records kept as they are
//! shape:   varint tokens | token*;  token: u8 0 (value) or 1 (object opens) + varint length + key
//!          text, or u8 2 (object closes)
//! entry:   u8 0 + varint length + value text, or u8 1 + varint offset + varint length: the
//!          value is `"` + those bytes of the original's text + `"`, or (log format 4) u8 2 +
//!          varint length + source key: the value is the event id derived from that key and
//!          the original ([`EventId::derive`])
//! ```
//!
//! An event id is a hash of its source's key and its raw line: 16 bytes that do not compress,
//! a tenth of a sealed event. Where the key is one of the known ones (`source_key`) and the
//! original is the raw line as received, the id is derived again when the record is read.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::event::{EventId, source_key};

/// Key whose string value the others refer into.
const ORIGINAL: &[u8] = b"event.original";
/// Key of the event id, and of the sender's address its key may follow from.
const ID: &[u8] = b"event.id";
const ADDRESS: &[u8] = b"log.source.address";
/// Shorter string values are stored as they are: a reference would not be smaller.
const MIN_REFERENCE: usize = 4;
const CODEC_COLUMNS: u8 = 1;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Token {
    Value(Vec<u8>),
    Open(Vec<u8>),
    Close,
}

/// A payload cut into its shape and value texts.
struct Cut<'a> {
    /// The shape as bytes, for looking it up: per token its kind and key, each key ended by
    /// 0xFF (never in UTF-8 text).
    shape: Vec<u8>,
    values: Vec<&'a [u8]>,
}

/// What a shape is, worked out once per block for every distinct shape.
struct Shape {
    tokens: Vec<Token>,
    /// The column of each of its values.
    columns: Vec<usize>,
    /// Which of its values is the original, the id, the sender's address.
    original: Option<usize>,
    id: Option<usize>,
    address: Option<usize>,
}

/// Byte offset just past the JSON string starting at `at` (a `"`).
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Byte offset just past the JSON value starting at `at` (not an object).
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let len = bytes[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']'))?;
            (len > 0).then_some(at + len)
        }
    }
}

/// Cuts the object at `at` (a `{`) into `cut`; returns the offset past it. Objects one level
/// down (`labels`) are cut too; deeper ones are values.
fn cut_object<'a>(bytes: &'a [u8], at: usize, depth: u8, cut: &mut Cut<'a>) -> Option<usize> {
    let mut i = at + 1;
    if bytes.get(i) == Some(&b'}') {
        return None; // `{}` has no key to hang its shape on: kept whole
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(bytes, i)?;
        let key = &bytes[i + 1..key_end - 1];
        if bytes.get(key_end) != Some(&b':') {
            return None;
        }
        let v = key_end + 1;
        if bytes.get(v) == Some(&b'{') && depth == 0 {
            cut.shape.push(1);
            cut.shape.extend_from_slice(key);
            cut.shape.push(0xFF);
            i = cut_object(bytes, v, depth + 1, cut)?;
            cut.shape.push(2);
        } else {
            let end = value_end(bytes, v)?;
            cut.shape.push(0);
            cut.shape.extend_from_slice(key);
            cut.shape.push(0xFF);
            cut.values.push(&bytes[v..end]);
            i = end;
        }
        match bytes.get(i)? {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

fn cut<'a>(payload: &'a [u8], into: &mut Cut<'a>) -> Option<()> {
    into.shape.clear();
    into.values.clear();
    if payload.first() != Some(&b'{') {
        return None;
    }
    let end = cut_object(payload, 0, 0, into)?;
    (end == payload.len()).then_some(())
}

/// The tokens of a shape cut by [`cut`].
fn tokens(shape: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < shape.len() {
        let kind = shape[i];
        if kind == 2 {
            out.push(Token::Close);
            i += 1;
            continue;
        }
        let len = shape[i + 1..].iter().position(|&b| b == 0xFF).unwrap_or(0);
        let key = shape[i + 1..i + 1 + len].to_vec();
        out.push(if kind == 0 {
            Token::Value(key)
        } else {
            Token::Open(key)
        });
        i += len + 2;
    }
    out
}

/// The column name of each value of a shape: its key, under its object's key.
fn value_names(tokens: &[Token]) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    let mut prefix: Vec<u8> = Vec::new();
    for token in tokens {
        match token {
            Token::Value(key) => {
                let mut name = prefix.clone();
                name.extend_from_slice(key);
                names.push(name);
            }
            Token::Open(key) => {
                prefix.extend_from_slice(key);
                prefix.push(b'.');
            }
            Token::Close => prefix.clear(),
        }
    }
    names
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads what [`put_varint`] and [`put_bytes`] wrote; every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            n |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Some(n);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        (n <= self.bytes.len() - self.at).then_some(n)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Some(out)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

/// Encodes the payloads of one block.
pub fn encode(payloads: &[&[u8]]) -> Vec<u8> {
    let mut shapes: Vec<Shape> = Vec::new();
    let mut shape_ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut record_shapes = Vec::with_capacity(payloads.len());
    let mut columns: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut column_ids: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut parts = Cut {
        shape: Vec::new(),
        values: Vec::new(),
    };
    let mut check = Vec::new();
    // The key the block's last derived id came from: most records of a block share one.
    let mut last_key: Option<String> = None;
    for payload in payloads {
        let id = match cut(payload, &mut parts) {
            None => None,
            Some(()) => match shape_ids.get(&parts.shape) {
                Some(&id) => Some(id),
                None => {
                    let tokens = tokens(&parts.shape);
                    let names = value_names(&tokens);
                    let original = names.iter().position(|n| n == ORIGINAL);
                    let id = names.iter().position(|n| n == ID);
                    let address = names.iter().position(|n| n == ADDRESS);
                    let columns = names
                        .into_iter()
                        .map(|name| {
                            let next = columns.len();
                            *column_ids.entry(name.clone()).or_insert_with(|| {
                                columns.push((name, Vec::new()));
                                next
                            })
                        })
                        .collect();
                    shapes.push(Shape {
                        tokens,
                        columns,
                        original,
                        id,
                        address,
                    });
                    shape_ids.insert(parts.shape.clone(), shapes.len() - 1);
                    Some(shapes.len() - 1)
                }
            },
        };
        // Only what comes back byte for byte is taken apart.
        let id = id.filter(|&id| {
            check.clear();
            rebuild(&shapes[id].tokens, &mut check, |i, out| {
                out.extend_from_slice(parts.values[i]);
            });
            check == *payload
        });
        record_shapes.push(id);
        let Some(id) = id else {
            kept.push(payload);
            continue;
        };
        let shape = &shapes[id];
        let original = shape
            .original
            .map(|i| parts.values[i])
            .filter(|t| t.len() >= 2 && t[0] == b'"')
            .map(|t| &t[1..t.len() - 1]);
        let derived = match (shape.id, shape.original) {
            (Some(i), Some(o)) => id_derived(
                parts.values[i],
                parts.values[o],
                shape.address.map(|a| parts.values[a]),
                &mut last_key,
            )
            .is_some(),
            _ => false,
        };
        for (i, value) in parts.values.iter().enumerate() {
            let entries = &mut columns[shape.columns[i]].1;
            if derived
                && Some(i) == shape.id
                && let Some(key) = &last_key
            {
                entries.push(2);
                put_bytes(entries, key.as_bytes());
                continue;
            }
            let inner = (value.len() >= 2 + MIN_REFERENCE && value[0] == b'"')
                .then(|| &value[1..value.len() - 1]);
            let at = match (inner, original) {
                (Some(inner), Some(original)) if Some(i) != shape.original => {
                    memchr::memmem::find(original, inner).map(|at| (at, inner.len()))
                }
                _ => None,
            };
            match at {
                Some((at, len)) => {
                    entries.push(1);
                    put_varint(entries, at as u64);
                    put_varint(entries, len as u64);
                }
                None => {
                    entries.push(0);
                    put_bytes(entries, value);
                }
            }
        }
    }
    let mut out = vec![CODEC_COLUMNS];
    put_varint(&mut out, payloads.len() as u64);
    put_varint(&mut out, shapes.len() as u64);
    for shape in &shapes {
        put_varint(&mut out, shape.tokens.len() as u64);
        for token in &shape.tokens {
            match token {
                Token::Value(key) => {
                    out.push(0);
                    put_bytes(&mut out, key);
                }
                Token::Open(key) => {
                    out.push(1);
                    put_bytes(&mut out, key);
                }
                Token::Close => out.push(2),
            }
        }
    }
    for shape in &record_shapes {
        // Shape `shapes.len()` says "kept as it is".
        put_varint(&mut out, shape.unwrap_or(shapes.len()) as u64);
    }
    put_varint(&mut out, columns.len() as u64);
    for (name, _) in &columns {
        put_bytes(&mut out, name);
    }
    for (_, entries) in &columns {
        put_bytes(&mut out, entries);
    }
    for payload in kept {
        put_bytes(&mut out, payload);
    }
    out
}

/// The text of a JSON string value (`"` ... `"`) with its escapes undone.
fn unescaped(text: &[u8]) -> Option<Cow<'_, [u8]>> {
    let inner = text.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_slice::<String>(text)
        .ok()
        .map(|s| Cow::Owned(s.into_bytes()))
}

/// Whether the id `id` was derived from one of the known source keys with the record's
/// original: the sender's address's key (`address`), or a fixed one. All three are JSON value
/// texts. The key found is left in `last`, which is tried first: most records of a block
/// share one, so a record usually costs one hash and no allocation.
fn id_derived(
    id: &[u8],
    original: &[u8],
    address: Option<&[u8]>,
    last: &mut Option<String>,
) -> Option<()> {
    let hex = id.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if hex.len() != 32 {
        return None;
    }
    let raw = unescaped(original)?;
    let derives = |key: &str| EventId::derive(key, &raw).as_str().as_bytes() == hex;
    if last.as_deref().is_some_and(derives) {
        return Some(());
    }
    let tried = last.take();
    let from_address = address
        .and_then(|a| a.strip_prefix(b"\"")?.strip_suffix(b"\""))
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(source_key::of_address)
        .filter(|key| tried.as_deref() != Some(key.as_str()) && derives(key));
    *last = from_address.or_else(|| {
        source_key::FIXED
            .iter()
            .find(|key| tried.as_deref() != Some(**key) && derives(key))
            .map(|key| (*key).to_owned())
    });
    match last {
        Some(_) => Some(()),
        None => {
            *last = tried;
            None
        }
    }
}

/// Puts a payload together from its shape into `out`; `put(i, out)` writes value `i`.
fn rebuild(shape: &[Token], out: &mut Vec<u8>, mut put: impl FnMut(usize, &mut Vec<u8>)) {
    out.push(b'{');
    let mut first = true;
    let mut value = 0;
    for token in shape {
        match token {
            Token::Value(key) | Token::Open(key) => {
                if !first {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(key);
                out.extend_from_slice(b"\":");
                if let Token::Open(_) = token {
                    out.push(b'{');
                    first = true;
                    continue;
                }
                put(value, out);
                value += 1;
            }
            Token::Close => out.push(b'}'),
        }
        first = false;
    }
    out.push(b'}');
}

/// Decodes what [`encode`] wrote; `None` when the bytes do not hold together.
pub fn decode(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    decode_records(raw, None)
}

/// Decodes record `i` of `raw` alone: the records before it are passed over, not put together.
pub fn decode_one(raw: &[u8], i: usize) -> Option<Vec<u8>> {
    decode_records(raw, Some(i))?.pop()
}

/// Every record, or only record `only`.
fn decode_records(raw: &[u8], only: Option<usize>) -> Option<Vec<Vec<u8>>> {
    let mut r = Reader { bytes: raw, at: 0 };
    if r.byte()? != CODEC_COLUMNS {
        return None;
    }
    let count = r.len()?;
    let num_shapes = r.len()?;
    let mut shapes = Vec::with_capacity(num_shapes);
    for _ in 0..num_shapes {
        let n = r.len()?;
        let mut shape = Vec::with_capacity(n);
        for _ in 0..n {
            shape.push(match r.byte()? {
                0 => Token::Value(r.bytes()?.to_vec()),
                1 => Token::Open(r.bytes()?.to_vec()),
                2 => Token::Close,
                _ => return None,
            });
        }
        shapes.push(shape);
    }
    let mut record_shapes = Vec::with_capacity(count);
    for _ in 0..count {
        let s = r.len()?;
        (s <= shapes.len()).then_some(())?;
        record_shapes.push(s);
    }
    let num_columns = r.len()?;
    let mut names = Vec::with_capacity(num_columns);
    for _ in 0..num_columns {
        names.push(r.bytes()?.to_vec());
    }
    let mut columns = Vec::with_capacity(num_columns);
    let mut column_ids: HashMap<&[u8], usize> = HashMap::with_capacity(num_columns);
    for name in &names {
        column_ids.insert(name, columns.len());
        columns.push(Reader {
            bytes: r.bytes()?,
            at: 0,
        });
    }
    // Per shape: the column of each value, and which value is the original.
    let mut shape_columns = Vec::with_capacity(shapes.len());
    let mut shape_originals = Vec::with_capacity(shapes.len());
    for shape in &shapes {
        let names = value_names(shape);
        shape_originals.push(names.iter().position(|n| n == ORIGINAL));
        shape_columns.push(
            names
                .iter()
                .map(|n| column_ids.get(n.as_slice()).copied())
                .collect::<Option<Vec<usize>>>()?,
        );
    }
    if only.is_some_and(|i| i >= count) {
        return None;
    }
    let mut out = Vec::with_capacity(if only.is_some() { 1 } else { count });
    for (k, s) in record_shapes.into_iter().enumerate() {
        let wanted = only.is_none_or(|i| i == k);
        if s == shapes.len() {
            let kept = r.bytes()?;
            if wanted {
                out.push(kept.to_vec());
            }
            continue;
        }
        let mut entries = Vec::with_capacity(shape_columns[s].len());
        for &c in &shape_columns[s] {
            let column = &mut columns[c];
            entries.push(match column.byte()? {
                0 => Entry::Text(column.bytes()?),
                1 => Entry::At(
                    usize::try_from(column.varint()?).ok()?,
                    usize::try_from(column.varint()?).ok()?,
                ),
                2 => Entry::Derived(column.bytes()?),
                _ => return None,
            });
        }
        if !wanted {
            continue;
        }
        let original = match shape_originals[s].map(|i| &entries[i]) {
            Some(Entry::Text(text)) if text.len() >= 2 => &text[1..text.len() - 1],
            _ => &[][..],
        };
        // Every reference lies inside the original, or the block is not good.
        let mut derived = None;
        for entry in &entries {
            match entry {
                Entry::At(at, len) => {
                    original.get(*at..at.checked_add(*len)?)?;
                }
                Entry::Derived(key) => {
                    let text = match shape_originals[s].map(|i| &entries[i]) {
                        Some(Entry::Text(text)) => *text,
                        _ => return None,
                    };
                    let key = std::str::from_utf8(key).ok()?;
                    derived = Some(EventId::derive(key, &unescaped(text)?));
                }
                Entry::Text(_) => {}
            }
        }
        let mut payload = Vec::with_capacity(512);
        rebuild(&shapes[s], &mut payload, |i, out| match entries[i] {
            Entry::Text(text) => out.extend_from_slice(text),
            Entry::At(at, len) => {
                out.push(b'"');
                out.extend_from_slice(&original[at..at + len]);
                out.push(b'"');
            }
            Entry::Derived(_) => {
                out.push(b'"');
                if let Some(id) = &derived {
                    out.extend_from_slice(id.as_str().as_bytes());
                }
                out.push(b'"');
            }
        });
        out.push(payload);
        if only.is_some() {
            break;
        }
    }
    Some(out)
}

enum Entry<'a> {
    Text(&'a [u8]),
    At(usize, usize),
    /// The event id, derived from this source key and the original.
    Derived(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_come_back_byte_for_byte_and_repeats_of_the_original_are_references() {
        let event = r#"{"event.id":"91f717a9e54b0ebe","@timestamp":"2026-03-11T01:03:16.632Z","user.name":"u000447","user.roles":["nurse","a\"b"],"record.count":12,"labels":{"ehr@32473.user":"u000447","x":"\u3042\"q"},"tags":[],"message":"src=10.1.2.3 ws=WS3878 \"quoted\" 患者","event.original":"<174>1 2026 ehr-app04 [ehr user=\"u000447\"] src=10.1.2.3 ws=WS3878 \"quoted\" 患者"}"#
            .as_bytes();
        let odd: &[&[u8]] = &[
            b"not json",
            b"{}",
            b"{\"a\":{\"b\":{\"c\":1}}}",
            b"{\"a\" : 1}",
            b"[1,2]",
            b"{\"a\":1,}",
            b"",
            b"{\"k\":\"v\"}",
        ];
        let mut payloads: Vec<&[u8]> = vec![event, event];
        payloads.extend_from_slice(odd);
        let raw = encode(&payloads);
        let back = decode(&raw).unwrap();
        assert_eq!(back.len(), payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            assert_eq!(
                decode_one(&raw, i).as_deref(),
                Some(*payload),
                "record {i} alone"
            );
        }
        assert_eq!(decode_one(&raw, payloads.len()), None);
        for (a, b) in payloads.iter().zip(&back) {
            assert_eq!(*a, b.as_slice(), "{}", String::from_utf8_lossy(a));
        }
        // The message and the user are stored once, in the original.
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(text.matches("src=10.1.2.3 ws=WS3878").count(), 2, "{text}");
    }

    #[test]
    fn damaged_encodings_are_refused_not_trusted() {
        let payloads: Vec<&[u8]> = vec![br#"{"a":"xxxxxxxx","event.original":"yyxxxxxxxxyy"}"#];
        let raw = encode(&payloads);
        for cut in 0..raw.len() {
            let _ = decode(&raw[..cut]); // never panics
        }
        let mut bad = raw.clone();
        *bad.last_mut().unwrap() = 0xFF;
        let _ = decode(&bad);
        assert_eq!(decode(&raw).unwrap()[0], payloads[0]);
    }

    /// A payload as the log holds it: an event with this id, original and sender.
    fn event_json(id: &EventId, original: &str, address: Option<&str>) -> Vec<u8> {
        let mut event = crate::Event::new("x", "syslog", original.to_owned(), chrono::Utc::now());
        event.id = id.clone();
        event.message = original.to_owned();
        event.log_source = address.map(str::to_owned);
        serde_json::to_vec(&event).unwrap()
    }

    #[test]
    fn ids_derived_from_a_known_source_key_are_derived_again_not_stored() {
        let line = "<134>1 2026-11-24T10:00:00Z h ehr - - - \"quoted\" 患者 user=u1";
        let from_listener = event_json(
            &EventId::derive("syslog/10.0.0.5", line.as_bytes()),
            line,
            Some("tcp://[::ffff:10.0.0.5]:40112"),
        );
        let imported = event_json(
            &EventId::derive(source_key::EHR_CSV, b"2026-11-24,u1,P1"),
            "2026-11-24,u1,P1",
            None,
        );
        // A key nobody knows, an id that is not the original's (a cut event), an odd id.
        let other_key = event_json(&EventId::derive("gap/x", b"1,2"), "1,2", None);
        let cut = event_json(
            &EventId::derive("syslog/10.0.0.5", b"a longer line"),
            "a longer",
            Some("udp://10.0.0.5:514"),
        );
        let odd = event_json(&EventId::from_hex("Gap-1".into()), "x", None);
        let payloads: Vec<&[u8]> = vec![&from_listener, &imported, &other_key, &cut, &odd];
        let raw = encode(&payloads);
        for (i, payload) in payloads.iter().enumerate() {
            assert_eq!(decode_one(&raw, i).as_deref(), Some(*payload), "record {i}");
        }
        let text = String::from_utf8_lossy(&raw);
        for (payload, stored) in payloads.iter().zip([false, false, true, true, true]) {
            let event: crate::Event = serde_json::from_slice(payload).unwrap();
            assert_eq!(text.contains(event.id.as_str()), stored, "{}", event.id);
        }
        // A derived id is as safe as a stored one: a changed original gives another id, which
        // the chain (checked by every reader) does not accept.
        let forged = String::from_utf8_lossy(&raw).replace("user=u1", "user=u2");
        if let Some(back) = decode(forged.as_bytes()) {
            assert_ne!(back[0], from_listener);
        }
    }
}
