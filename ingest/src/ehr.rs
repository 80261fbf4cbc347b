//! EHR audit exports: CSV with a header row (UTF-8 with or without BOM, or Shift_JIS/CP932) and
//! JSON lines. Both name their fields freely, so each normalized field has a list of names it
//! goes by (English and the usual Japanese headers), which the config can extend; operation
//! words (`参照`, `印刷`, `VIEW_CHART`) map to the normalized actions the same way.

pub mod atna;
pub mod csv;
pub mod fhir;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use store::{Event, Outcome};

use crate::config::{EhrConfig, Invalid, parse_zone};
use crate::error::Unreadable;
use crate::normalize;

/// The normalized fields an EHR export can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Timestamp,
    /// A date alone, joined with [`Field::Time`] (`日付` + `時刻`).
    Date,
    Time,
    User,
    UserName,
    Role,
    Host,
    Ip,
    Patient,
    Action,
    Count,
    Outcome,
    Category,
    RecordId,
    Site,
    Message,
}

/// Every field, its config key, and the names it goes by (compared without case).
const FIELDS: &[(Field, &str, &[&str])] = &[
    (
        Field::Timestamp,
        "timestamp",
        &[
            "timestamp",
            "@timestamp",
            "datetime",
            "date_time",
            "event_time",
            "日時",
            "日付時刻",
            "操作日時",
            "アクセス日時",
            "記録日時",
            "発生日時",
            "タイムスタンプ",
        ],
    ),
    (
        Field::Date,
        "date",
        &[
            "date",
            "event_date",
            "日付",
            "操作日",
            "年月日",
            "アクセス日",
            "記録日",
            "発生日",
        ],
    ),
    (
        Field::Time,
        "time",
        &[
            "time",
            "event_time_of_day",
            "時刻",
            "時間",
            "操作時刻",
            "アクセス時刻",
            "記録時刻",
            "発生時刻",
        ],
    ),
    (
        Field::User,
        "user",
        &[
            "user",
            "user.name",
            "user_id",
            "userid",
            "login",
            "login_id",
            "account",
            "staff_id",
            "operator",
            "利用者id",
            "利用者ｉｄ",
            "ユーザーid",
            "ユーザid",
            "職員id",
            "職員番号",
            "操作者id",
            "ログインid",
        ],
    ),
    (
        Field::UserName,
        "user_name",
        &[
            "user_name",
            "username",
            "user.full_name",
            "full_name",
            "利用者名",
            "ユーザー名",
            "職員名",
            "操作者名",
            "氏名",
        ],
    ),
    (
        Field::Role,
        "role",
        &[
            "role",
            "roles",
            "user.roles",
            "job",
            "profession",
            "職種",
            "役割",
            "権限",
            "ロール",
        ],
    ),
    (
        Field::Host,
        "host",
        &[
            "host",
            "host.name",
            "hostname",
            "terminal",
            "workstation",
            "端末",
            "端末名",
            "端末id",
            "ホスト名",
            "pc名",
        ],
    ),
    (
        Field::Ip,
        "ip",
        &[
            "ip",
            "source.ip",
            "ip_address",
            "ipaddress",
            "client_ip",
            "src_ip",
            "ipアドレス",
            "ｉｐアドレス",
            "接続元ip",
        ],
    ),
    (
        Field::Patient,
        "patient",
        &[
            "patient",
            "patient.id",
            "patient_id",
            "patientid",
            "mrn",
            "患者id",
            "患者番号",
            "カルテ番号",
            "患者ｉｄ",
        ],
    ),
    (
        Field::Action,
        "action",
        &[
            "action",
            "event.action",
            "operation",
            "activity",
            "event",
            "操作",
            "操作内容",
            "処理",
            "処理内容",
            "機能",
        ],
    ),
    (
        Field::Count,
        "count",
        &[
            "count",
            "record.count",
            "records",
            "record_count",
            "rows",
            "件数",
            "出力件数",
            "対象件数",
        ],
    ),
    (
        Field::Outcome,
        "outcome",
        &[
            "outcome",
            "event.outcome",
            "result",
            "status",
            "結果",
            "処理結果",
            "成否",
        ],
    ),
    (
        Field::Category,
        "category",
        &[
            "category",
            "record.category",
            "record_type",
            "resource",
            "data_type",
            "種別",
            "データ種別",
            "記録種別",
            "対象",
            "対象データ",
            "画面",
        ],
    ),
    (
        Field::RecordId,
        "record_id",
        &[
            "record_id",
            "row_id",
            "seq",
            "sequence",
            "lineid",
            "log_id",
            "no",
            "連番",
            "通番",
            "ログid",
            "ログ番号",
        ],
    ),
    (
        Field::Site,
        "site",
        &["site", "facility", "施設", "拠点", "施設名"],
    ),
    (
        Field::Message,
        "message",
        &[
            "message",
            "content",
            "detail",
            "details",
            "description",
            "内容",
            "詳細",
            "備考",
            "メッセージ",
        ],
    ),
];

/// Operation words and their normalized actions; the first whose word appears in the value wins.
const ACTIONS: &[(&str, &str)] = &[
    ("ログイン失敗", "login_failed"),
    ("認証失敗", "login_failed"),
    ("ログアウト", "logout"),
    ("ログオフ", "logout"),
    ("ログイン", "login"),
    ("ログオン", "login"),
    ("緊急", "record.emergency_access"),
    ("ブレークグラス", "record.emergency_access"),
    ("エクスポート", "record.export"),
    ("ダウンロード", "record.export"),
    ("出力", "record.export"),
    ("印刷", "record.print"),
    ("削除", "record.delete"),
    ("取消", "record.update"),
    ("取り消し", "record.update"),
    ("キャンセル", "record.update"),
    ("更新", "record.update"),
    ("編集", "record.update"),
    ("修正", "record.update"),
    ("登録", "record.update"),
    ("記載", "record.update"),
    ("入力", "record.update"),
    ("新規", "record.update"),
    ("参照", "record.view"),
    ("閲覧", "record.view"),
    ("表示", "record.view"),
    ("検索", "record.view"),
];

/// The actions a mapping may name: the normalized vocabulary.
pub use store::ACTIONS as VOCABULARY;

/// Record kinds and words that say them.
const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "demographics",
        &[
            "患者基本",
            "基本情報",
            "患者情報",
            "患者属性",
            "demograph",
            "patient info",
            "profile",
        ],
    ),
    (
        "clinical_notes",
        &[
            "カルテ",
            "診療録",
            "経過",
            "記事",
            "所見",
            "サマリ",
            "clinical",
            "note",
            "chart",
            "progress",
        ],
    ),
    (
        "prescriptions",
        &["処方", "薬", "prescri", "medication", "rx"],
    ),
    ("appointments", &["予約", "appoint", "schedul"]),
    (
        "billing",
        &[
            "会計",
            "請求",
            "レセプト",
            "billing",
            "payment",
            "invoice",
            "claim",
        ],
    ),
];

/// Field names and action words, checked.
#[derive(Debug, Clone)]
pub struct EhrMapping {
    names: BTreeMap<Field, Vec<String>>,
    /// Operation word, its action and, when the mapping says one, its record kind.
    actions: Vec<(String, String, Option<String>)>,
    pub zone: Tz,
}

impl Default for EhrMapping {
    fn default() -> Self {
        EhrMapping::new(&EhrConfig::default()).expect("defaults are valid")
    }
}

impl EhrMapping {
    pub fn new(config: &EhrConfig) -> Result<EhrMapping, Invalid> {
        let zone = parse_zone(
            "timezone",
            config
                .timezone
                .as_deref()
                .unwrap_or(crate::config::DEFAULT_ZONE),
        )?;
        let mut names = BTreeMap::new();
        for (field, key, builtin) in FIELDS {
            let mut list: Vec<String> = config
                .columns
                .get(*key)
                .into_iter()
                .flatten()
                .map(|n| n.trim().to_lowercase())
                .collect();
            list.extend(builtin.iter().map(|n| n.to_lowercase()));
            names.insert(*field, list);
        }
        if let Some(unknown) = config
            .columns
            .keys()
            .find(|k| !FIELDS.iter().any(|(_, key, _)| key == k))
        {
            let known: Vec<&str> = FIELDS.iter().map(|(_, k, _)| *k).collect();
            return Err((
                format!("columns.{unknown}"),
                format!("one of {}", known.join(", ")),
            ));
        }
        let mut actions = Vec::new();
        for (word, value) in &config.actions {
            let (action, kind) = match value.split_once(':') {
                Some((a, k)) => (a.trim(), Some(k.trim())),
                None => (value.trim(), None),
            };
            let known_kind = kind.is_none_or(|k| CATEGORIES.iter().any(|(c, _)| *c == k));
            if !VOCABULARY.contains(&action) || !known_kind {
                let kinds: Vec<&str> = CATEGORIES.iter().map(|(c, _)| *c).collect();
                return Err((
                    format!("actions.\"{word}\""),
                    format!(
                        "one of {}, optionally followed by `:` and a record kind ({})",
                        VOCABULARY.join(", "),
                        kinds.join(", ")
                    ),
                ));
            }
            actions.push((
                word.to_lowercase(),
                action.to_owned(),
                kind.map(str::to_owned),
            ));
        }
        actions.extend(
            ACTIONS
                .iter()
                .map(|(w, a)| ((*w).to_owned(), (*a).to_owned(), None)),
        );
        Ok(EhrMapping {
            names,
            actions,
            zone,
        })
    }

    /// Which field a column header or JSON key is, if any.
    pub fn field_of(&self, name: &str) -> Option<Field> {
        let name = name.trim().trim_start_matches('\u{feff}').to_lowercase();
        self.names
            .iter()
            .find(|(_, names)| names.contains(&name))
            .map(|(f, _)| *f)
    }

    /// The names a field goes by, for error messages.
    pub fn names_of(&self, field: Field) -> String {
        self.names[&field]
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn action(&self, word: &str, outcome: Outcome) -> String {
        let lower = word.to_lowercase();
        if let Some((_, action, _)) = self
            .actions
            .iter()
            .find(|(w, _, _)| lower.contains(w.as_str()))
        {
            if action == "login" && outcome == Outcome::Failure {
                return "login_failed".to_owned();
            }
            return action.clone();
        }
        normalize::action(word, outcome).to_owned()
    }

    /// The record kind an operation word (`予約参照`, `処方登録`) or a message names, when the
    /// export has no kind column: the mapping's own `action:kind` first, then the kind words.
    pub fn kind_in(&self, text: &str) -> Option<String> {
        let lower = text.to_lowercase();
        self.actions
            .iter()
            .find(|(w, _, _)| lower.contains(w.as_str()))
            .and_then(|(_, _, kind)| kind.clone())
            .or_else(|| known_category(text).map(str::to_owned))
    }

    /// Builds an event from whatever fields the record has. Fails without a readable time.
    pub fn event(
        &self,
        get: &dyn Fn(Field) -> Option<String>,
        source_key: &str,
        dataset: &str,
        original: String,
        ingested: DateTime<Utc>,
    ) -> Result<Event, Unreadable> {
        let mut event = Event::new(source_key, dataset, original, ingested);
        // One date-time field, or a date and a time in two (either alone may hold both).
        let raw_time = get(Field::Timestamp)
            .or_else(|| match (get(Field::Date), get(Field::Time)) {
                (Some(d), Some(t)) => Some(format!("{d} {t}")),
                (d, t) => d.or(t),
            })
            .ok_or_else(|| {
                format!(
                    "no time: the record needs a field named one of {} (or a date and a time: {} + {})",
                    self.names_of(Field::Timestamp),
                    self.names_of(Field::Date),
                    self.names_of(Field::Time)
                )
            })?;
        let (timestamp, assumed) = parse_time(&raw_time, self.zone)
            .ok_or_else(|| format!("timestamp {raw_time:?} is not a date and time this reads (2026/11/24 09:15:02, 2026-11-24T09:15:02+09:00, ...)"))?;
        event.timestamp = timestamp;
        if assumed {
            event.tags.push(ZONE_ASSUMED_TAG.to_owned());
        }
        event.user = get(Field::User);
        event.roles = get(Field::Role)
            .map(|r| {
                r.split(['|', ';', '、', '/'])
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        event.host = get(Field::Host);
        event.source_ip = get(Field::Ip).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
        event.patient = get(Field::Patient);
        event.site = get(Field::Site);
        event.record_count = get(Field::Count).and_then(|c| c.replace(',', "").trim().parse().ok());
        event.outcome = get(Field::Outcome).map_or(Outcome::Unknown, |o| outcome(&o));
        if let Some(code) = get(Field::Action) {
            event.action = self.action(&code, event.outcome);
            if event.action == "login_failed" {
                event.outcome = Outcome::Failure;
            }
            event.code = Some(code);
        }
        let message = get(Field::Message);
        if let Some(c) = get(Field::Category) {
            event.category = Some(category(&c));
            event.labels.insert("record.category_original".into(), c);
        } else if event.action.starts_with("record.") {
            // No kind column: the kind is part of the operation word (`予約参照`), or, for
            // JSON lines, said in the message.
            event.category = event
                .code
                .as_deref()
                .and_then(|code| self.kind_in(code))
                .or_else(|| message.as_deref().and_then(|m| self.kind_in(m)));
        }
        if let Some(name) = get(Field::UserName) {
            event.labels.insert("user.full_name".into(), name);
        }
        if let Some(id) = get(Field::RecordId) {
            event.labels.insert("record.id".into(), id);
        }
        event.message = summary(&event, message);
        Ok(event)
    }
}

/// `参照` → `record.view` etc. are actions; this is the record kind.
pub fn category(word: &str) -> String {
    known_category(word).map_or_else(|| word.to_lowercase().trim().to_owned(), str::to_owned)
}

/// The record kind a word names, if it names one of the known kinds.
fn known_category(word: &str) -> Option<&'static str> {
    let lower = word.to_lowercase();
    CATEGORIES
        .iter()
        .find(|(_, words)| words.iter().any(|w| lower.contains(w)))
        .map(|(c, _)| *c)
}

pub fn outcome(word: &str) -> Outcome {
    let w = word.trim();
    if ["成功", "正常", "完了", "許可"]
        .iter()
        .any(|s| w.contains(s))
    {
        return Outcome::Success;
    }
    if ["失敗", "エラー", "異常", "拒否", "不可", "ng", "NG"]
        .iter()
        .any(|s| w.contains(s))
    {
        return Outcome::Failure;
    }
    normalize::outcome(w)
}

/// Date-time layouts seen in exports, tried in order. Times without a zone are in `zone`.
const LOCAL_LAYOUTS: &[&str] = &[
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y年%m月%d日 %H時%M分%S秒",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d %H%M%S",
    "%Y%m%d%H%M%S",
];

pub fn parse_local_time(value: &str, zone: Tz) -> Option<DateTime<Utc>> {
    parse_time(value, zone).map(|(t, _)| t)
}

/// Tag of an event whose time had no zone and was read in the source's.
pub const ZONE_ASSUMED_TAG: &str = "timezone_assumed";

/// A time with its zone, or a local one read in `zone`; true when the zone was assumed.
pub fn parse_time(value: &str, zone: Tz) -> Option<(DateTime<Utc>, bool)> {
    let value = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some((t.with_timezone(&Utc), false));
    }
    if let Ok(t) = DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some((t.with_timezone(&Utc), false));
    }
    let local = LOCAL_LAYOUTS
        .iter()
        .find_map(|layout| NaiveDateTime::parse_from_str(value, layout).ok())
        .or_else(|| compact_millis(value))?;
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| (t.with_timezone(&Utc), true))
}

/// `20171223-22:15:35:11`: milliseconds written as a number without padding (11 ms).
fn compact_millis(value: &str) -> Option<NaiveDateTime> {
    let (head, millis) = value.rsplit_once(':')?;
    let millis: u32 = millis
        .parse()
        .ok()
        .filter(|m| *m < 1000 && millis.len() <= 3)?;
    let t = NaiveDateTime::parse_from_str(head, "%Y%m%d-%H:%M:%S").ok()?;
    t.checked_add_signed(chrono::Duration::milliseconds(i64::from(millis)))
}

fn summary(event: &Event, message: Option<String>) -> String {
    use std::fmt::Write;
    let mut s = event.code.clone().unwrap_or_else(|| event.action.clone());
    if let Some(u) = &event.user {
        write!(s, " user {u}").ok();
    }
    if let Some(n) = event.labels.get("user.full_name") {
        write!(s, " ({n})").ok();
    }
    if let Some(p) = &event.patient {
        write!(s, " patient {p}").ok();
    }
    if let Some(c) = event.labels.get("record.category_original") {
        write!(s, " {c}").ok();
    }
    if let Some(n) = event.record_count {
        write!(s, " {n} records").ok();
    }
    if let Some(h) = &event.host {
        write!(s, " on {h}").ok();
    }
    if let Some(ip) = &event.source_ip {
        write!(s, " from {ip}").ok();
    }
    if let Some(m) = message {
        write!(s, ": {m}").ok();
    }
    s
}

/// A JSON-lines record: keys looked up through the same names as CSV headers.
pub fn jsonl_event(
    mapping: &EhrMapping,
    value: &serde_json::Value,
    source_key: &str,
    original: String,
    ingested: DateTime<Utc>,
) -> Result<Event, Unreadable> {
    let obj = value.as_object().ok_or("not a JSON object")?;
    let mut fields: BTreeMap<Field, String> = BTreeMap::new();
    for (key, v) in obj {
        let Some(field) = mapping.field_of(key) else {
            continue;
        };
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("|"),
            _ => continue,
        };
        if !text.trim().is_empty() {
            fields.entry(field).or_insert(text);
        }
    }
    mapping.event(
        &|f| fields.get(&f).cloned(),
        source_key,
        "ehr.audit",
        original,
        ingested,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_layouts_in_the_clinic_zone() {
        let tokyo = chrono_tz::Asia::Tokyo;
        let want = "2026-11-24T00:15:02Z";
        for v in [
            "2026/11/24 09:15:02",
            "2026-11-24 09:15:02",
            "2026-11-24T09:15:02+09:00",
            "2026年11月24日 09:15:02",
        ] {
            assert_eq!(
                parse_local_time(v, tokyo)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                want,
                "{v}"
            );
        }
        assert_eq!(
            parse_local_time("2026/11/24 09:15", tokyo)
                .unwrap()
                .to_rfc3339(),
            "2026-11-24T00:15:00+00:00"
        );
        assert_eq!(
            parse_local_time("20171223-22:15:29:606", chrono_tz::UTC)
                .unwrap()
                .to_rfc3339(),
            "2017-12-23T22:15:29.606+00:00"
        );
        assert_eq!(
            parse_local_time("20171223-22:15:35:11", chrono_tz::UTC)
                .unwrap()
                .to_rfc3339(),
            "2017-12-23T22:15:35.011+00:00"
        );
        assert!(parse_local_time("24/11/2026", tokyo).is_none());
    }

    #[test]
    fn words_map_to_actions_and_categories() {
        let m = EhrMapping::default();
        assert_eq!(m.action("カルテ参照", Outcome::Success), "record.view");
        assert_eq!(m.action("CSV出力", Outcome::Success), "record.export");
        assert_eq!(m.action("ログイン", Outcome::Failure), "login_failed");
        assert_eq!(m.action("処方印刷", Outcome::Success), "record.print");
        assert_eq!(m.action("VIEW_CHART", Outcome::Success), "record.view");
        assert_eq!(category("処方箋"), "prescriptions");
        assert_eq!(category("患者基本情報"), "demographics");
        assert_eq!(category("カルテ記事"), "clinical_notes");
        assert_eq!(outcome("失敗"), Outcome::Failure);
        assert_eq!(m.field_of("利用者ID"), Some(Field::User));
        assert_eq!(m.field_of("\u{feff}日時"), Some(Field::Timestamp));
    }

    #[test]
    fn config_extends_and_is_checked() {
        let mut config = EhrConfig::default();
        config
            .columns
            .insert("user".into(), vec!["担当者コード".into()]);
        config
            .actions
            .insert("カルテ閲覧".into(), "record.view".into());
        let m = EhrMapping::new(&config).unwrap();
        assert_eq!(m.field_of("担当者コード"), Some(Field::User));
        config.actions.insert("謎".into(), "record.peek".into());
        let (key, expected) = EhrMapping::new(&config).unwrap_err();
        assert_eq!(key, "actions.\"謎\"");
        assert!(expected.contains("record.view"));
        let mut config = EhrConfig::default();
        config.columns.insert("patinet".into(), vec!["x".into()]);
        assert_eq!(EhrMapping::new(&config).unwrap_err().0, "columns.patinet");
    }
}
