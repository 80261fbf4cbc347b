//! The pages' words: one message catalogue per language (`web/i18n/ja.toml`, `en.toml`, the
//! same keys in both), the language a request gets (the account's choice, else the browser's
//! `Accept-Language`, else Japanese), and times as a clinic reads them
//! (`2026/11/24(火) 22:40`, in the clinic's time zone).

pub use report::lang::{Lang, format_date, format_time};

const JA: &str = include_str!("../../i18n/ja.toml");
const EN: &str = include_str!("../../i18n/en.toml");

/// Both catalogues, parsed once.
pub struct Catalogues {
    ja: minijinja::Value,
    en: minijinja::Value,
    ja_table: toml::Table,
    en_table: toml::Table,
}

impl Catalogues {
    pub fn load() -> Catalogues {
        let parse = |text: &str, name: &str| -> toml::Table {
            toml::from_str(text).unwrap_or_else(|e| panic!("i18n/{name}.toml: {e}"))
        };
        let ja_table = parse(JA, "ja");
        let en_table = parse(EN, "en");
        Catalogues {
            ja: crate::ui::ser(&ja_table),
            en: crate::ui::ser(&en_table),
            ja_table,
            en_table,
        }
    }

    /// The catalogue for templates (`{{ t.search.title }}`).
    pub fn messages(&self, lang: Lang) -> minijinja::Value {
        match lang {
            Lang::Ja => self.ja.clone(),
            Lang::En => self.en.clone(),
        }
    }

    /// One message by its dotted key (`alerts.closed`), for text made outside a template.
    pub fn text(&self, lang: Lang, key: &str) -> String {
        let table = match lang {
            Lang::Ja => &self.ja_table,
            Lang::En => &self.en_table,
        };
        let mut parts = key.split('.');
        let mut value = parts.next().and_then(|p| table.get(p));
        for part in parts {
            value = value.and_then(|v| v.get(part));
        }
        value
            .and_then(|v| v.as_str())
            .map_or_else(|| key.to_owned(), str::to_owned)
    }

    /// Every dotted key of a language's catalogue (the test that both have the same keys).
    pub fn keys(&self, lang: Lang) -> Vec<String> {
        fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) => walk(&key, t, out),
                    _ => out.push(key),
                }
            }
        }
        let mut out = Vec::new();
        walk(
            "",
            match lang {
                Lang::Ja => &self.ja_table,
                Lang::En => &self.en_table,
            },
            &mut out,
        );
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use chrono_tz::Tz;

    #[test]
    fn both_catalogues_have_the_same_keys_and_no_empty_message() {
        let c = Catalogues::load();
        let (ja, en) = (c.keys(Lang::Ja), c.keys(Lang::En));
        let only_ja: Vec<_> = ja.iter().filter(|k| !en.contains(k)).collect();
        let only_en: Vec<_> = en.iter().filter(|k| !ja.contains(k)).collect();
        assert!(
            only_ja.is_empty() && only_en.is_empty(),
            "only in ja: {only_ja:?}; only in en: {only_en:?}"
        );
        assert!(ja.len() > 100, "{} keys", ja.len());
        for key in &ja {
            assert!(
                !c.text(Lang::Ja, key).trim().is_empty(),
                "{key} empty in ja"
            );
            assert!(
                !c.text(Lang::En, key).trim().is_empty(),
                "{key} empty in en"
            );
        }
    }

    #[test]
    fn the_browser_language_picks_the_catalogue_japanese_by_default() {
        assert_eq!(Lang::from_accept_language(None), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("ja-JP,ja;q=0.9")), Lang::Ja);
        assert_eq!(
            Lang::from_accept_language(Some("en-US,en;q=0.9,ja;q=0.8")),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("fr-FR, ja;q=0.5, en;q=0.7")),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language(Some("de-DE")), Lang::Ja);
    }

    #[test]
    fn times_are_in_the_clinic_zone_with_the_weekday() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 13, 40, 0).unwrap();
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(format_time(t, tokyo, Lang::Ja), "2026/11/24(火) 22:40");
        assert_eq!(format_time(t, tokyo, Lang::En), "2026/11/24 (Tue) 22:40");
    }
}
