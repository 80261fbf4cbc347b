//! CSV exports with a header row. The encoding is UTF-8 (a BOM is skipped) or Shift_JIS/CP932,
//! decided from the first 64 KiB; a row in the other encoding is still read (and tagged
//! `encoding_mismatch`). Rows with too few or too many fields are kept and tagged
//! `csv_ragged_row`; a row without a readable time is rejected with its line number. A line
//! longer than [`MAX_RECORD_BYTES`] is rejected and skipped, and reading goes on after it.

use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, Utc};
use encoding_rs::{SHIFT_JIS, UTF_8};
use store::Event;

use super::{EhrMapping, Field};
use crate::error::Unreadable;
use crate::import::MAX_RECORD_BYTES;

/// Unmapped columns kept as labels, at most.
const MAX_EXTRA_COLUMNS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    ShiftJis,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::ShiftJis => "Shift_JIS",
        }
    }

    fn decode(self, bytes: &[u8]) -> Option<String> {
        let encoding = match self {
            Encoding::Utf8 => UTF_8,
            Encoding::ShiftJis => SHIFT_JIS,
        };
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(|s| s.into_owned())
    }

    fn other(self) -> Encoding {
        match self {
            Encoding::Utf8 => Encoding::ShiftJis,
            Encoding::ShiftJis => Encoding::Utf8,
        }
    }
}

/// The encoding most lines of the sample are in: each line with non-ASCII bytes votes UTF-8
/// when it is valid UTF-8, else Shift_JIS (a line cut at the end of the sample does not vote).
pub fn detect_encoding(sample: &[u8]) -> Encoding {
    let (mut utf8, mut sjis) = (0, 0);
    let mut lines = sample.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.is_ascii() || (lines.peek().is_none() && !sample.ends_with(b"\n")) {
            continue;
        }
        if std::str::from_utf8(line).is_ok() {
            utf8 += 1;
        } else {
            sjis += 1;
        }
    }
    if sjis > utf8 {
        Encoding::ShiftJis
    } else {
        Encoding::Utf8
    }
}

/// A row that became an event, or why it did not.
pub type Row = Result<(u64, Event), (u64, Unreadable)>;

/// Rows of one CSV export.
pub struct CsvRows<'m, R: Read> {
    /// None only while it is rebuilt after an over-long line.
    reader: Option<csv::Reader<BufReader<LineLimit<R>>>>,
    delimiter: u8,
    /// Lines before the current reader's first one (it restarts counting after a skip).
    line_base: u64,
    mapping: &'m EhrMapping,
    columns: Vec<Option<Field>>,
    headers: Vec<String>,
    pub encoding: Encoding,
    source_key: String,
    ingested: DateTime<Utc>,
    record: csv::ByteRecord,
    done: bool,
}

impl<'m, R: Read> CsvRows<'m, R> {
    /// Reads the header row. Fails (naming what is missing) when there is no time column.
    pub fn new(
        input: R,
        mapping: &'m EhrMapping,
        source_key: &str,
        ingested: DateTime<Utc>,
    ) -> Result<CsvRows<'m, R>, String> {
        let mut input = BufReader::with_capacity(64 << 10, LineLimit::new(input));
        let sample = input.fill_buf().map_err(|e| format!("read failed: {e}"))?;
        let bom = sample.starts_with(b"\xEF\xBB\xBF");
        let encoding = if bom {
            Encoding::Utf8
        } else {
            detect_encoding(sample)
        };
        if bom {
            input.consume(3);
        }
        let delimiter = {
            let sample = input.fill_buf().unwrap_or(&[]);
            let first_line = sample.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let count = |d: u8| first_line.iter().filter(|&&b| b == d).count();
            if count(b'\t') > count(b',') {
                b'\t'
            } else {
                b','
            }
        };
        let mut reader = reader_for(input, delimiter, true);
        let header = reader
            .byte_headers()
            .map_err(|e| format!("cannot read the header row: {e}"))?
            .clone();
        let headers: Vec<String> = header
            .iter()
            .map(|h| {
                encoding
                    .decode(h)
                    .or_else(|| encoding.other().decode(h))
                    .unwrap_or_else(|| String::from_utf8_lossy(h).into_owned())
                    .trim()
                    .to_owned()
            })
            .collect();
        let columns: Vec<Option<Field>> = headers.iter().map(|h| mapping.field_of(h)).collect();
        if ![Field::Timestamp, Field::Date, Field::Time]
            .iter()
            .any(|f| columns.contains(&Some(*f)))
        {
            return Err(format!(
                "the header row ({}) has no time column; expected one named {} (or add the name under [ehr.columns] timestamp)",
                headers.join(","),
                mapping.names_of(Field::Timestamp)
            ));
        }
        Ok(CsvRows {
            reader: Some(reader),
            delimiter,
            line_base: 0,
            mapping,
            columns,
            headers,
            encoding,
            source_key: source_key.to_owned(),
            ingested,
            record: csv::ByteRecord::new(),
            done: false,
        })
    }

    fn row(&self, line: u64) -> Result<Event, Unreadable> {
        let record = &self.record;
        let mut tags = Vec::new();
        let mut text = Vec::with_capacity(record.len());
        for field in record.iter() {
            let decoded = match self.encoding.decode(field) {
                Some(s) => s,
                None => match self.encoding.other().decode(field) {
                    Some(s) => {
                        if !tags.contains(&"encoding_mismatch") {
                            tags.push("encoding_mismatch");
                        }
                        s
                    }
                    None => {
                        return Err(format!(
                            "a field is neither {} nor {}",
                            self.encoding.name(),
                            self.encoding.other().name()
                        )
                        .into());
                    }
                },
            };
            text.push(decoded);
        }
        if record.len() != self.headers.len() {
            tags.push("csv_ragged_row");
        }
        let get = |f: Field| {
            self.columns
                .iter()
                .position(|c| *c == Some(f))
                .and_then(|i| text.get(i))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let original = text.join(",");
        let mut event = self
            .mapping
            .event(&get, &self.source_key, "ehr.audit", original, self.ingested)
            .map_err(|e| {
                if tags.contains(&"csv_ragged_row") {
                    format!(
                        "{e} (the row has {} fields, the header {})",
                        record.len(),
                        self.headers.len()
                    )
                } else {
                    e.to_string()
                }
            })?;
        let mut extra = 0;
        for (i, value) in text.iter().enumerate() {
            if self.columns.get(i).copied().flatten().is_some() || value.trim().is_empty() {
                continue;
            }
            extra += 1;
            if extra > MAX_EXTRA_COLUMNS {
                break;
            }
            let name = self
                .headers
                .get(i)
                .map_or_else(|| format!("column{}", i + 1), Clone::clone);
            event
                .labels
                .insert(format!("csv.{name}"), value.trim().to_owned());
        }
        event
            .labels
            .insert("log.file.line".into(), line.to_string());
        // How the row was read comes first, before what its values lacked.
        event.tags.splice(0..0, tags.into_iter().map(str::to_owned));
        Ok(event)
    }
}

impl<R: Read> Iterator for CsvRows<'_, R> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        if self.done {
            return None;
        }
        loop {
            let reader = self.reader.as_mut()?;
            let mut record = std::mem::take(&mut self.record);
            let read = reader.read_byte_record(&mut record);
            self.record = record;
            let line = self.line_base + self.record.position().map_or(0, |p| p.line());
            match read {
                Ok(false) => return None,
                Ok(true) => {
                    if self
                        .record
                        .iter()
                        .all(|f| f.iter().all(u8::is_ascii_whitespace))
                    {
                        continue; // blank line
                    }
                    return Some(self.row(line).map(|e| (line, e)).map_err(|e| (line, e)));
                }
                Err(e) => {
                    let line = e.position().map_or(line, |p| self.line_base + p.line());
                    if let Some(reader) = self.reader.take_if(|r| r.get_ref().get_ref().overlong) {
                        // Nothing of the long line is buffered (the limit fails the read that
                        // would have filled the buffer); go on after it with a fresh parser.
                        let line = self.line_base + reader.position().line();
                        let mut input = reader.into_inner();
                        input.get_mut().overlong = false;
                        self.reader = Some(reader_for(input, self.delimiter, false));
                        self.line_base = line;
                        return Some(Err((
                            line,
                            format!("a line longer than {MAX_RECORD_BYTES} bytes; skipped").into(),
                        )));
                    }
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        // The input itself failed (cut-off gzip, over-long line): stop here.
                        self.done = true;
                        return Some(Err((line, format!("input ends in error: {e}").into())));
                    }
                    return Some(Err((line, format!("unreadable CSV: {e}").into())));
                }
            }
        }
    }
}

fn reader_for<R: Read>(input: R, delimiter: u8, headers: bool) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(headers)
        .from_reader(input)
}

/// Fails a read once a line (between newlines) grows past [`MAX_RECORD_BYTES`], so a CSV with
/// no line breaks cannot fill memory; the next read skips the rest of that line.
pub struct LineLimit<R> {
    inner: R,
    run: usize,
    /// The last read failed on an over-long line; the rest of it is skipped.
    overlong: bool,
    skipping: bool,
}

impl<R> LineLimit<R> {
    pub fn new(inner: R) -> LineLimit<R> {
        LineLimit {
            inner,
            run: 0,
            overlong: false,
            skipping: false,
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = self.inner.read(buf)?;
        while self.skipping && n > 0 {
            if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
                buf.copy_within(end + 1..n, 0);
                n -= end + 1;
                self.skipping = false;
                self.run = 0;
                if n == 0 {
                    n = self.inner.read(buf)?;
                }
            } else {
                n = self.inner.read(buf)?;
            }
        }
        if self.skipping {
            return Ok(0);
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                self.run = 0;
            } else {
                self.run += 1;
            }
        }
        if self.run > MAX_RECORD_BYTES {
            self.overlong = true;
            self.skipping = true;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_RECORD_BYTES} bytes"),
            ));
        }
        Ok(n)
    }
}
