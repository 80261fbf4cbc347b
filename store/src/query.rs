//! Query text as people type it, rewritten before the query parser sees it: Windows accounts
//! written `CLINIC\n003` or `n003@clinic.local` find the account `n003` (the domain is its own
//! field, `user.domain`, and is not required to match: a clinic has one domain, and EHR and
//! syslog events name the account without one).

use std::borrow::Cow;

use tantivy::query::{AllQuery, BooleanQuery, Occur, Query};

/// The parsed query with every clause that only excludes (`a AND NOT b` gives `NOT b` as one
/// clause of an `AND`) made "everything except": Tantivy's own matches nothing
/// (quickwit-oss/tantivy#2584), so `tanaka AND NOT event.action:logout` found nothing.
pub(crate) fn negations_complete(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = boolean
        .clauses()
        .iter()
        .map(|(occur, clause)| (*occur, negations_complete(clause.box_clone())))
        .collect();
    if !clauses.is_empty() && clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// How deep brackets and unary operators (`NOT`, `-`, `+`, `!`) may nest: the parser and the
/// search recurse once per level, and a few hundred levels overflow a worker's stack.
pub(crate) const MAX_NESTING: usize = 64;
/// A phrase's slop (`"a b"~N`) at most, and the words of a phrase with a slop at most: the
/// matching is tried for every way the words can move, and `"..."~1000` of 60 words ran for
/// minutes, past any timeout.
pub(crate) const MAX_SLOP: u32 = 8;
pub(crate) const MAX_SLOPPY_WORDS: usize = 16;

/// How deep `pieces` (the text outside quotes) nest: each bracket and each unary operator in
/// front of a clause is a level; clauses side by side (`-a -b -c`) are not.
fn nesting(pieces: &[(usize, &str)]) -> usize {
    let (mut deepest, mut base, mut run) = (0usize, 0usize, 0usize);
    let mut enclosing: Vec<usize> = Vec::new();
    let atom = |base: usize, run: &mut usize, deepest: &mut usize| {
        *deepest = (*deepest).max(base + *run);
        *run = 0;
    };
    for (i, (_, piece)) in pieces.iter().enumerate() {
        let mut word = String::new();
        let mut words: Vec<String> = Vec::new();
        for c in piece.chars() {
            if c.is_whitespace() || c == '(' || c == ')' {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                if c != ' ' && !c.is_whitespace() {
                    words.push(c.to_string());
                }
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        for word in words {
            match word.as_str() {
                "(" => {
                    enclosing.push(base);
                    base += run + 1;
                    run = 0;
                }
                ")" => {
                    base = enclosing.pop().unwrap_or(0);
                    run = 0;
                }
                "NOT" => run += 1,
                "AND" | "OR" | "&&" | "||" => {}
                _ => {
                    let bare = word.trim_start_matches(['-', '+', '!']);
                    run += word.len() - bare.len();
                    if !bare.is_empty() {
                        atom(base, &mut run, &mut deepest);
                    }
                }
            }
        }
        // The quoted phrase after this piece is a clause too.
        if i + 1 < pieces.len() {
            atom(base, &mut run, &mut deepest);
        }
    }
    deepest.max(base + run)
}

/// The phrases of `text` (quoted) with the slop each is given (`"a b"~N`).
fn phrases<'a>(text: &'a str, pieces: &[(usize, &'a str)]) -> Vec<(&'a str, Option<&'a str>)> {
    pieces
        .windows(2)
        .map(|pair| {
            let ((offset, piece), (next, after)) = (pair[0], pair[1]);
            let phrase = &text
                [offset + piece.len() + 1..next.saturating_sub(1).max(offset + piece.len() + 1)];
            let slop = after.strip_prefix('~').map(|rest| {
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                &rest[..end]
            });
            (phrase, slop)
        })
        .collect()
}

/// The pieces of `text` outside double quotes, with the byte offset each starts at.
fn unquoted(text: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if quoted {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
                start = i + 1;
            }
        } else if c == '"' {
            pieces.push((start, &text[start..i]));
            quoted = true;
        }
    }
    if !quoted {
        pieces.push((start, &text[start..]));
    }
    pieces
}

/// What is wrong with `text` before the parser sees it: nesting past [`MAX_NESTING`], or an
/// `event.id:` that is not one whole id (ids are looked up whole, see `id_query.rs`; a prefix,
/// a range or a wildcard would find nothing or only some events, silently).
pub(crate) fn refused(text: &str) -> Option<String> {
    let pieces = unquoted(text);
    let depth = nesting(&pieces);
    if depth > MAX_NESTING {
        return Some(format!(
            "brackets and NOT/-/+ nest {depth} levels deep in the query; at most {MAX_NESTING} are allowed"
        ));
    }
    for (phrase, slop) in phrases(text, &pieces) {
        let Some(slop) = slop else { continue };
        let words = phrase.split_whitespace().count();
        match slop.parse::<u32>() {
            Ok(n) if n <= MAX_SLOP && (n == 0 || words <= MAX_SLOPPY_WORDS) => {}
            _ => {
                return Some(format!(
                    "`\"…\"~{slop}`: a phrase's ~N is at most {MAX_SLOP}, for a phrase of at most {MAX_SLOPPY_WORDS} words"
                ));
            }
        }
    }
    for (offset, piece) in pieces {
        let mut rest = piece;
        while let Some(at) = rest.find("event.id:") {
            let before = rest[..at].chars().next_back();
            let value = &rest[at + "event.id:".len()..];
            rest = value;
            if before.is_some_and(|c| !(c.is_whitespace() || matches!(c, '(' | '-' | '+' | '!'))) {
                continue; // the end of another word
            }
            let end = value
                .find(|c: char| c.is_whitespace() || c == ')')
                .unwrap_or(value.len());
            let quoted = value.is_empty() && offset + piece.len() < text.len();
            let id = if quoted {
                // `event.id:"..."`: the piece ended at the quote, the id is inside it.
                text[offset + piece.len() + 1..]
                    .split('"')
                    .next()
                    .unwrap_or("")
                    .trim()
            } else {
                &value[..end]
            };
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(format!(
                    "`event.id:{id}`: event.id takes one whole id, 32 hex digits \
                     (event.id:5092dd0212c7cff6417fe2f6d42556f5); join several with OR"
                ));
            }
        }
    }
    None
}

/// Rewrites account words outside quotes: `DOMAIN\user` (bare or after `user.name:`) becomes
/// `user.name:"user"`, and `user@domain` becomes `(user.name:"user" OR <the word>)`.
pub(crate) fn accounts_as_typed(text: &str) -> Cow<'_, str> {
    // `field:[* TO *]` (any value) is `field:*`: the parser's open range matches nothing.
    if text.contains(":[* TO *]") || text.contains(":{* TO *}") {
        let any = text.replace(":[* TO *]", ":*").replace(":{* TO *}", ":*");
        return Cow::Owned(accounts(&any).into_owned());
    }
    accounts(text)
}

fn accounts(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '@']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let end = if c == '"' {
            // A quoted phrase, copied as it is.
            rest[1..].find('"').map_or(rest.len(), |i| i + 2)
        } else if c.is_whitespace() {
            c.len_utf8()
        } else {
            rest.find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len())
        };
        let (piece, tail) = rest.split_at(end);
        if c == '"' || c.is_whitespace() {
            out.push_str(piece);
        } else {
            rewrite_word(piece, &mut out);
        }
        rest = tail;
    }
    Cow::Owned(out)
}

fn rewrite_word(word: &str, out: &mut String) {
    // Brackets around the word stay where they are.
    let inner = word.trim_start_matches('(');
    let open = &word[..word.len() - inner.len()];
    let core = inner.trim_end_matches(')');
    let close = &inner[core.len()..];
    let (field, account) = match core.strip_prefix("user.name:") {
        Some(a) => ("user.name:", a),
        None => ("", core),
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '$'))
    };
    if !field.is_empty() || !account.contains(':') {
        if let Some((domain, user)) = account.split_once('\\')
            && plain(domain)
            && plain(user)
        {
            // The account, or the whole as a source wrote it (an EHR export's user column).
            out.push_str(&format!(
                "{open}(user.name:\"{user}\" OR user.name:\"{domain}\\\\{user}\"){close}"
            ));
            return;
        }
        if let Some((user, domain)) = account.split_once('@')
            && plain(user)
            && plain(domain)
        {
            let whole = if field.is_empty() {
                format!("user.name:\"{account}\" OR {account}")
            } else {
                format!("user.name:\"{account}\"")
            };
            out.push_str(&format!("{open}(user.name:\"{user}\" OR {whole}){close}"));
            return;
        }
    }
    out.push_str(word);
}

#[cfg(test)]
mod tests {
    use super::accounts_as_typed;

    #[test]
    fn windows_accounts_become_the_account_name() {
        assert_eq!(
            accounts_as_typed(r"CLINIC\n003"),
            r#"(user.name:"n003" OR user.name:"CLINIC\\n003")"#
        );
        assert_eq!(
            accounts_as_typed(r"user.name:CLINIC\n003 AND action:login"),
            r#"(user.name:"n003" OR user.name:"CLINIC\\n003") AND action:login"#
        );
        assert_eq!(
            accounts_as_typed("n003@clinic.local"),
            r#"(user.name:"n003" OR user.name:"n003@clinic.local" OR n003@clinic.local)"#
        );
        assert_eq!(
            accounts_as_typed("(user.name:n003@clinic.local OR x)"),
            r#"((user.name:"n003" OR user.name:"n003@clinic.local") OR x)"#
        );
        // Quoted text, other fields and plain words are left alone.
        assert_eq!(accounts_as_typed(r#""CLINIC\n003""#), r#""CLINIC\n003""#);
        assert_eq!(accounts_as_typed("host.name:a@b"), "host.name:a@b");
        assert_eq!(accounts_as_typed("tanaka 参照"), "tanaka 参照");
        assert_eq!(accounts_as_typed(r"a\b\c"), r"a\b\c");
    }
}

/// The patient ids a query names (`patient.id:P0042`, `patient.id:"P 42"`), for the audit
/// trail of a search.
pub fn patients_named(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("patient.id:") {
        rest = &rest[at + "patient.id:".len()..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            quoted.split('"').next().unwrap_or("")
        } else {
            rest.split(|c: char| c.is_whitespace() || c == ')')
                .next()
                .unwrap_or("")
        };
        if !value.is_empty() && !found.iter().any(|f| f == value) {
            found.push(value.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod audit_tests {
    use super::*;

    #[test]
    fn deep_nesting_and_partial_ids_are_refused_before_parsing() {
        let id = "5092dd0212c7cff6417fe2f6d42556f5";
        for fine in [
            format!("event.id:{id}"),
            format!(
                "(event.id:{id} OR event.id:{}) AND NOT user.name:x",
                id.to_uppercase()
            ),
            format!("event.id:\"{id}\""),
            format!("-event.id:{id} \"event.id:x\" message:event.id:x"),
            "NOT NOT tanaka".into(),
        ] {
            assert_eq!(refused(&fine), None, "{fine}");
        }
        for partial in [
            format!("event.id:{}", &id[..16]),
            format!("event.id:{}*", &id[..31]),
            format!("event.id:{id}~1"),
            format!("event.id:{id}^2"),
            "event.id:>=0".into(),
            format!("event.id:[{id} TO {id}]"),
            "event.id:*".into(),
            format!("event.id:\"{id} {id}\""),
            format!("event.id:{id},{id}"),
        ] {
            let why = refused(&partial).unwrap_or_else(|| panic!("{partial}"));
            assert!(why.contains("one whole id"), "{partial}: {why}");
        }
        let deep = format!("* AND {}x", "NOT ".repeat(600));
        assert!(refused(&deep).unwrap().contains("at most 64"));
        // Side by side is not nested: excluding 100 people is a fine query.
        let many: Vec<String> = (0..100).map(|i| format!("-user.name:u{i}")).collect();
        assert_eq!(refused(&format!("* {}", many.join(" "))), None);
        let groups: Vec<String> = (0..100).map(|i| format!("(x{i})")).collect();
        assert_eq!(refused(&groups.join(" OR ")), None);
        assert!(refused(&format!("{}x", "NOT (".repeat(40))).is_some());
        assert!(refused(&format!("{}x", "-(".repeat(40))).is_some());
        // Phrases: a slop is small, and a sloppy phrase short.
        let long = ["result", "OK"].repeat(20).join(" ");
        assert_eq!(refused(&format!("\"{long}\"")), None);
        assert_eq!(refused("\"a b c\"~8 AND x"), None);
        for slow in [
            format!("\"{long}\"~2"),
            "\"a b\"~1000".into(),
            "\"a b\"~99999999999".into(),
        ] {
            assert!(refused(&slow).unwrap().contains("at most 8"), "{slow}");
        }
        let brackets = format!("{}x{}", "(".repeat(65), ")".repeat(65));
        assert!(refused(&brackets).is_some());
        assert!(refused(&format!("{}x", "-".repeat(65))).is_some());
    }

    #[test]
    fn the_patients_a_query_names_are_found() {
        assert_eq!(
            patients_named("patient.id:P0042 OR (patient.id:\"P 7\") patient.id:P0042"),
            ["P0042", "P 7"]
        );
    }
}
