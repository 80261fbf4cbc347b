//! The search query language, evaluated on one event in memory (rules see events before the
//! index does): `field:value` (`*` wildcards, `"quoted values"`), bare words (searched in the
//! message, user, host, IP, patient and program like the search box), `AND` / `OR` / `NOT` (and
//! `-term`), parentheses, and ranges on `record.count` (`record.count:[100 TO *]`). Matching
//! ignores case, as search does.

use store::Event;
use store::pattern::Glob;

#[derive(Debug, Clone)]
pub enum Filter {
    All,
    Term {
        field: String,
        value: Glob,
    },
    Word(String),
    Range {
        field: String,
        low: Option<u64>,
        high: Option<u64>,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// Fields a filter can name.
pub const FIELDS: &[&str] = &[
    "event.id",
    "event.dataset",
    "event.action",
    "event.code",
    "event.outcome",
    "user.name",
    "user.roles",
    "source.ip",
    "host.name",
    "site",
    "patient.id",
    "record.category",
    "record.count",
    "process.name",
    "log.source.address",
    "tags",
    "message",
];

fn values<'a>(event: &'a Event, field: &str) -> Vec<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow::{Borrowed, Owned};
    let one = |v: &'a Option<String>| v.as_deref().map(Borrowed).into_iter().collect();
    match field {
        "event.id" => vec![Borrowed(event.id.as_str())],
        "event.dataset" => vec![Borrowed(event.dataset.as_str())],
        "event.action" => vec![Borrowed(event.action.as_str())],
        "event.code" => one(&event.code),
        "event.outcome" => vec![Borrowed(event.outcome.as_str())],
        "user.name" => one(&event.user),
        "user.roles" => event.roles.iter().map(|r| Borrowed(r.as_str())).collect(),
        "source.ip" => one(&event.source_ip),
        "host.name" => one(&event.host),
        "site" => one(&event.site),
        "patient.id" => one(&event.patient),
        "record.category" => one(&event.category),
        "record.count" => event
            .record_count
            .map(|n| Owned(n.to_string()))
            .into_iter()
            .collect(),
        "process.name" => one(&event.process),
        "log.source.address" => one(&event.log_source),
        "tags" => event.tags.iter().map(|t| Borrowed(t.as_str())).collect(),
        "message" => vec![Borrowed(event.message.as_str())],
        other => match other.strip_prefix("labels.") {
            Some(k) => event
                .labels
                .get(k)
                .map(|v| Borrowed(v.as_str()))
                .into_iter()
                .collect(),
            None => Vec::new(),
        },
    }
}

/// A field's first value as text (for grouping).
pub fn field_text(event: &Event, field: &str) -> Option<String> {
    values(event, field).first().map(|v| v.to_string())
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::All => true,
            Filter::Term { field, value } => {
                if field == "message" {
                    let m = event.message.to_lowercase();
                    return m
                        .split(|c: char| !c.is_alphanumeric() && c != '.' && c != '_' && c != '-')
                        .any(|w| value.matches(w))
                        || value.matches(&m);
                }
                values(event, field).iter().any(|v| value.matches(v))
            }
            Filter::Word(w) => {
                let w = w.to_lowercase();
                event.message.to_lowercase().contains(&w)
                    || [
                        "user.name",
                        "host.name",
                        "source.ip",
                        "patient.id",
                        "process.name",
                    ]
                    .iter()
                    .any(|f| values(event, f).iter().any(|v| v.to_lowercase() == w))
            }
            Filter::Range { field, low, high } => values(event, field)
                .iter()
                .filter_map(|v| v.parse::<u64>().ok())
                .any(|n| low.is_none_or(|l| n >= l) && high.is_none_or(|h| n <= h)),
            Filter::And(list) => list.iter().all(|f| f.matches(event)),
            Filter::Or(list) => list.iter().any(|f| f.matches(event)),
            Filter::Not(f) => !f.matches(event),
        }
    }

    /// Parses a query; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() || (tokens.len() == 1 && tokens[0] == Token::Word("*".into())) {
            return Ok(Filter::All);
        }
        let mut p = Parser { tokens, pos: 0 };
        let f = p.or()?;
        if p.pos < p.tokens.len() {
            return Err(format!("unexpected {:?} after a complete query", p.tokens[p.pos]).into());
        }
        if let Filter::Not(_) = f {
            return Err("a query cannot only exclude (`NOT x`): say what to include too, e.g. `* AND NOT x`".into());
        }
        Ok(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    /// `field:value` or `field:[a TO b]`
    Field(String, String),
    Word(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' || c == ')' {
            out.push(if c == '(' { Token::Open } else { Token::Close });
            i += 1;
            continue;
        }
        if c == '-' && i + 1 < chars.len() && !chars[i + 1].is_whitespace() {
            out.push(Token::Not);
            i += 1;
            continue;
        }
        // A word, maybe `field:` followed by a value.
        let start = i;
        let mut word = String::new();
        if c == '"' {
            let (quoted, next) = quoted(&chars, i)?;
            out.push(Token::Word(quoted));
            i = next;
            continue;
        }
        while i < chars.len()
            && !chars[i].is_whitespace()
            && chars[i] != '('
            && chars[i] != ')'
            && chars[i] != ':'
        {
            word.push(chars[i]);
            i += 1;
        }
        if i < chars.len() && chars[i] == ':' {
            i += 1;
            if i < chars.len() && chars[i] == '(' {
                // `field:(a OR b)`: the group's bare words are values of the field.
                let mut depth = 0;
                let close = chars[i..]
                    .iter()
                    .position(|&c| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .ok_or_else(|| {
                        format!("the parenthesis after `{word}:` at position {start} is not closed")
                    })?;
                let inner: String = chars[i + 1..i + close].iter().collect();
                out.push(Token::Open);
                out.extend(tokenize(&inner)?.into_iter().map(|t| match t {
                    Token::Word(w) => Token::Field(word.clone(), w),
                    other => other,
                }));
                out.push(Token::Close);
                i += close + 1;
                continue;
            }
            let value = if i < chars.len() && chars[i] == '"' {
                let (q, next) = quoted(&chars, i)?;
                i = next;
                q
            } else if i < chars.len() && (chars[i] == '[' || chars[i] == '{') {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']' || c == '}')
                    .ok_or_else(|| format!("range after `{word}:` is not closed with ]"))?;
                let v: String = chars[i..i + close + 1].iter().collect();
                i += close + 1;
                v
            } else {
                let mut v = String::new();
                while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ')' {
                    v.push(chars[i]);
                    i += 1;
                }
                v
            };
            if value.is_empty() {
                return Err(format!("`{word}:` at position {start} has no value").into());
            }
            out.push(Token::Field(word, value));
            continue;
        }
        out.push(match word.as_str() {
            "AND" | "&&" => Token::And,
            "OR" | "||" => Token::Or,
            "NOT" => Token::Not,
            _ => Token::Word(word),
        });
    }
    Ok(out)
}

fn quoted(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let mut i = start + 1;
    let mut s = String::new();
    while i < chars.len() && chars[i] != '"' {
        s.push(chars[i]);
        i += 1;
    }
    if i >= chars.len() {
        return Err(format!("the quote opened at position {start} is not closed").into());
    }
    Ok((s, i + 1))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut list = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            list.push(self.and()?);
        }
        Ok(if list.len() == 1 {
            list.remove(0)
        } else {
            Filter::Or(list)
        })
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut list = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Token::And) => {
                    self.pos += 1;
                    list.push(self.unary()?);
                }
                Some(Token::Or) | Some(Token::Close) | None => break,
                Some(_) => list.push(self.unary()?),
            }
        }
        Ok(if list.len() == 1 {
            list.remove(0)
        } else {
            Filter::And(list)
        })
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        match self.peek().cloned() {
            Some(Token::Not) => {
                self.pos += 1;
                Ok(Filter::Not(Box::new(self.unary()?)))
            }
            Some(Token::Open) => {
                self.pos += 1;
                let f = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("a parenthesis is not closed".into());
                }
                self.pos += 1;
                Ok(f)
            }
            Some(Token::Field(field, value)) => {
                self.pos += 1;
                term(&field, &value)
            }
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(if w == "*" {
                    Filter::All
                } else {
                    Filter::Word(w)
                })
            }
            Some(t) => Err(format!("expected a term, found {t:?}").into()),
            None => Err("the query ends where a term was expected".into()),
        }
    }
}

fn term(field: &str, value: &str) -> Result<Filter, FilterError> {
    if !FIELDS.contains(&field) && !field.starts_with("labels.") {
        return Err(format!(
            "unknown field `{field}`; fields are: {}, labels.<name>",
            FIELDS.join(", ")
        )
        .into());
    }
    if let Some(inner) = value
        .strip_prefix(['[', '{'])
        .and_then(|v| v.strip_suffix([']', '}']))
    {
        let (a, b) = inner
            .split_once(" TO ")
            .ok_or_else(|| format!("range `{value}` must look like [100 TO *]"))?;
        let bound = |s: &str| -> Result<Option<u64>, String> {
            match s.trim() {
                "*" => Ok(None),
                n => n
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("range bound {n:?} in `{field}` is not a number")),
            }
        };
        return Ok(Filter::Range {
            field: field.to_owned(),
            low: bound(a)?,
            high: bound(b)?,
        });
    }
    Ok(Filter::Term {
        field: field.to_owned(),
        value: Glob::new(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new("k", "ehr.audit", String::new(), chrono::Utc::now());
        e.user = Some("R001".into());
        e.action = "record.export".into();
        e.record_count = Some(250);
        e.message = "CSV出力 user r001 patient P1".into();
        e.roles = vec!["reception".into()];
        e.labels.insert("winlog.logon.type".into(), "10".into());
        e
    }

    #[test]
    fn the_query_language_on_one_event() {
        let e = event();
        for (q, want) in [
            ("user.name:r001", true),
            ("user.name:r0*", true),
            ("user.name:n002", false),
            (
                "event.action:record.export AND record.count:[100 TO *]",
                true,
            ),
            (
                "event.action:record.export AND record.count:[300 TO *]",
                false,
            ),
            ("user.roles:reception -event.action:login", true),
            ("NOT user.name:r001 OR event.dataset:ehr.audit", true),
            (
                "(event.action:login OR event.action:record.export) user.name:r001",
                true,
            ),
            ("labels.winlog.logon.type:10", true),
            ("r001", true),
            ("出力", true),
            ("*", true),
            ("message:p1", true),
            ("user.name:(n002 OR r001)", true),
            ("user.name:(n002 OR d001)", false),
            (
                "user.name:(r001) AND NOT event.action:(login OR logout)",
                true,
            ),
        ] {
            assert_eq!(Filter::parse(q).unwrap().matches(&e), want, "{q}");
        }
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        assert!(
            Filter::parse("usr.name:x")
                .unwrap_err()
                .0
                .contains("unknown field `usr.name`")
        );
        assert!(
            Filter::parse("(user.name:x")
                .unwrap_err()
                .0
                .contains("parenthesis")
        );
        assert!(
            Filter::parse("user.name:(a")
                .unwrap_err()
                .0
                .contains("parenthesis after `user.name:` at position 0 is not closed")
        );
        assert!(
            Filter::parse("record.count:[a TO 5]")
                .unwrap_err()
                .0
                .contains("not a number")
        );
        assert!(
            Filter::parse("user.name:\"x")
                .unwrap_err()
                .0
                .contains("not closed")
        );
        assert!(
            Filter::parse("NOT user.name:x")
                .unwrap_err()
                .0
                .contains("only exclude")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            if let Ok(f) = Filter::parse(&s) {
                let _ = f.matches(&event());
            }
        }
    }
}

store::reason_error! {
    /// What is wrong with a filter, in words for the person who wrote it.
    FilterError
}
