//! Config errors said so that a person can fix them without exposing secrets: where a key
//! is set (for values serde accepted but we do not), and parse errors with secret values hidden.

/// A parse error for people: where and what. In `[[channels]]` and `[[subscribers]]` (any of
/// whose values may be a secret, under a misspelled key too) neither the line nor a quoted
/// value is shown; elsewhere toml's own message, with secret keys' values hidden.
pub(crate) fn parse_error(e: &toml::de::Error, text: &str) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let inline = text.lines().any(|l| {
        let t = l.trim_start();
        ["channels", "subscribers"].iter().any(|k| {
            t.strip_prefix(k)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
    });
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        if Some(i + 1) > line {
            break;
        }
        let t = l.trim();
        if t.starts_with('[') {
            table = t.to_owned();
        }
    }
    let secret_table = ["[[channels", "[channels", "[[subscribers", "[subscribers"]
        .iter()
        .any(|p| table.starts_with(p));
    if !(inline || secret_table) {
        return without_secrets(&e.to_string(), text);
    }
    let mut message = String::new();
    let mut quote = None;
    for c in e.message().chars() {
        match quote {
            Some(q) if c == q => {
                message.push_str("***");
                message.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                message.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    let at = line.map_or(String::new(), |l| format!("line {l}: "));
    format!(
        "{at}{} (values in [[channels]] and [[subscribers]] are not shown: they may be secrets)",
        without_secrets(message.trim(), text)
    )
}

/// `message` with the values of secret keys (passwords, tokens, secrets, webhook URLs) in
/// `text` replaced by `***`: a parse error quotes the line it stopped at, and the log keeps it.
fn without_secrets(message: &str, text: &str) -> String {
    let secret = |key: &str| {
        let key = key.trim().trim_matches('"').to_ascii_lowercase();
        key.contains("password") || key.contains("token") || key.contains("secret") || key == "url"
    };
    let mut out = message.to_owned();
    let mut in_array = false;
    for line in text.lines() {
        let value = match line.split_once('=') {
            Some((key, value)) if secret(key) => {
                in_array = value.contains('[') && !value.contains(']');
                value
            }
            _ if in_array => {
                in_array = !line.contains(']');
                line
            }
            _ => continue,
        };
        let pieces = value
            .split(['"', '\'', ',', '[', ']'])
            .map(str::trim)
            .filter(|p| p.len() >= 4);
        for piece in pieces {
            out = out.replace(piece, "***");
        }
    }
    out
}

/// The line where the key at `path` (`http.read_tokens`, `custom_rules[2].window_minutes`) is
/// set, following `[table]` and `[[array]]` headers; else the first line setting a key of the
/// same last name. For messages about values serde accepted but we do not.
pub(crate) fn line_of(text: &str, path: &str) -> Option<usize> {
    let last = path.rsplit('.').next().unwrap_or(path);
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut fallback = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let header = t.split('#').next().unwrap_or("").trim();
        if let Some(name) = header.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let name = name.trim();
            let n = arrays
                .entry(name.to_owned())
                .and_modify(|n| *n += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
            continue;
        }
        if let Some(name) = header.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_owned();
            continue;
        }
        let Some((key, _)) = t.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let full = if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        };
        if full == path {
            return Some(i + 1);
        }
        if fallback.is_none() && key == last {
            fallback = Some(i + 1);
        }
    }
    fallback
}
