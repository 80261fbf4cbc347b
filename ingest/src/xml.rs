//! Small, bounded XML: a stream of XML text is cut into top-level elements of one name
//! (`<Event>`, `<AuditMessage>`), and each element is read into a little tree. Document type
//! declarations are refused outright, so entity-expansion tricks ("billion laughs", external
//! entities) never reach a parser; only the five predefined entities and character references
//! are resolved.

use std::io::BufRead;

use crate::error::Unreadable;
use quick_xml::events::Event as XmlEvent;

/// Most elements read from one record.
const MAX_NODES: usize = 4096;
/// Deepest nesting read.
const MAX_DEPTH: usize = 32;

/// An element: local name (namespace prefix dropped), attributes, text, children.
#[derive(Debug, Default, Clone)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of a child, trimmed; `None` when absent or empty.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => name.to_owned(),
    }
}

fn predefined(entity: &str) -> Option<char> {
    Some(match entity {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Reads one XML element (and whatever declaration precedes it) into a tree.
pub fn parse_tree(xml: &str) -> Result<Node, Unreadable> {
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut nodes = 0usize;
    let open = |e: &quick_xml::events::BytesStart, nodes: &mut usize| -> Result<Node, Unreadable> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(format!("more than {MAX_NODES} elements in one record").into());
        }
        let mut node = Node {
            name: local(e.name().as_ref()),
            ..Node::default()
        };
        for attr in e.attributes() {
            let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad attribute value: {e}"))?;
            node.attrs
                .push((local(attr.key.as_ref()), value.into_owned()));
        }
        Ok(node)
    };
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        match event {
            XmlEvent::DocType(_) => {
                return Err("a document type declaration (<!DOCTYPE>) is refused: entity definitions are not accepted".into());
            }
            XmlEvent::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}").into());
                }
                stack.push(open(&e, &mut nodes)?);
            }
            XmlEvent::Empty(e) => {
                let node = open(&e, &mut nodes)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            XmlEvent::End(_) => {
                let node = stack.pop().ok_or("an end tag without a start tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            XmlEvent::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            XmlEvent::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            XmlEvent::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined(&r).ok_or_else(|| {
                        format!(
                            "unknown entity &{};: only the XML predefined entities are accepted",
                            &*r
                        )
                    })?,
                    Err(e) => return Err(format!("bad character reference: {e}").into()),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            XmlEvent::Eof => return Err("the XML ends before its element is closed".into()),
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) => {}
        }
    }
}

/// Where one element was found in a stream.
#[derive(Debug)]
pub struct Element {
    /// 1-based line of the element's start tag.
    pub line: u64,
    pub text: String,
}

/// Cuts a stream of XML into top-level `<tag ...>...</tag>` elements, wherever they are (one per
/// line, pretty-printed, inside a root such as `<Events>`), without building the whole document.
/// Each element is at most `max_bytes`; a longer one is skipped and reported.
pub struct XmlElements<R> {
    reader: R,
    tag: &'static str,
    max_bytes: usize,
    buf: String,
    pending: Vec<u8>,
    /// Line number of the first byte of `buf`.
    line: u64,
    /// How much of `buf` is known to hold no end tag (only new bytes are searched again).
    searched: usize,
    eof: bool,
    checked_doctype: bool,
}

impl<R: BufRead> XmlElements<R> {
    pub fn new(reader: R, tag: &'static str, max_bytes: usize) -> XmlElements<R> {
        XmlElements {
            reader,
            tag,
            max_bytes,
            buf: String::new(),
            pending: Vec::new(),
            line: 1,
            searched: 0,
            eof: false,
            checked_doctype: false,
        }
    }

    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        // 64 KiB at a time whatever the lines: a run of empty lines costs one read, not one
        // read and one search of the whole buffer per line.
        let mut bytes = std::mem::take(&mut self.pending);
        let available = self.reader.fill_buf()?;
        let n = available.len().min(64 << 10);
        bytes.extend_from_slice(&available[..n]);
        self.reader.consume(n);
        if n == 0 {
            self.eof = true;
            self.buf.push_str(&String::from_utf8_lossy(&bytes));
            return Ok(false);
        }
        // A character cut by the 64 KiB read limit waits for the rest of its bytes.
        if let Err(e) = std::str::from_utf8(&bytes)
            && e.error_len().is_none()
        {
            self.pending = bytes.split_off(e.valid_up_to());
        }
        self.buf.push_str(&String::from_utf8_lossy(&bytes));
        Ok(true)
    }

    fn consume(&mut self, upto: usize) {
        self.line += self.buf[..upto].matches('\n').count() as u64;
        self.buf.drain(..upto);
        self.searched = 0;
    }

    /// Start of the next `<tag` followed by space, `>` or `/`.
    fn find_start(&self) -> Option<usize> {
        let open = format!("<{}", self.tag);
        let mut from = 0;
        while let Some(i) = self.buf[from..].find(&open) {
            let at = from + i;
            match self.buf[at + open.len()..].chars().next() {
                Some(c) if c.is_whitespace() || c == '>' || c == '/' => return Some(at),
                None => return None,
                _ => from = at + 1,
            }
        }
        None
    }
}

impl<R: BufRead> Iterator for XmlElements<R> {
    type Item = Result<Element, (u64, String)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if !self.checked_doctype {
                if self.buf.len() < 4096 && !self.eof {
                    if let Err(e) = self.fill() {
                        self.eof = true;
                        return Some(Err((self.line, format!("read failed: {e}"))));
                    }
                    continue;
                }
                self.checked_doctype = true;
                if self.buf.contains("<!DOCTYPE") || self.buf.contains("<!ENTITY") {
                    self.buf.clear();
                    self.eof = true;
                    return Some(Err((
                        1,
                        "a document type declaration (<!DOCTYPE>/<!ENTITY>) is refused: entity definitions are not accepted".into(),
                    )));
                }
            }
            if let Some(start) = self.find_start() {
                if start > 0 {
                    self.consume(start);
                }
                let close = format!("</{}>", self.tag);
                // A self-closing `<tag .../>` has no end tag.
                let head_end = self.buf.find('>');
                if let Some(h) = head_end
                    && self.buf[..h].ends_with('/')
                {
                    let text = self.buf[..=h].to_owned();
                    let line = self.line;
                    self.consume(h + 1);
                    return Some(Ok(Element { line, text }));
                }
                let from = self.searched;
                if let Some(end) = self.buf[from..].find(&close) {
                    let end = from + end + close.len();
                    let line = self.line;
                    if end > self.max_bytes {
                        self.consume(end);
                        return Some(Err((
                            line,
                            format!(
                                "<{}> element longer than {} bytes; skipped",
                                self.tag, self.max_bytes
                            ),
                        )));
                    }
                    let text = self.buf[..end].to_owned();
                    self.consume(end);
                    return Some(Ok(Element { line, text }));
                }
                // Nothing before the last few bytes can start the end tag: search on from there.
                let mut searched = self.buf.len().saturating_sub(close.len());
                while !self.buf.is_char_boundary(searched) {
                    searched -= 1;
                }
                self.searched = searched;
                if self.buf.len() > self.max_bytes {
                    let line = self.line;
                    // Skip past this start tag and look for the next element.
                    self.consume(1);
                    return Some(Err((
                        line,
                        format!(
                            "<{}> with no </{}> within {} bytes (unclosed or too long); skipped",
                            self.tag, self.tag, self.max_bytes
                        ),
                    )));
                }
            } else if self.buf.len() > self.tag.len() + 2 {
                // Keep a tail that could be the beginning of a start tag.
                let keep = self.tag.len() + 2;
                let mut cut = self.buf.len() - keep;
                while !self.buf.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.consume(cut);
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    if self.find_start().is_some() {
                        let line = self.line;
                        self.buf.clear();
                        return Some(Err((
                            line,
                            format!("<{}> element cut off by the end of the input", self.tag),
                        )));
                    }
                    return None;
                }
                Err(e) => {
                    self.eof = true;
                    return Some(Err((self.line, format!("read failed: {e}"))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_cut_from_any_layout() {
        let text = "<?xml version='1.0'?>\n<Events><Event a='1'><x>1</x></Event>\n<Event>\n<x>2</x>\n</Event><Eventually/><Event/></Events>";
        let got: Vec<_> = XmlElements::new(text.as_bytes(), "Event", 1 << 20)
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].line, 2);
        assert_eq!(got[1].line, 3);
        assert!(got[1].text.contains("<x>2</x>"));
        assert_eq!(got[2].text, "<Event/>");
    }

    #[test]
    fn doctype_and_unknown_entities_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><Event>&lol2;</Event>"#;
        let got: Vec<_> = XmlElements::new(bomb.as_bytes(), "Event", 1 << 20).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().1.contains("DOCTYPE"));
        assert!(parse_tree(bomb).unwrap_err().0.contains("DOCTYPE"));
        assert!(
            parse_tree("<Event>&lol;</Event>")
                .unwrap_err()
                .0
                .contains("unknown entity")
        );
        let t = parse_tree("<a x='&lt;1&#x41;'>&amp;&#66;<![CDATA[<c>]]></a>").unwrap();
        assert_eq!(t.attr("x"), Some("<1A"));
        assert_eq!(t.text, "&B<c>");
    }

    #[test]
    fn cut_off_and_oversized_elements_are_reported() {
        let got: Vec<_> =
            XmlElements::new("<Event><x>1</x>".as_bytes(), "Event", 1 << 20).collect();
        assert!(got[0].as_ref().unwrap_err().1.contains("cut off"));
        let big = format!("<Event>{}</Event><Event>ok</Event>", "x".repeat(5000));
        let got: Vec<_> = XmlElements::new(big.as_bytes(), "Event", 1000).collect();
        assert!(
            got.iter()
                .any(|r| r.as_ref().is_err_and(|e| e.1.contains("longer")))
        );
        assert!(
            got.iter()
                .any(|r| r.as_ref().is_ok_and(|e| e.text == "<Event>ok</Event>"))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = parse_tree(&s);
            let _: Vec<_> = XmlElements::new(s.as_bytes(), "Event", 100).collect();
        }
    }
}
