//! What the command line prints for people: text that came from senders (messages, host and
//! account names, alert explanations) may carry terminal escapes (`ESC]0;...BEL`, `ESC[2J`) or
//! bidirectional overrides (U+202E) that would rewrite the screen or reorder what is shown; they
//! are printed escaped, never acted on. A closed pipe (`| head`) ends the command quietly.

use std::borrow::Cow;
use std::io::Write;

/// Prints one line through [`shown`]; exits 0 when stdout is closed.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(&format!($($arg)*))
    };
}
pub(crate) use say;

pub fn say_line(line: &str) {
    if writeln!(std::io::stdout().lock(), "{}", shown(line)).is_err() {
        std::process::exit(0);
    }
}

/// JSON with every [`hidden`] character outside a line break as a JSON escape (`\u202e`): it
/// stays valid JSON and no character acts on a terminal.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(|c| hidden(c) && c != '\n') {
        return Cow::Borrowed(json);
    }
    Cow::Owned(
        json.chars()
            .map(|c| {
                if hidden(c) && c != '\n' {
                    format!("\\u{:04x}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Prints one line of JSON through [`json_safe`]; exits 0 when stdout is closed.
pub fn say_json(json: &str) {
    if writeln!(std::io::stdout().lock(), "{}", json_safe(json)).is_err() {
        std::process::exit(0);
    }
}

/// Characters that must not reach a terminal as they are: controls and the bidirectional
/// formatting characters.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// `text` with every [`hidden`] character written as an escape (`\u{1b}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// [`printable`], keeping line breaks and tabs (for whole lines and pretty JSON).
fn shown(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| hidden(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if hidden(c) && !keep(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_stay_json_with_bidi_escaped() {
        let json = serde_json::json!({"user": "\u{202e}exe.txt\u{1b}[2J"}).to_string();
        let escaped = json_safe(&json);
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back["user"], "\u{202e}exe.txt\u{1b}[2J");
        assert!(!escaped.contains('\u{202e}'));
    }

    #[test]
    fn escapes_controls_and_bidi_overrides() {
        assert_eq!(printable("ok 参照"), "ok 参照");
        assert_eq!(
            printable("a\u{1b}]0;x\u{7}b\u{202e}c"),
            "a\\u{1b}]0;x\\u{7}b\\u{202e}c"
        );
        assert_eq!(shown("one\ntwo\u{1b}[2J"), "one\ntwo\\u{1b}[2J");
    }
}
