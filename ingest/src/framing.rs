//! Splits a TCP byte stream into syslog messages: LF framing or RFC 6587 octet counting,
//! chosen per connection from its first byte (a digit means octet counting). Memory per
//! connection is bounded by `max_message_bytes`: longer messages are cut and the rest skipped.

/// One message out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub flaw: Option<FrameFlaw>,
}

/// Why a frame is not the whole message the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFlaw {
    /// Longer than `max_message_bytes`; the rest was discarded.
    TooLong,
    /// The connection ended in the middle of the frame.
    CutOff,
}

/// Something in the stream that is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// An empty line.
    Empty,
    /// An octet count that is not a number; the connection falls back to LF framing.
    BadOctetCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Lines,
    /// Reading the length prefix.
    Count,
    /// Reading a body of `remaining` more bytes.
    Body {
        remaining: usize,
        truncated: bool,
    },
}

pub struct Framer {
    mode: Mode,
    buf: Vec<u8>,
    max: usize,
    /// In LF mode, dropping the tail of an overlong line up to its LF.
    skipping_line: bool,
}

/// Digits allowed in an octet count (the count itself is capped by the 10-digit u64 parse).
const MAX_COUNT_DIGITS: usize = 10;

impl Framer {
    pub fn new(max_message_bytes: usize) -> Framer {
        Framer {
            mode: Mode::Undecided,
            buf: Vec::new(),
            max: max_message_bytes.max(1),
            skipping_line: false,
        }
    }

    pub fn is_octet_counting(&self) -> bool {
        matches!(self.mode, Mode::Count | Mode::Body { .. })
    }

    /// Feeds bytes; complete frames go to `frames`, problems to `errors`.
    pub fn push(
        &mut self,
        mut data: &[u8],
        frames: &mut Vec<Frame>,
        errors: &mut Vec<FramingError>,
    ) {
        while !data.is_empty() {
            match self.mode {
                Mode::Undecided => {
                    let Some(&first) = data.iter().find(|b| !b.is_ascii_whitespace()) else {
                        return;
                    };
                    self.mode = if first.is_ascii_digit() {
                        Mode::Count
                    } else {
                        Mode::Lines
                    };
                }
                Mode::Lines => {
                    data = self.push_lines(data, frames, errors);
                }
                Mode::Count => {
                    // Whitespace between frames (some senders add LF) is ignored.
                    if self.buf.is_empty() {
                        let start = data
                            .iter()
                            .position(|b| !b.is_ascii_whitespace())
                            .unwrap_or(data.len());
                        data = &data[start..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    match data.iter().position(|&b| b == b' ') {
                        Some(space) if self.buf.len() + space <= MAX_COUNT_DIGITS => {
                            self.buf.extend_from_slice(&data[..space]);
                            data = &data[space + 1..];
                            let count = std::str::from_utf8(&self.buf)
                                .ok()
                                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                                .and_then(|s| s.parse::<usize>().ok());
                            self.buf.clear();
                            match count {
                                Some(0) => {}
                                Some(n) => {
                                    self.mode = Mode::Body {
                                        remaining: n,
                                        truncated: n > self.max,
                                    };
                                    self.buf.reserve(n.min(self.max));
                                }
                                None => self.fall_back_to_lines(errors),
                            }
                        }
                        Some(_) => self.fall_back_to_lines(errors),
                        None if self.buf.len() + data.len() <= MAX_COUNT_DIGITS => {
                            self.buf.extend_from_slice(data);
                            return;
                        }
                        None => self.fall_back_to_lines(errors),
                    }
                }
                Mode::Body {
                    remaining,
                    truncated,
                } => {
                    let take = remaining.min(data.len());
                    let room = self.max.saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&data[..take.min(room)]);
                    data = &data[take..];
                    let remaining = remaining - take;
                    if remaining == 0 {
                        frames.push(Frame {
                            bytes: std::mem::take(&mut self.buf),
                            flaw: truncated.then_some(FrameFlaw::TooLong),
                        });
                        self.mode = Mode::Count;
                    } else {
                        self.mode = Mode::Body {
                            remaining,
                            truncated,
                        };
                    }
                }
            }
        }
    }

    /// The connection ended: whatever is buffered is a frame cut off by the disconnect.
    pub fn finish(&mut self, frames: &mut Vec<Frame>) {
        let pending = std::mem::take(&mut self.buf);
        match self.mode {
            Mode::Lines if !pending.is_empty() && !self.skipping_line => {
                // A last line without LF is a whole message (logger and many senders do this
                // over UDP-like TCP use); it is not marked as cut off.
                let line = trim_line(&pending);
                if !line.is_empty() {
                    frames.push(Frame {
                        bytes: line.to_vec(),
                        flaw: None,
                    });
                }
            }
            Mode::Body { .. } if !pending.is_empty() => {
                frames.push(Frame {
                    bytes: pending,
                    flaw: Some(FrameFlaw::CutOff),
                });
            }
            _ => {}
        }
        self.mode = Mode::Undecided;
        self.skipping_line = false;
    }

    fn fall_back_to_lines(&mut self, errors: &mut Vec<FramingError>) {
        errors.push(FramingError::BadOctetCount);
        // The bytes read as a count are the start of a line.
        self.mode = Mode::Lines;
    }

    fn push_lines<'a>(
        &mut self,
        data: &'a [u8],
        frames: &mut Vec<Frame>,
        errors: &mut Vec<FramingError>,
    ) -> &'a [u8] {
        match data.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let (line, rest) = (&data[..lf], &data[lf + 1..]);
                if self.skipping_line {
                    self.skipping_line = false;
                } else {
                    let room = self.max.saturating_sub(self.buf.len());
                    let too_long = line.len() > room;
                    self.buf.extend_from_slice(&line[..line.len().min(room)]);
                    let whole = trim_line(&self.buf);
                    if whole.is_empty() {
                        errors.push(FramingError::Empty);
                    } else {
                        frames.push(Frame {
                            bytes: whole.to_vec(),
                            flaw: too_long.then_some(FrameFlaw::TooLong),
                        });
                    }
                    self.buf.clear();
                }
                rest
            }
            None => {
                if !self.skipping_line {
                    let room = self.max.saturating_sub(self.buf.len());
                    if data.len() > room {
                        self.buf.extend_from_slice(&data[..room]);
                        frames.push(Frame {
                            bytes: std::mem::take(&mut self.buf),
                            flaw: Some(FrameFlaw::TooLong),
                        });
                        self.skipping_line = true;
                    } else {
                        self.buf.extend_from_slice(data);
                    }
                }
                &[]
            }
        }
    }
}

/// A line without its CR and the NULs some senders pad with.
fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| b != b'\r' && b != 0)
        .map_or(0, |i| i + 1);
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_all(chunks: &[&[u8]], max: usize) -> (Vec<Frame>, Vec<FramingError>) {
        let mut framer = Framer::new(max);
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        for chunk in chunks {
            framer.push(chunk, &mut frames, &mut errors);
        }
        framer.finish(&mut frames);
        (frames, errors)
    }

    fn whole(bytes: &[u8]) -> Frame {
        Frame {
            bytes: bytes.to_vec(),
            flaw: None,
        }
    }

    #[test]
    fn lines_split_on_lf_across_chunks() {
        let (frames, errors) = frame_all(&[b"<13>one\r\n<13>tw", b"o\n\n<13>three"], 100);
        assert_eq!(
            frames,
            [whole(b"<13>one"), whole(b"<13>two"), whole(b"<13>three")]
        );
        assert_eq!(errors, [FramingError::Empty]);
    }

    #[test]
    fn octet_counting_across_chunks_with_stray_newlines() {
        let (frames, errors) = frame_all(&[b"5 hel", b"lo\n3 abc", b"11 hello\nworld"], 100);
        assert_eq!(
            frames,
            [whole(b"hello"), whole(b"abc"), whole(b"hello\nworld")]
        );
        assert!(errors.is_empty());
    }

    #[test]
    fn overlong_messages_are_cut_and_the_rest_skipped() {
        let long = [b'a'; 50];
        let (frames, _) = frame_all(&[&long, &long, b"\n<13>next\n"], 16);
        assert_eq!(
            frames[0],
            Frame {
                bytes: vec![b'a'; 16],
                flaw: Some(FrameFlaw::TooLong)
            }
        );
        assert_eq!(frames[1], whole(b"<13>next"));
        assert_eq!(frames.len(), 2);

        let (frames, _) = frame_all(&[b"10000000 ", &[b'x'; 100], b"..."], 8);
        assert_eq!(
            frames,
            [Frame {
                bytes: vec![b'x'; 8],
                flaw: Some(FrameFlaw::CutOff)
            }]
        );
    }

    #[test]
    fn a_frame_cut_by_disconnect_is_kept_and_marked() {
        let (frames, _) = frame_all(&[b"20 <13>only part"], 100);
        assert_eq!(
            frames,
            [Frame {
                bytes: b"<13>only part".to_vec(),
                flaw: Some(FrameFlaw::CutOff)
            }]
        );
    }

    #[test]
    fn a_bad_octet_count_falls_back_to_lines() {
        let (frames, errors) = frame_all(&[b"5 hello", b"12345678901234 x\n<13>after\n"], 100);
        assert_eq!(errors, [FramingError::BadOctetCount]);
        assert_eq!(frames[0], whole(b"hello"));
        assert_eq!(frames[1], whole(b"12345678901234 x"));
        assert_eq!(frames[2], whole(b"<13>after"));
    }

    proptest! {
        #[test]
        fn any_stream_any_chunking_is_bounded_and_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(0usize..2000, 0..8),
            max in 1usize..64,
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut start = 0;
            for c in cuts { chunks.push(&data[start..c]); start = c; }
            chunks.push(&data[start..]);
            let (frames, _) = frame_all(&chunks, max);
            for f in &frames { prop_assert!(f.bytes.len() <= max); }
        }

        #[test]
        fn octet_framing_round_trips(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..20)) {
            let mut stream = Vec::new();
            for m in &msgs { stream.extend_from_slice(format!("{} ", m.len()).as_bytes()); stream.extend_from_slice(m); }
            let (frames, errors) = frame_all(&[&stream], 64);
            prop_assert!(errors.is_empty());
            prop_assert_eq!(frames.into_iter().map(|f| f.bytes).collect::<Vec<_>>(), msgs);
        }
    }
}
