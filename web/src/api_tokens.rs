//! API tokens with scopes, kept in `accounts.db` as their SHA-256 only: created by an
//! administrator in the UI or with `mimamori token add`, shown once, revocable. They replace
//! the plain-text token lists of `[http]` (still read, with a deprecation warning).

use chrono::Utc;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::accounts::{AccountDb, AccountError, check_name, digest, random_token};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Scope {
    /// `GET /api/v1/search`.
    Search,
    /// Alerts, deliveries and silences, read.
    AlertsRead,
    /// Alert status changes, silences, rule reloads.
    AlertsWrite,
    /// `POST /api/v1/ingest`.
    Ingest,
}

/// Every scope, in the order forms list them.
pub const SCOPES: [Scope; 4] = [
    Scope::Search,
    Scope::AlertsRead,
    Scope::AlertsWrite,
    Scope::Ingest,
];

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Search => "search",
            Scope::AlertsRead => "alerts:read",
            Scope::AlertsWrite => "alerts:write",
            Scope::Ingest => "ingest",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = AccountError;

    fn from_str(s: &str) -> Result<Scope, AccountError> {
        SCOPES
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                AccountError::Invalid(format!(
                    "a scope is search, alerts:read, alerts:write or ingest, not {s:?}"
                ))
            })
    }
}

/// A token as listed (never its value).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked: bool,
}

/// Prefix of every token (so a leaked one is recognisable, e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "mmr_";

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(',').filter_map(|s| s.parse().ok()).collect()
}

impl AccountDb {
    /// Creates a token named `name` with `scopes`; its value is returned once and kept only as
    /// a digest.
    pub fn add_token(
        &self,
        name: &str,
        scopes: &[Scope],
        by: &str,
    ) -> Result<String, AccountError> {
        check_name(name)?;
        if scopes.is_empty() {
            return Err(AccountError::Invalid(
                "a token needs at least one scope: search, alerts:read, alerts:write, ingest"
                    .into(),
            ));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let token = format!("{TOKEN_PREFIX}{}", random_token());
        let added = self
            .conn()
            .execute(
                "INSERT INTO tokens (name, digest, scopes, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO NOTHING",
                params![name, digest(&token), scopes_text(&scopes), by, Utc::now().to_rfc3339()],
            )
            .map_err(self.err())?;
        if added == 0 {
            return Err(AccountError::TokenExists(name.to_owned()));
        }
        Ok(token)
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AccountError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, scopes, created_by, created_at, last_used_at, revoked FROM tokens ORDER BY name",
            )
            .map_err(self.err())?;
        type Row = (String, String, String, String, Option<String>, bool);
        let rows = stmt
            .query_map([], |r| Row::try_from(r))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, scopes, created_by, created_at, last_used_at, revoked) =
                row.map_err(self.err())?;
            out.push(TokenInfo {
                name,
                scopes: parse_scopes(&scopes),
                created_by,
                created_at,
                last_used_at,
                revoked,
            });
        }
        Ok(out)
    }

    /// Revokes a token: it stops working at once.
    pub fn revoke_token(&self, name: &str) -> Result<(), AccountError> {
        let n = self
            .conn()
            .execute(
                "UPDATE tokens SET revoked = 1 WHERE name = ?1 AND revoked = 0",
                params![name],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(AccountError::TokenNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// The name and scopes of the live token `presented`, if it is one; its last use is noted
    /// (at most once a minute).
    pub fn token(&self, presented: &str) -> Option<(String, Vec<Scope>)> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let conn = self.conn();
        let key = digest(presented);
        let (name, scopes, used): (String, String, Option<String>) = conn
            .query_row(
                "SELECT name, scopes, last_used_at FROM tokens WHERE digest = ?1 AND revoked = 0",
                params![key],
                |r| <(String, String, Option<String>)>::try_from(r),
            )
            .optional()
            .ok()
            .flatten()?;
        let now = Utc::now();
        let stale = used
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .is_none_or(|t| now.signed_duration_since(t) > chrono::Duration::minutes(1));
        if stale {
            let _ = conn.execute(
                "UPDATE tokens SET last_used_at = ?2 WHERE digest = ?1",
                params![key, now.to_rfc3339()],
            );
        }
        Some((name, parse_scopes(&scopes)))
    }

    /// Whether any live token grants `scope` (then that kind of access needs a token even
    /// where it would otherwise be open).
    pub fn any_token_with(&self, scope: Scope) -> bool {
        let pattern = format!("%{}%", scope.as_str());
        self.conn()
            .query_row(
                "SELECT count(*) FROM tokens WHERE revoked = 0 AND scopes LIKE ?1",
                params![pattern],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_shown_once_kept_as_digests_scoped_and_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccountDb::open(&dir.path().join("accounts.db")).unwrap();
        let token = db
            .add_token(
                "soc",
                &[Scope::AlertsRead, Scope::Search, Scope::Search],
                "admin",
            )
            .unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
        assert!(matches!(
            db.add_token("soc", &[Scope::Search], "admin"),
            Err(AccountError::TokenExists(_))
        ));
        assert!(db.add_token("none", &[], "admin").is_err());
        assert_eq!(
            db.token(&token),
            Some(("soc".into(), vec![Scope::Search, Scope::AlertsRead]))
        );
        assert_eq!(db.token("mmr_guess"), None);
        assert!(db.any_token_with(Scope::AlertsRead));
        assert!(!db.any_token_with(Scope::AlertsWrite));
        let stored: String = db
            .conn()
            .query_row(
                "SELECT group_concat(digest || scopes) FROM tokens",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!stored.contains(&token[4..]), "only a digest is kept");
        assert!(db.tokens().unwrap()[0].last_used_at.is_some());
        db.revoke_token("soc").unwrap();
        assert_eq!(db.token(&token), None);
        assert!(db.revoke_token("soc").is_err(), "already revoked");
        assert!("alerts:delete".parse::<Scope>().is_err());
    }
}

#[cfg(test)]
mod first_tests {
    use crate::accounts::AccountDb;

    #[test]
    fn only_one_first_account() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccountDb::open(&dir.path().join("accounts.db")).unwrap();
        db.add_first("a1", "long-enough-pw").unwrap();
        assert!(db.add_first("a2", "long-enough-pw").is_err());
        assert_eq!(db.list().unwrap().len(), 1);
    }
}
