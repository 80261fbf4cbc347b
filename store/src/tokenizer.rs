//! Full-text tokenizer for messages in Japanese and English.
//!
//! Latin-script and digit runs become lowercased words (as tantivy's default tokenizer does);
//! runs of CJK characters (kanji, kana, hangul) become overlapping bigrams, as Elasticsearch's
//! `cjk_bigram` does, because Japanese has no spaces: `山田太郎` is indexed as `山田 田太 太郎`, so
//! a search for `山田` finds it and `山田太郎` is a phrase of three bigrams. A CJK run of one
//! character is indexed as that character. No dictionary is needed (lindera's cannot be fetched
//! offline).

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Words longer than this are skipped: a megabyte of base64 is not something anyone searches for
/// by prefix, and it would bloat the term dictionary.
const MAX_WORD_CHARS: usize = 64;

#[derive(Clone, Default)]
pub struct CjkBigramTokenizer;

/// The tokens of one text, made at once.
pub struct TokenList<'a> {
    _text: std::marker::PhantomData<&'a str>,
    tokens: Vec<Token>,
    next: usize,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // hiragana, katakana (incl. ー)
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width katakana
        | 0xAC00..=0xD7AF    // hangul syllables
        | 0x20000..=0x2FA1F  // extensions B-F, compatibility supplement
        | 0x3005 | 0x3006) // 々 〆
}

impl Tokenizer for CjkBigramTokenizer {
    type TokenStream<'a> = TokenList<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TokenList<'a> {
        let mut tokens = Vec::new();
        let mut position = 0usize;
        let mut chars = text.char_indices().peekable();
        while let Some(&(start, c)) = chars.peek() {
            if is_cjk(c) {
                let mut run: Vec<(usize, char)> = Vec::new();
                while let Some(&(i, c)) = chars.peek() {
                    if !is_cjk(c) {
                        break;
                    }
                    run.push((i, c));
                    chars.next();
                }
                let end_of = |k: usize| run[k].0 + run[k].1.len_utf8();
                if run.len() == 1 {
                    push(&mut tokens, text, run[0].0, end_of(0), &mut position);
                } else {
                    for pair in run.windows(2) {
                        let end = pair[1].0 + pair[1].1.len_utf8();
                        push(&mut tokens, text, pair[0].0, end, &mut position);
                    }
                }
            } else if c.is_alphanumeric() {
                let mut end = start;
                let mut num_chars = 0;
                while let Some(&(i, c)) = chars.peek() {
                    if !c.is_alphanumeric() || is_cjk(c) {
                        break;
                    }
                    end = i + c.len_utf8();
                    num_chars += 1;
                    chars.next();
                }
                if num_chars <= MAX_WORD_CHARS {
                    push(&mut tokens, text, start, end, &mut position);
                }
            } else {
                chars.next();
            }
        }
        TokenList {
            _text: std::marker::PhantomData,
            tokens,
            next: 0,
        }
    }
}

/// `event.id`: one token. An id of 32 hex digits (every id mimamori makes) becomes its 16
/// bytes in 22 characters of base64url, which the term dictionary stores in about 70 % of the
/// room the hex takes; anything else stays as typed, lowercased. The same happens to the id in
/// a query, so a search matches the whole id, exactly.
#[derive(Clone, Default)]
pub struct IdTokenizer;

/// What `event.id` is indexed as for the id `id`.
pub fn id_term(id: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = id.trim();
    let hex = |c: u8| (c as char).to_digit(16);
    if id.len() != 32 || !id.bytes().all(|c| hex(c).is_some()) {
        return id.to_lowercase();
    }
    let bytes: Vec<u8> = id
        .as_bytes()
        .chunks(2)
        .map(|pair| (hex(pair[0]).unwrap_or(0) * 16 + hex(pair[1]).unwrap_or(0)) as u8)
        .collect();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The `_id` column's value for the `event.id` term `term` ([`id_term`]): 32 bits of FNV-1a,
/// where a search for an id starts (its candidates are then checked against the log). Part of
/// the index format: it must never change.
pub fn id_key(term: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in term.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash & 0xFFFF_FFFF
}

impl Tokenizer for IdTokenizer {
    type TokenStream<'a> = TokenList<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> TokenList<'a> {
        let term = id_term(text);
        let tokens = if term.is_empty() {
            Vec::new()
        } else {
            vec![Token {
                offset_from: 0,
                offset_to: text.len(),
                position: 0,
                text: term,
                position_length: 1,
            }]
        };
        TokenList {
            _text: std::marker::PhantomData,
            tokens,
            next: 0,
        }
    }
}

fn push(tokens: &mut Vec<Token>, text: &str, from: usize, to: usize, position: &mut usize) {
    tokens.push(Token {
        offset_from: from,
        offset_to: to,
        position: *position,
        text: text[from..to].to_lowercase(),
        position_length: 1,
    });
    *position += 1;
}

impl TokenStream for TokenList<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_22_characters_and_only_the_same_id_matches() {
        let id = "320f3599412a04c807fe0ade5e2b8dd1";
        let term = id_term(id);
        assert_eq!(term.len(), 22);
        assert_eq!(id_term(&id.to_uppercase()), term);
        for other in [
            "320f3599412a04c807fe0ade5e2b8dd0",
            "320f3599412a04c8ffffffffffffffff",
            "320f3599412a04c807fe0ade5e2b8dd",
            "320f3599412a04c807fe0ade5e2b8dd1ff",
        ] {
            assert_ne!(id_term(other), term, "{other}");
        }
        assert_eq!(id_term("00000000000000000000000000000000"), "A".repeat(22));
        assert_eq!(
            id_term("ffffffffffffffffffffffffffffffff"),
            format!("{}w", "_".repeat(21))
        );
        assert_eq!(id_term(" Gap-1 "), "gap-1");
    }
    use proptest::prelude::*;

    fn words(text: &str) -> Vec<String> {
        let mut tokenizer = CjkBigramTokenizer;
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn japanese_becomes_bigrams_and_latin_words() {
        assert_eq!(
            words("山田太郎 カルテ参照 user=Tanaka P123"),
            [
                "山田", "田太", "太郎", "カル", "ルテ", "テ参", "参照", "user", "tanaka", "p123"
            ]
        );
        assert_eq!(words("患者P1を"), ["患者", "p1", "を"]);
        assert_eq!(
            words("ログイン失敗"),
            ["ログ", "グイ", "イン", "ン失", "失敗"]
        );
    }

    #[test]
    fn separators_and_huge_words_make_no_tokens() {
        assert!(words("  --- ::: ").is_empty());
        assert!(words(&"x".repeat(10_000)).is_empty());
        assert_eq!(words("10.0.2.17"), ["10", "0", "2", "17"]);
    }

    proptest! {
        #[test]
        fn offsets_always_slice_the_text(text in "\\PC{0,80}") {
            let mut tokenizer = CjkBigramTokenizer;
            let mut stream = tokenizer.token_stream(&text);
            let mut last_position = None;
            while stream.advance() {
                let token = stream.token();
                prop_assert!(text.get(token.offset_from..token.offset_to).is_some());
                prop_assert!(last_position.is_none_or(|p| token.position == p + 1));
                last_position = Some(token.position);
            }
        }
    }
}
