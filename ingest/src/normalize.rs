//! Access fields from `key=value` text and structured data: `user=tanaka action=VIEW_CHART
//! patient=P123 src=10.1.2.3 result=OK` is what EHR and appliance logs commonly say. Known keys
//! (and their usual aliases) fill the event's fields; the action word is mapped to the small
//! normalized vocabulary.

use store::{Event, Outcome};

/// At most this many pairs are read from one message.
const MAX_PAIRS: usize = 64;

#[derive(Default)]
pub struct KeyValues {
    pairs: Vec<(String, String)>,
}

impl KeyValues {
    pub fn push(&mut self, key: &str, value: &str) {
        if self.pairs.len() < MAX_PAIRS {
            self.pairs
                .push((key.to_ascii_lowercase(), value.to_owned()));
        }
    }

    /// Reads `key=value` and `key="quoted value"` pairs from free text.
    pub fn scan_text(&mut self, text: &str) {
        let mut rest = text;
        while self.pairs.len() < MAX_PAIRS {
            let Some(eq) = rest.find('=') else { break };
            let key_start = rest[..eq]
                .char_indices()
                .rev()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let key = &rest[key_start..eq];
            let after = &rest[eq + 1..];
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                },
                None => {
                    let end = after
                        .find(|c: char| c.is_whitespace() || c == ',' || c == ';')
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            if !key.is_empty() && !value.is_empty() {
                self.push(key, value);
            }
            rest = next;
        }
    }

    fn first(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|k| self.pairs.iter().find(|(key, _)| key == k))
            .map(|(_, v)| v.as_str())
    }
}

const USER_KEYS: &[&str] = &[
    "user",
    "user.name",
    "usr",
    "userid",
    "user_id",
    "username",
    "account",
    "login",
];
const PATIENT_KEYS: &[&str] = &[
    "patient",
    "patient.id",
    "patient_id",
    "patientid",
    "pt",
    "mrn",
];
const ACTION_KEYS: &[&str] = &["action", "event.action", "act", "operation", "op"];
const IP_KEYS: &[&str] = &[
    "src",
    "source.ip",
    "src_ip",
    "srcip",
    "client",
    "client_ip",
    "ip",
    "rhost",
];
const OUTCOME_KEYS: &[&str] = &["result", "outcome", "event.outcome", "status"];
const COUNT_KEYS: &[&str] = &["count", "records", "record.count", "record_count", "rows"];
const SITE_KEYS: &[&str] = &["site"];
const ROLE_KEYS: &[&str] = &["role", "roles", "user.roles", "dept"];

pub fn apply_key_values(event: &mut Event, kv: &KeyValues) {
    if let Some(v) = kv.first(USER_KEYS) {
        event.user = Some(v.to_owned());
    }
    if let Some(v) = kv.first(PATIENT_KEYS) {
        event.patient = Some(v.to_owned());
    }
    if let Some(v) = kv
        .first(IP_KEYS)
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
    {
        event.source_ip = Some(v.to_owned());
    }
    if let Some(v) = kv.first(SITE_KEYS) {
        event.site = Some(v.to_owned());
    }
    if let Some(v) = kv.first(ROLE_KEYS) {
        event.roles = vec![v.to_owned()];
    }
    if let Some(n) = kv.first(COUNT_KEYS).and_then(|v| v.parse().ok()) {
        event.record_count = Some(n);
    }
    if let Some(v) = kv.first(OUTCOME_KEYS) {
        event.outcome = outcome(v);
    }
    if let Some(code) = kv.first(ACTION_KEYS) {
        event.action = action(code, event.outcome).to_owned();
        event.code = Some(code.to_owned());
    }
}

pub(crate) fn outcome(word: &str) -> Outcome {
    match word.to_ascii_lowercase().as_str() {
        "ok" | "success" | "succeeded" | "allowed" | "allow" | "accept" | "accepted" | "pass"
        | "true" | "0" => Outcome::Success,
        "denied" | "deny" | "fail" | "failed" | "failure" | "error" | "reject" | "rejected"
        | "blocked" | "false" => Outcome::Failure,
        _ => Outcome::Unknown,
    }
}

/// Maps a source's action word to the normalized vocabulary.
pub fn action(code: &str, outcome: Outcome) -> &'static str {
    let word = code.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| word.contains(n));
    if has(&["logout", "logoff", "log_out", "sign_out", "signout"]) {
        "logout"
    } else if has(&[
        "login",
        "logon",
        "log_in",
        "sign_in",
        "signin",
        "authenticat",
    ]) {
        if outcome == Outcome::Failure {
            "login_failed"
        } else {
            "login"
        }
    } else if has(&["export", "download"]) {
        "record.export"
    } else if has(&["print"]) {
        "record.print"
    } else if has(&["delete", "remove"]) {
        "record.delete"
    } else if has(&["break_glass", "breakglass", "emergency"]) {
        "record.emergency_access"
    } else if has(&[
        "edit", "update", "write", "modify", "order", "create", "insert", "sign",
    ]) {
        "record.update"
    } else if has(&[
        "view", "read", "open", "search", "query", "lookup", "access",
    ]) {
        "record.view"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_from_text_with_quotes_and_noise() {
        let mut kv = KeyValues::default();
        kv.scan_text(r#"user=tanaka action=view note="two words" x= =y patient=P1, src=10.0.0.9;"#);
        assert_eq!(kv.first(USER_KEYS), Some("tanaka"));
        assert_eq!(kv.first(&["note"]), Some("two words"));
        assert_eq!(kv.first(PATIENT_KEYS), Some("P1"));
        assert_eq!(kv.first(IP_KEYS), Some("10.0.0.9"));
    }

    #[test]
    fn actions_map_to_the_vocabulary() {
        let cases = [
            ("VIEW_CHART", Outcome::Success, "record.view"),
            ("EDIT_NOTE", Outcome::Success, "record.update"),
            ("ORDER_MED", Outcome::Success, "record.update"),
            ("PRINT", Outcome::Success, "record.print"),
            ("EXPORT", Outcome::Success, "record.export"),
            ("LOGIN", Outcome::Failure, "login_failed"),
            ("LOGIN", Outcome::Success, "login"),
            ("LOGOUT", Outcome::Success, "logout"),
            ("BREAK_GLASS", Outcome::Success, "record.emergency_access"),
            ("SEARCH_PT", Outcome::Success, "record.view"),
            ("frobnicate", Outcome::Success, "other"),
        ];
        for (code, outcome, want) in cases {
            assert_eq!(action(code, outcome), want, "{code}");
        }
    }

    #[test]
    fn pair_count_is_bounded() {
        let mut kv = KeyValues::default();
        kv.scan_text(&"k=v ".repeat(10_000));
        assert_eq!(kv.pairs.len(), MAX_PAIRS);
    }
}
