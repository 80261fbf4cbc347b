//! Files into events: format detection, decompression, streaming readers for every format,
//! and the importer that skips what the store already holds, counts what it filters, reports
//! what it rejects (with file and line) and records gaps in the sources' numbering.
//!
//! Everything streams: a 2 GB file is read a record at a time. The only whole-document reads
//! are a pretty-printed JSON document (FHIR Bundle) and a gzip-compressed EVTX file, both
//! bounded by [`MAX_DOCUMENT_BYTES`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use store::{Ack, Batch, Event, EventId, StoreHandle, source_key};
use tokio::sync::oneshot;

use crate::ehr::{self, EhrMapping, csv::CsvRows};
pub use crate::error::ImportError;
use crate::framing::{Frame, Framer, FramingError};
use crate::gaps::FileGaps;
use crate::metrics::IngestMetrics;
use crate::syslog::{Origin, SyslogParser};
use crate::windows::{self, NoiseFilter};
use crate::xml::XmlElements;

/// Largest single record (line, XML element, CSV row) read.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Largest whole document read into memory (pretty-printed JSON, gzip-compressed EVTX).
pub const MAX_DOCUMENT_BYTES: u64 = 256 << 20;
/// Events sent to the store at once.
const BATCH_EVENTS: usize = 1024;
/// Batches sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 8;
/// First rejects kept in the report (all go to the report file).
const FIRST_REJECTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    Evtx,
    WinXml,
    Winlogbeat,
    Nxlog,
    EhrCsv,
    EhrJsonl,
    Fhir,
    Atna,
    Syslog,
    /// JSON whose kind is decided per record (FHIR, Windows or EHR JSON lines).
    Json,
}

/// The format names `mimamori import --format` and `POST /api/v1/ingest?format=` both take.
pub const FORMAT_NAMES: &str = "auto, evtx, winxml, winlogbeat, nxlog, ehr-csv (csv), ehr-jsonl, \
     fhir, atna, syslog, json (jsonl, ndjson: each record's kind detected), xml (Windows events \
     or ATNA, detected)";

impl FromStr for Format {
    type Err = Unreadable;

    fn from_str(s: &str) -> Result<Format, Unreadable> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Format::Auto,
            "evtx" => Format::Evtx,
            "winxml" => Format::WinXml,
            "xml" => Format::Auto,
            "winlogbeat" => Format::Winlogbeat,
            "nxlog" => Format::Nxlog,
            "ehr-csv" | "csv" => Format::EhrCsv,
            "ehr-jsonl" => Format::EhrJsonl,
            "fhir" => Format::Fhir,
            "atna" => Format::Atna,
            "syslog" => Format::Syslog,
            "json" | "jsonl" | "ndjson" => Format::Json,
            other => {
                return Err(
                    format!("unknown format {other:?}; expected one of {FORMAT_NAMES}").into(),
                );
            }
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Evtx => "evtx",
            Format::WinXml => "winxml",
            Format::Winlogbeat => "winlogbeat",
            Format::Nxlog => "nxlog",
            Format::EhrCsv => "ehr-csv",
            Format::EhrJsonl => "ehr-jsonl",
            Format::Fhir => "fhir",
            Format::Atna => "atna",
            Format::Syslog => "syslog",
            Format::Json => "json",
        })
    }
}

/// Decides the format from the first bytes (already decompressed) and the file name.
pub fn detect(head: &[u8], name: &str, mapping: &EhrMapping) -> Result<Format, Unreadable> {
    if head.starts_with(b"ElfFile\0") {
        return Ok(Format::Evtx);
    }
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".evtx") {
        return Err("the file is named .evtx but does not start with the EVTX signature".into());
    }
    if text.is_empty() {
        return Ok(Format::Syslog);
    }
    if text.starts_with('<') && !text[1..].starts_with(|c: char| c.is_ascii_digit()) {
        if text.contains("<AuditMessage") {
            return Ok(Format::Atna);
        }
        if text.contains("<Event") {
            return Ok(Format::WinXml);
        }
        return Err(
            "XML that holds neither Windows <Event> nor ATNA <AuditMessage> elements".into(),
        );
    }
    if text.starts_with('{') || text.starts_with('[') {
        return Ok(Format::Json);
    }
    let first_line = text.lines().next().unwrap_or("");
    let header_like = |sep: char| {
        first_line.contains(sep)
            && first_line.split(sep).any(|h| {
                matches!(
                    mapping.field_of(h.trim_matches('"')),
                    Some(ehr::Field::Timestamp | ehr::Field::Date)
                )
            })
    };
    if name.ends_with(".csv") || name.ends_with(".tsv") || header_like(',') || header_like('\t') {
        return Ok(Format::EhrCsv);
    }
    Ok(Format::Syslog)
}

/// The parsers and settings every import uses.
pub struct Parsers {
    pub syslog: SyslogParser,
    pub ehr: EhrMapping,
    pub filter: NoiseFilter,
    /// Zone for Windows times written without one (NXLog `EventTime`).
    pub zone: Tz,
}

/// One thing read from an input.
#[allow(clippy::large_enum_variant)] // made and consumed one at a time; boxing buys nothing
pub enum Item {
    Record {
        event: Event,
        location: String,
        /// (source, number) where the source numbers its records.
        sequence: Option<(String, u64)>,
    },
    Reject {
        location: String,
        reason: String,
    },
    /// A record read and left out on purpose (a Bundle's Provenance): counted, not stored.
    Filtered {
        reason: &'static str,
    },
}

impl Item {
    /// A record read at `location` (with its number in its source's numbering), or why not.
    fn read(location: String, read: Result<(Event, Option<(String, u64)>), Unreadable>) -> Item {
        match read {
            Ok((event, sequence)) => Item::Record {
                event,
                location,
                sequence,
            },
            Err(reason) => Item::Reject {
                location,
                reason: reason.0,
            },
        }
    }
}

/// An EHR record's number in its export's numbering (a row id column), if it has one.
fn numbered(event: Event, source: &str) -> (Event, Option<(String, u64)>) {
    let sequence = event
        .labels
        .get("record.id")
        .and_then(|id| id.trim().parse::<u64>().ok())
        .map(|n| (source.to_owned(), n));
    (event, sequence)
}

/// What [`Parsers::read_file`] did.
pub struct FileRead {
    pub format: Format,
    /// Bytes on disk.
    pub len: u64,
    /// A failure part-way through (a cut-off gzip stream, an unreadable CSV header).
    pub result: Result<(), Unreadable>,
}

/// Counts bytes read through it, for progress.
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Lines of at most [`MAX_RECORD_BYTES`]; a longer one is skipped and reported.
struct Lines<R> {
    reader: R,
    line: u64,
    done: bool,
    /// The first line may be longer: a whole JSON document written on one line.
    first_limit: u64,
}

impl<R> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            line: 0,
            done: false,
            first_limit: MAX_RECORD_BYTES as u64,
        }
    }

    /// The first line may be up to `limit` bytes (a minified FHIR Bundle, a JSON array).
    fn with_first_line_up_to(mut self, limit: u64) -> Lines<R> {
        self.first_limit = limit;
        self
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = (u64, Result<Vec<u8>, String>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let max = if self.line == 0 {
            self.first_limit
        } else {
            MAX_RECORD_BYTES as u64
        };
        let limit = max + 1;
        match self.reader.by_ref().take(limit).read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                if buf.len() as u64 >= limit && !buf.ends_with(b"\n") {
                    // Skip the rest of the line.
                    loop {
                        let mut rest = Vec::new();
                        match self
                            .reader
                            .by_ref()
                            .take(1 << 16)
                            .read_until(b'\n', &mut rest)
                        {
                            Ok(0) | Err(_) => break,
                            Ok(_) if rest.ends_with(b"\n") => break,
                            Ok(_) => {}
                        }
                    }
                    return Some((
                        self.line,
                        Err(format!("line longer than {max} bytes; skipped")),
                    ));
                }
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                Some((self.line, Ok(buf)))
            }
            Err(e) => {
                // A cut-off gzip stream or a failing disk: report it and stop.
                self.line += 1;
                self.done = true;
                Some((self.line, Err(format!("input ends in error: {e}"))))
            }
        }
    }
}

impl Parsers {
    /// Reads a stream of `format` (not `Auto` or `Evtx`), handing every record to `sink`.
    /// `received` dates what carries no date; `label` names the input in events.
    pub fn read_stream(
        &self,
        format: Format,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        label: &str,
        sink: &mut dyn FnMut(Item),
    ) -> Result<(), Unreadable> {
        match format {
            Format::Syslog => {
                self.read_syslog(input, received, label, sink);
                Ok(())
            }
            Format::WinXml | Format::Atna => {
                self.read_xml(format, input, received, sink);
                Ok(())
            }
            Format::EhrCsv => self.read_csv(input, received, sink),
            Format::Json | Format::Fhir | Format::Winlogbeat | Format::Nxlog | Format::EhrJsonl => {
                self.read_json(format, input, received, sink)
            }
            Format::Auto | Format::Evtx => Err(format!("{format} is not a stream format").into()),
        }
    }

    fn read_syslog(
        &self,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        label: &str,
        sink: &mut dyn FnMut(Item),
    ) {
        let origin = Origin {
            transport: "file",
            peer_ip: None,
            address: Some(label.to_owned()),
        };
        if starts_octet_counted(input) {
            self.read_octet_counted(input, received, &origin, sink);
            return;
        }
        for (line, text) in Lines::new(input) {
            let location = format!("line {line}");
            match text {
                Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {}
                Ok(bytes) => {
                    let event = self.syslog.parse(&bytes, &origin, received);
                    let sequence = windows_sequence(&event);
                    sink(Item::Record {
                        event,
                        location,
                        sequence,
                    });
                }
                Err(reason) => sink(Item::Reject { location, reason }),
            }
        }
    }

    /// A capture of an RFC 6587 octet-counted TCP stream (`16 <1>2 ...17 <4>11 ...`).
    fn read_octet_counted(
        &self,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        origin: &Origin,
        sink: &mut dyn FnMut(Item),
    ) {
        let mut framer = Framer::new(MAX_RECORD_BYTES);
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 64 << 10];
        let mut n_frame = 0u64;
        let mut emit = |frames: &mut Vec<Frame>,
                        errors: &mut Vec<FramingError>,
                        sink: &mut dyn FnMut(Item)| {
            for error in errors.drain(..) {
                if error == FramingError::BadOctetCount {
                    sink(Item::Reject {
                        location: format!("message {}", n_frame + 1),
                        reason: "bad octet count; the rest is read as lines".into(),
                    });
                }
            }
            for frame in frames.drain(..) {
                n_frame += 1;
                let mut event = self.syslog.parse(&frame.bytes, origin, received);
                if frame.flaw.is_some() {
                    event.tags.push("truncated".into());
                }
                sink(Item::Record {
                    event,
                    location: format!("message {n_frame}"),
                    sequence: None,
                });
            }
        };
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    framer.push(&buf[..n], &mut frames, &mut errors);
                    emit(&mut frames, &mut errors, sink);
                }
                Err(e) => {
                    sink(Item::Reject {
                        location: "end".into(),
                        reason: format!("input ends in error: {e}"),
                    });
                    break;
                }
            }
        }
        framer.finish(&mut frames);
        emit(&mut frames, &mut errors, sink);
    }

    fn read_xml(
        &self,
        format: Format,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        sink: &mut dyn FnMut(Item),
    ) {
        let tag = if format == Format::Atna {
            "AuditMessage"
        } else {
            "Event"
        };
        for element in XmlElements::new(input, tag, MAX_RECORD_BYTES) {
            match element {
                Ok(element) => {
                    let location = format!("line {}", element.line);
                    let parsed = if format == Format::Atna {
                        ehr::atna::event(&element.text, source_key::ATNA, received, self.ehr.zone)
                            .map(|e| (e, None))
                    } else {
                        windows::xml::parse_event(&element.text).map(|record| {
                            let sequence = record.record_id.map(|n| (record.sequence_source(), n));
                            (
                                windows::normalize(
                                    &record,
                                    source_key::WINDOWS,
                                    element.text.clone(),
                                    received,
                                ),
                                sequence,
                            )
                        })
                    };
                    sink(Item::read(location, parsed));
                }
                Err((line, reason)) => sink(Item::Reject {
                    location: format!("line {line}"),
                    reason,
                }),
            }
        }
    }

    fn read_csv(
        &self,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        sink: &mut dyn FnMut(Item),
    ) -> Result<(), Unreadable> {
        let rows = CsvRows::new(input, &self.ehr, source_key::EHR_CSV, received)?;
        for row in rows {
            match row {
                Ok((line, event)) => {
                    sink(Item::read(
                        format!("line {line}"),
                        Ok(numbered(event, "ehr-csv")),
                    ));
                }
                Err((line, reason)) => sink(Item::read(format!("line {line}"), Err(reason))),
            }
        }
        Ok(())
    }

    fn read_json(
        &self,
        format: Format,
        input: &mut dyn BufRead,
        received: DateTime<Utc>,
        sink: &mut dyn FnMut(Item),
    ) -> Result<(), Unreadable> {
        // A whole document may be written on one line (a minified FHIR Bundle, an array):
        // that first line may be as long as a document.
        let head = input.fill_buf().map_err(|e| format!("read failed: {e}"))?;
        let head = String::from_utf8_lossy(&head[..head.len().min(4096)]);
        let document = head.trim_start().starts_with('[') || head.contains("\"resourceType\"");
        let first_limit = if document {
            MAX_DOCUMENT_BYTES
        } else {
            MAX_RECORD_BYTES as u64
        };
        let mut lines = Lines::new(input).with_first_line_up_to(first_limit);
        let mut first = true;
        while let Some((line, text)) = lines.next() {
            let location = format!("line {line}");
            let bytes = match text {
                Ok(b) if b.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(b) => b,
                Err(reason) => {
                    sink(Item::Reject { location, reason });
                    continue;
                }
            };
            let value = match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => v,
                Err(e) if first && e.is_eof() => {
                    // A pretty-printed document: read it whole (bounded).
                    let mut doc = bytes;
                    doc.push(b'\n');
                    for (_, rest) in lines.by_ref() {
                        let rest = rest?;
                        doc.extend_from_slice(&rest);
                        doc.push(b'\n');
                        if doc.len() as u64 > MAX_DOCUMENT_BYTES {
                            return Err(format!(
                                "a JSON document over {MAX_DOCUMENT_BYTES} bytes that is not one record per line; write it as JSON lines"
                            ).into());
                        }
                    }
                    let value: Value =
                        serde_json::from_slice(&doc).map_err(|e| format!("not valid JSON: {e}"))?;
                    let records: Vec<Value> = match value {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    for (i, v) in records.iter().enumerate() {
                        let location = if records.len() > 1 {
                            format!("item {}", i + 1)
                        } else {
                            "document".to_owned()
                        };
                        let original = serde_json::to_string(v).unwrap_or_default();
                        self.json_value(format, v, original, location, received, sink);
                    }
                    return Ok(());
                }
                Err(e) => {
                    sink(Item::Reject {
                        location,
                        reason: format!("not valid JSON: {e}"),
                    });
                    first = false;
                    continue;
                }
            };
            first = false;
            if let Value::Array(items) = &value {
                // A JSON array on one line (an HTTP body, an API dump): each item is a record.
                for (i, v) in items.iter().enumerate() {
                    let original = serde_json::to_string(v).unwrap_or_default();
                    self.json_value(
                        format,
                        v,
                        original,
                        format!("{location} item {}", i + 1),
                        received,
                        sink,
                    );
                }
                continue;
            }
            let original = String::from_utf8_lossy(&bytes).into_owned();
            self.json_value(format, &value, original, location, received, sink);
        }
        Ok(())
    }

    fn json_value(
        &self,
        format: Format,
        v: &Value,
        original: String,
        location: String,
        received: DateTime<Utc>,
        sink: &mut dyn FnMut(Item),
    ) {
        let kind = match format {
            Format::Json if v.get("resourceType").is_some() => Format::Fhir,
            Format::Json if windows::json::is_windows(v) => Format::Winlogbeat,
            Format::Json => Format::EhrJsonl,
            Format::Nxlog => Format::Winlogbeat,
            other => other,
        };
        match kind {
            Format::Fhir => match ehr::fhir::audit_events(v) {
                Ok((resources, others)) => {
                    for _ in 0..others {
                        sink(Item::Filtered {
                            reason: "fhir_resource_type",
                        });
                    }
                    let many = resources.len() > 1 || others > 0;
                    for (entry, r) in resources {
                        let location = if many {
                            format!("{location} entry {entry}")
                        } else {
                            location.clone()
                        };
                        let read = ehr::fhir::event(r, source_key::FHIR, received, self.ehr.zone);
                        sink(Item::read(location, read.map(|event| (event, None))));
                    }
                }
                Err(reason) => sink(Item::Reject { location, reason }),
            },
            Format::Winlogbeat => {
                let read = windows::json::parse(v, self.zone).map(|record| {
                    let sequence = record.record_id.map(|n| (record.sequence_source(), n));
                    let event =
                        windows::normalize(&record, source_key::WINDOWS, original, received);
                    (event, sequence)
                });
                sink(Item::read(location, read));
            }
            _ => {
                let read =
                    ehr::jsonl_event(&self.ehr, v, source_key::EHR_JSONL, original, received);
                sink(Item::read(
                    location,
                    read.map(|event| numbered(event, "ehr-jsonl")),
                ));
            }
        }
    }

    /// Reads a file (gzip-compressed or not) of `format` (or the detected one), handing every
    /// record to `sink`; `count` follows the bytes read from disk. Fails when the file cannot be
    /// opened or its format is unknown; a failure part-way is in the returned `result`.
    pub fn read_file(
        &self,
        path: &Path,
        format: Format,
        count: &Arc<AtomicU64>,
        sink: &mut dyn FnMut(Item),
    ) -> Result<FileRead, Unreadable> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| format!("{shown}: {e}"))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Lines without a date are dated by the file's time, and RFC 3164 years inferred from it.
        let mtime: DateTime<Utc> = file
            .metadata()
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now());
        let counting = Counting {
            inner: file,
            count: count.clone(),
        };
        let mut raw = BufReader::with_capacity(256 << 10, counting);
        let gz = raw
            .fill_buf()
            .map_err(|e| format!("{shown}: {e}"))?
            .starts_with(&[0x1f, 0x8b]);
        let mut input: Box<dyn BufRead> = if gz {
            Box::new(BufReader::with_capacity(
                256 << 10,
                flate2::bufread::MultiGzDecoder::new(raw),
            ))
        } else {
            Box::new(raw)
        };
        let head = input
            .fill_buf()
            .map_err(|e| format!("{shown}: {e}"))?
            .to_vec();
        let format = match format {
            Format::Auto => {
                detect(&head, &shown, &self.ehr).map_err(|e| format!("{shown}: {e}"))?
            }
            f => f,
        };
        let result = if format == Format::Evtx {
            if gz {
                let mut buf = Vec::new();
                (&mut input)
                    .take(MAX_DOCUMENT_BYTES + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| format!("{shown}: {e}"))?;
                if buf.len() as u64 > MAX_DOCUMENT_BYTES {
                    return Err(format!(
                        "{shown}: a gzip-compressed EVTX over {MAX_DOCUMENT_BYTES} bytes; decompress it first"
                    ).into());
                }
                let n = buf.len() as u64;
                self.read_evtx(std::io::Cursor::new(buf), n, mtime, sink)
            } else {
                drop(input);
                let file = File::open(path).map_err(|e| format!("{shown}: {e}"))?;
                self.read_evtx(file, len, mtime, sink)
            }
        } else {
            self.read_stream(format, &mut input, mtime, &shown, sink)
        };
        Ok(FileRead {
            format,
            len,
            result,
        })
    }

    /// Reads an EVTX file. A damaged chunk is reported and the others are read; a file cut
    /// short (the EVTX crate silently drops a partial last chunk) is reported too.
    pub fn read_evtx<R: Read + Seek>(
        &self,
        input: R,
        len: u64,
        received: DateTime<Utc>,
        sink: &mut dyn FnMut(Item),
    ) -> Result<(), Unreadable> {
        const HEADER: u64 = 4096;
        const CHUNK: u64 = 65_536;
        let mut parser = evtx::EvtxParser::from_read_seek(input)
            .map_err(|e| format!("not a readable EVTX file: {e}"))?
            .with_configuration(
                evtx::ParserSettings::new()
                    .num_threads(1)
                    .validate_checksums(true),
            );
        let declared = u64::from(parser.header().chunk_count);
        let whole_chunks = len.saturating_sub(HEADER) / CHUNK;
        let partial = len.saturating_sub(HEADER) % CHUNK;
        for record in parser.records() {
            match record {
                Ok(r) => {
                    let location = format!("record {}", r.event_record_id);
                    let read = windows::xml::parse_event(&r.data).map(|mut win| {
                        win.record_id.get_or_insert(r.event_record_id);
                        let sequence = win.record_id.map(|n| (win.sequence_source(), n));
                        (
                            windows::normalize(&win, source_key::WINDOWS, r.data, received),
                            sequence,
                        )
                    });
                    sink(Item::read(location, read));
                }
                Err(e) => sink(Item::Reject {
                    location: "chunk".to_owned(),
                    reason: format!("damaged EVTX data skipped: {e}"),
                }),
            }
        }
        if partial != 0 {
            sink(Item::Reject {
                location: format!("chunk {}", whole_chunks + 1),
                reason: format!(
                    "the file is cut off: its last chunk has {partial} of {CHUNK} bytes, and the records in it are lost"
                ),
            });
        } else if declared > whole_chunks {
            sink(Item::Reject {
                location: format!("chunk {}", whole_chunks + 1),
                reason: format!(
                    "the file is cut off: its header declares {declared} chunks but only {whole_chunks} are present"
                ),
            });
        }
        Ok(())
    }
}

/// Does the input start like `123 <PRI>`?
fn starts_octet_counted(input: &mut dyn BufRead) -> bool {
    let head = input.fill_buf().unwrap_or(&[]);
    let digits = head.iter().take_while(|b| b.is_ascii_digit()).count();
    (1..=9).contains(&digits)
        && head.get(digits) == Some(&b' ')
        && head.get(digits + 1) == Some(&b'<')
}

fn windows_sequence(event: &Event) -> Option<(String, u64)> {
    let n = event.labels.get("winlog.record_id")?.parse().ok()?;
    let channel = event.labels.get("winlog.channel")?;
    Some((
        format!("{}/{channel}", event.host.as_deref().unwrap_or("-")),
        n,
    ))
}

/// Passes at most `max` lines to `inner` and counts the rest, so a file of a million bad rows
/// cannot fill memory or a disk with its reject report; [`LineCap::finish`] says how many were
/// left out.
pub struct LineCap<W> {
    inner: W,
    max: u64,
    lines: u64,
    dropped: u64,
}

impl<W: std::io::Write> LineCap<W> {
    pub fn new(inner: W, max: u64) -> LineCap<W> {
        LineCap {
            inner,
            max,
            lines: 0,
            dropped: 0,
        }
    }

    /// Lines written to `inner` so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Writes a last line naming how many were left out (if any) and gives `inner` back.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.dropped > 0 {
            writeln!(
                self.inner,
                "... and {} more not listed (only the first {} are)",
                self.dropped, self.max
            )?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for LineCap<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut end = 0;
        for (i, &b) in buf.iter().enumerate() {
            if self.lines >= self.max {
                break;
            }
            end = i + 1;
            if b == b'\n' {
                self.lines += 1;
            }
        }
        self.inner.write_all(&buf[..end])?;
        self.dropped += buf[end..].iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Longest reason kept per reject (a reason may quote the field it could not read).
const MAX_REASON_BYTES: usize = 512;

/// A rejected record, where it was and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub file: String,
    pub location: String,
    pub reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.location, self.reason)
    }
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub files: u64,
    pub bytes: u64,
    /// Records read (events made, filtered, duplicates and rejects).
    pub read: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub filtered: BTreeMap<String, u64>,
    pub rejected: u64,
    pub first_rejects: Vec<Reject>,
    /// Gaps found in the sources' numbering, and records missing in them.
    pub gaps: u64,
    pub missing_records: u64,
    /// Formats detected, per file (`json` files by the kinds of records in them:
    /// `fhir`, `winlogbeat`, `ehr-jsonl`).
    pub formats: Vec<(String, String)>,
    /// Kept events tagged as read in part (`encoding_mismatch`, `csv_ragged_row`, ...).
    pub warnings: BTreeMap<String, u64>,
    /// Accepted (durable in the log) but not yet searchable: the index is behind or failing
    /// (a full disk); it catches up from the log by itself.
    pub not_searchable: u64,
}

impl Report {
    pub fn merge(&mut self, other: Report) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.read += other.read;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        for (k, v) in other.filtered {
            *self.filtered.entry(k).or_default() += v;
        }
        self.rejected += other.rejected;
        self.not_searchable += other.not_searchable;
        for r in other.first_rejects {
            if self.first_rejects.len() < FIRST_REJECTS {
                self.first_rejects.push(r);
            }
        }
        self.gaps += other.gaps;
        self.missing_records += other.missing_records;
        self.formats.extend(other.formats);
        for (k, v) in other.warnings {
            *self.warnings.entry(k).or_default() += v;
        }
    }
}

/// Tags that mean "kept, but read in part"; counted in the report.
const WARNING_TAGS: &[&str] = &[
    "encoding_mismatch",
    crate::syslog::INVALID_UTF8_TAG,
    "csv_ragged_row",
    "syslog_parse_failure",
    "snare_parse_failure",
    "atna_parse_failure",
    "labels_truncated",
];

/// Shared counters a progress display reads.
#[derive(Default)]
pub struct Progress {
    pub bytes: AtomicU64,
    pub events: AtomicU64,
}

/// Imports files and bodies into the store, several at once (a slow one delays no other).
pub struct Importer {
    pub parsers: Arc<Parsers>,
    store: StoreHandle,
    metrics: IngestMetrics,
    /// Events kept by a running import and not yet searchable, with the import that keeps
    /// them: another import skips them as duplicates (the index does not hold them yet).
    pending: Mutex<HashMap<EventId, u64>>,
    next_session: AtomicU64,
}

/// Where all rejects are written, one per line.
pub type RejectLog<'a> = Option<&'a mut dyn std::io::Write>;

/// Shortens a reject log's lifetime to a session's.
fn reborrow<'s>(log: &'s mut RejectLog<'_>) -> RejectLog<'s> {
    match log {
        Some(w) => Some(&mut **w),
        None => None,
    }
}

impl Importer {
    pub fn new(parsers: Arc<Parsers>, store: StoreHandle, metrics: IngestMetrics) -> Importer {
        Importer {
            parsers,
            store,
            metrics,
            pending: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        }
    }

    /// Waits (bounded) until the index holds everything the log holds, so that records stored
    /// by an import that died before they were indexed (kill -9, a crash) count as duplicates
    /// when the file is sent again, instead of being stored twice.
    fn index_caught_up(&self) {
        let durable = self.store.durable_seq();
        if self.store.index().committed() < durable
            && !self.store.flush(durable, Duration::from_secs(300))
        {
            tracing::warn!(
                durable,
                indexed = self.store.index().committed(),
                "the index is behind the log; records it has not taken yet are not recognised as duplicates"
            );
        }
    }

    /// Files under `path` (itself when it is a file), sorted; hidden files are skipped.
    pub fn expand(path: &Path) -> Result<Vec<PathBuf>, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_file() {
            return Ok(vec![path.to_owned()]);
        }
        let mut files = Vec::new();
        let mut dirs = vec![path.to_owned()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let p = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                match entry.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(p),
                    Ok(t) if t.is_file() => files.push(p),
                    _ => {}
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// Imports one file. Fails only when the file cannot be read at all or the store refuses.
    pub fn import_file(
        &self,
        path: &Path,
        format: Format,
        progress: &Progress,
        mut rejects: RejectLog<'_>,
    ) -> Result<Report, ImportError> {
        self.index_caught_up();
        let shown = path.display().to_string();
        let count = Arc::new(AtomicU64::new(0));
        let base = progress.bytes.load(Ordering::Relaxed);
        let mut session = Session::new(self, &shown, progress, reborrow(&mut rejects));
        let mut tick = 0u32;
        let read = self
            .parsers
            .read_file(path, format, &count, &mut |item| {
                session.take(item);
                tick += 1;
                if tick.is_multiple_of(256) {
                    progress
                        .bytes
                        .store(base + count.load(Ordering::Relaxed), Ordering::Relaxed);
                }
            })
            .map_err(|e| ImportError::Input(e.0))?;
        let detected = session.detected(read.format);
        session.report.formats.push((shown, detected));
        session.report.files = 1;
        if let Err(reason) = read.result {
            session.reject("file".to_owned(), reason.to_string());
        }
        progress.bytes.store(base + read.len, Ordering::Relaxed);
        let mut report = session.finish()?;
        report.bytes = read.len;
        Ok(report)
    }

    /// Imports events already read (an HTTP body): same dedup, filtering and durability.
    pub fn import_stream(
        &self,
        format: Format,
        input: &mut dyn BufRead,
        label: &str,
        mut rejects: RejectLog<'_>,
    ) -> Result<Report, ImportError> {
        self.index_caught_up();
        let progress = Progress::default();
        let mut session = Session::new(self, label, &progress, reborrow(&mut rejects));
        let now = Utc::now();
        let format = match format {
            Format::Auto => {
                let head = input
                    .fill_buf()
                    .map_err(|e| ImportError::Input(e.to_string()))?
                    .to_vec();
                detect(&head, label, &self.parsers.ehr).map_err(|e| ImportError::Input(e.0))?
            }
            f => f,
        };
        let result = if format == Format::Evtx {
            let mut buf = Vec::new();
            input
                .read_to_end(&mut buf)
                .map_err(|e| ImportError::Input(e.to_string()))?;
            let n = buf.len() as u64;
            self.parsers
                .read_evtx(std::io::Cursor::new(buf), n, now, &mut |item| {
                    session.take(item)
                })
        } else {
            self.parsers
                .read_stream(format, input, now, label, &mut |item| session.take(item))
        };
        if let Err(reason) = result {
            session.reject("body".to_owned(), reason.to_string());
        }
        let detected = session.detected(format);
        session.report.formats.push((label.to_owned(), detected));
        session.finish()
    }
}

/// One file's import in progress.
struct Session<'a> {
    importer: &'a Importer,
    /// This import's mark in [`Importer::pending`].
    id: u64,
    file: String,
    progress: &'a Progress,
    rejects: RejectLog<'a>,
    report: Report,
    batch: Vec<Event>,
    in_flight: VecDeque<(u64, Vec<EventId>, oneshot::Receiver<Ack>)>,
    /// Stored batches not yet known to be searchable: (last log record, their ids).
    stored: VecDeque<(u64, Vec<EventId>)>,
    /// Kinds of records read, by dataset family (what a `json` file turned out to hold).
    kinds: std::collections::BTreeSet<&'static str>,
    last_seq: u64,
    gaps: FileGaps,
    latest: Option<DateTime<Utc>>,
    failed: Option<String>,
    now: DateTime<Utc>,
}

impl<'a> Session<'a> {
    fn new(
        importer: &'a Importer,
        file: &str,
        progress: &'a Progress,
        rejects: RejectLog<'a>,
    ) -> Session<'a> {
        Session {
            importer,
            id: importer.next_session.fetch_add(1, Ordering::Relaxed),
            file: file.to_owned(),
            progress,
            rejects,
            report: Report::default(),
            batch: Vec::with_capacity(BATCH_EVENTS),
            in_flight: VecDeque::new(),
            stored: VecDeque::new(),
            kinds: std::collections::BTreeSet::new(),
            last_seq: 0,
            gaps: FileGaps::default(),
            latest: None,
            failed: None,
            now: Utc::now(),
        }
    }

    fn reject(&mut self, location: String, mut reason: String) {
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push_str("...");
        }
        self.report.read += 1;
        self.report.rejected += 1;
        self.importer
            .metrics
            .rejected
            .with_label_values(&["import", "unreadable"])
            .inc();
        let reject = Reject {
            file: self.file.clone(),
            location,
            reason,
        };
        if let Some(log) = self.rejects.as_mut() {
            // One write per line, so a line cap never splits one.
            let _ = log.write_all(format!("{reject}\n").as_bytes());
        }
        if self.report.first_rejects.len() < FIRST_REJECTS {
            self.report.first_rejects.push(reject);
        }
    }

    fn take(&mut self, item: Item) {
        if self.failed.is_some() {
            return;
        }
        match item {
            Item::Reject { location, reason } => self.reject(location, reason),
            Item::Filtered { reason } => {
                self.report.read += 1;
                self.count_filtered(reason);
            }
            Item::Record {
                mut event,
                sequence,
                ..
            } => {
                self.report.read += 1;
                self.kinds.insert(match event.dataset.as_str() {
                    "ehr.fhir" => "fhir",
                    "ehr.audit" => "ehr-jsonl",
                    d if d.starts_with("windows") => "winlogbeat",
                    _ => "other",
                });
                // Parsers date undated lines by the file's time; arrival is now.
                event.ingested = self.now;
                if let Some((source, n)) = &sequence {
                    self.gaps.see(source, *n, event.host.as_deref());
                }
                self.latest = Some(
                    self.latest
                        .map_or(event.timestamp, |t| t.max(event.timestamp)),
                );
                if let Some(reason) = self.importer.parsers.filter.reason(&event) {
                    self.count_filtered(reason);
                    return;
                }
                self.keep(event);
            }
        }
    }

    /// The format to report: a `json` file is named by what its records were.
    fn detected(&self, format: Format) -> String {
        if format == Format::Json && !self.kinds.is_empty() {
            self.kinds.iter().copied().collect::<Vec<_>>().join("+")
        } else {
            format.to_string()
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'a, HashMap<EventId, u64>> {
        self.importer
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Gives up this import's claim on `ids` (stored and searchable now, or not stored).
    fn release(&self, ids: &[EventId]) {
        let mut pending = self.pending();
        for id in ids {
            if pending.get(id) == Some(&self.id) {
                pending.remove(id);
            }
        }
    }

    /// Releases the stored batches the index now holds.
    fn release_searchable(&mut self) {
        let committed = self.importer.store.index().committed();
        while let Some((last, _)) = self.stored.front()
            && *last <= committed
        {
            let (_, ids) = self.stored.pop_front().expect("front exists");
            self.release(&ids);
        }
    }

    fn count_filtered(&mut self, reason: &'static str) {
        *self.report.filtered.entry(reason.to_owned()).or_default() += 1;
        self.importer
            .metrics
            .filtered
            .with_label_values(&[reason])
            .inc();
    }

    fn keep(&mut self, event: Event) {
        let duplicate = self.importer.store.index().contains_id(event.id.as_str()) || {
            // Kept by another import still running: theirs. Twice in this one: both kept, as
            // two identical lines in one file are two events.
            let mut pending = self.pending();
            let owner = *pending.entry(event.id.clone()).or_insert(self.id);
            owner != self.id
        };
        if duplicate {
            self.report.duplicates += 1;
            self.importer.metrics.duplicates.inc();
            return;
        }
        for tag in &event.tags {
            if WARNING_TAGS.contains(&tag.as_str()) {
                *self.report.warnings.entry(tag.clone()).or_default() += 1;
            }
        }
        self.importer
            .metrics
            .received
            .with_label_values(&["import"])
            .inc();
        self.batch.push(event);
        self.progress.events.fetch_add(1, Ordering::Relaxed);
        if self.batch.len() >= BATCH_EVENTS {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Some(reason) = self.importer.store.refusing() {
            self.failed = Some(format!("the store refuses new data for now: {reason}"));
            return;
        }
        let events = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_EVENTS));
        let n = events.len() as u64;
        let ids: Vec<EventId> = events.iter().map(|e| e.id.clone()).collect();
        let (batch, ack) = Batch::with_ack(events);
        if self.importer.store.sender().blocking_send(batch).is_err() {
            self.failed = Some("the store has shut down".into());
            self.release(&ids);
            return;
        }
        self.in_flight.push_back((n, ids, ack));
        while self.in_flight.len() > IN_FLIGHT {
            self.settle_one();
        }
    }

    fn settle_one(&mut self) {
        let Some((n, ids, ack)) = self.in_flight.pop_front() else {
            return;
        };
        let mut ack = ack;
        // While the store refuses data (a full disk), a batch queued before it started may wait
        // long: the sender is told at once (it may still be stored; a retry skips it then).
        let answer = loop {
            match ack.try_recv() {
                Ok(answer) => break Some(answer),
                Err(oneshot::error::TryRecvError::Closed) => break None,
                Err(oneshot::error::TryRecvError::Empty) => {
                    if let Some(reason) = self.importer.store.refusing() {
                        self.failed = Some(format!("the store refuses new data for now: {reason}"));
                        self.release(&ids);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        match answer {
            Some(Ok(range)) => {
                self.report.accepted += n;
                self.last_seq = self.last_seq.max(*range.end());
                self.stored.push_back((*range.end(), ids));
                self.release_searchable();
            }
            Some(Err(e)) => {
                self.failed = Some(format!("the store refused the events: {e}"));
                self.release(&ids);
            }
            None => {
                self.failed = Some("the store has shut down".into());
                self.release(&ids);
            }
        }
    }

    /// Sends what is left, records gaps, and waits until it is all searchable.
    fn finish(mut self) -> Result<Report, ImportError> {
        let gaps = std::mem::take(&mut self.gaps).finish();
        let at = self.latest.unwrap_or_else(Utc::now);
        let mut gap_events = 0;
        for gap in gaps {
            self.report.gaps += 1;
            self.report.missing_records += gap.missing();
            let metrics = &self.importer.metrics;
            let source = metrics.gap_sources.label(&gap.source);
            metrics.sequence_gaps.with_label_values(&[source]).inc();
            metrics
                .missing_records
                .with_label_values(&[source])
                .inc_by(gap.missing());
            let event = gap.event(at, self.now, &format!("import of {}", self.file));
            // Reported again on a re-import, stored once.
            if !self.importer.store.index().contains_id(event.id.as_str()) {
                gap_events += 1;
                self.batch.push(event);
            }
        }
        self.send();
        while !self.in_flight.is_empty() {
            self.settle_one();
        }
        if let Some(failure) = self.failed.take() {
            return Err(ImportError::Store(failure));
        }
        // Gap events are stored like records but are not records of the input.
        self.report.accepted = self.report.accepted.saturating_sub(gap_events);
        if self.last_seq > 0
            && !self
                .importer
                .store
                .flush(self.last_seq, Duration::from_secs(300))
        {
            // Durable, so accepted; the index takes them from the log once it can.
            self.report.not_searchable = self.report.accepted;
        }
        Ok(std::mem::take(&mut self.report))
    }
}

use crate::error::Unreadable;
use std::io::Write as _;

#[cfg(test)]
mod export_tests;
#[cfg(test)]
mod tests;

impl Drop for Session<'_> {
    /// Whatever way the import ends, it claims nothing any more (a batch stored but not yet
    /// searchable is found in the index from then on, or soon).
    fn drop(&mut self) {
        let mut ids: Vec<EventId> = self.batch.iter().map(|e| e.id.clone()).collect();
        ids.extend(self.in_flight.drain(..).flat_map(|(_, ids, _)| ids));
        ids.extend(self.stored.drain(..).flat_map(|(_, ids)| ids));
        self.release(&ids);
    }
}
