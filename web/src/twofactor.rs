//! The second factor of a sign-in: a time-based one-time code (RFC 6238, what authenticator
//! apps show), set up by each person for their own account, with ten recovery codes shown
//! once; a code is accepted once (replays refused). An administrator can turn it off for an
//! account whose phone is lost.

use rusqlite::{OptionalExtension, params};
use totp_rs::{Builder, Secret, Totp};

use crate::accounts::{AccountDb, AccountError, digest, random_token};

/// Recovery codes made when the second factor is turned on.
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &str, account: &str) -> Result<Totp, AccountError> {
    let secret = Secret::try_from_base32(secret)
        .map_err(|e| AccountError::Invalid(format!("stored second-factor secret: {e}")))?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("mimamori".to_owned()))
        .build()
        .map_err(|e| AccountError::Invalid(format!("second factor: {e}")))
}

/// What turning the second factor on shows: the secret to type into an app and its
/// `otpauth://` address.
pub struct Enrolment {
    pub secret: String,
    pub url: String,
}

impl AccountDb {
    /// Whether `name` signs in with a second factor.
    pub fn totp_enabled(&self, name: &str) -> bool {
        self.conn()
            .query_row(
                "SELECT totp_secret IS NOT NULL FROM users WHERE name = ?1",
                params![name],
                |r| r.get::<_, bool>(0),
            )
            .unwrap_or(false)
    }

    /// A new secret for `name`, kept aside until a code from it confirms it.
    pub fn totp_start(&self, name: &str) -> Result<Enrolment, AccountError> {
        let secret = Secret::generate().to_base32();
        let url = totp(&secret, name)?
            .to_url()
            .map_err(|e| AccountError::Invalid(e.to_string()))?;
        let n = self
            .conn()
            .execute(
                "UPDATE users SET totp_pending = ?2 WHERE name = ?1",
                params![name, secret],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        Ok(Enrolment { secret, url })
    }

    /// Turns the second factor on when `code` comes from the secret set aside; the recovery
    /// codes are returned once and kept as digests.
    pub fn totp_confirm(&self, name: &str, code: &str) -> Result<Vec<String>, AccountError> {
        let pending: Option<String> = self
            .conn()
            .query_row(
                "SELECT totp_pending FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?
            .flatten();
        let Some(secret) = pending else {
            return Err(AccountError::Invalid(
                "start the set-up first (a new secret)".into(),
            ));
        };
        let Some(step) = totp(&secret, name)?.check_current(code.trim()) else {
            return Err(AccountError::Invalid(
                "that code does not match: check the phone's clock and type the current code"
                    .into(),
            ));
        };
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| random_token()[..10].to_lowercase())
            .collect();
        let digests: Vec<String> = codes.iter().map(|c| digest(c)).collect();
        self.conn()
            .execute(
                "UPDATE users SET totp_secret = ?2, totp_pending = NULL, totp_step = ?3, recovery = ?4 WHERE name = ?1",
                params![name, secret, step as i64, serde_json::to_string(&digests).unwrap_or_default()],
            )
            .map_err(self.err())?;
        Ok(codes)
    }

    /// Turns the second factor off for `name` (their own choice, or an administrator's for a
    /// lost phone).
    pub fn totp_disable(&self, name: &str) -> Result<(), AccountError> {
        let n = self
            .conn()
            .execute(
                "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_step = NULL, recovery = NULL WHERE name = ?1",
                params![name],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(AccountError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Whether `code` is `name`'s current one-time code (not used before) or one of their
    /// recovery codes (used up by this).
    pub fn totp_check(&self, name: &str, code: &str) -> bool {
        let code = code.trim();
        let conn = self.conn();
        let row: Option<(Option<String>, Option<i64>, Option<String>)> = conn
            .query_row(
                "SELECT totp_secret, totp_step, recovery FROM users WHERE name = ?1",
                params![name],
                |r| <(Option<String>, Option<i64>, Option<String>)>::try_from(r),
            )
            .optional()
            .ok()
            .flatten();
        let Some((Some(secret), last, recovery)) = row else {
            return false;
        };
        if let Some(step) = totp(&secret, name)
            .ok()
            .and_then(|t| t.check_current(code))
            .map(|s| s as i64)
        {
            // A code is good once: a replay within its half-minute is refused.
            if last.is_some_and(|l| step <= l) {
                return false;
            }
            return conn
                .execute(
                    "UPDATE users SET totp_step = ?2 WHERE name = ?1",
                    params![name, step],
                )
                .is_ok();
        }
        let mut digests: Vec<String> = recovery
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_default();
        let wanted = digest(&code.to_lowercase());
        let Some(at) = digests.iter().position(|d| *d == wanted) else {
            return false;
        };
        digests.remove(at);
        conn.execute(
            "UPDATE users SET recovery = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(&digests).unwrap_or_default()],
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Role;

    #[test]
    fn a_second_factor_is_confirmed_replays_are_refused_and_recovery_codes_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = AccountDb::open(&dir.path().join("accounts.db")).unwrap();
        db.add("tanaka", Role::Auditor, "long-enough-pw", "t")
            .unwrap();
        assert!(!db.totp_enabled("tanaka"));
        let enrolment = db.totp_start("tanaka").unwrap();
        assert!(
            enrolment.url.starts_with("otpauth://totp/"),
            "{}",
            enrolment.url
        );
        assert!(db.totp_confirm("tanaka", "000000").is_err() || !db.totp_enabled("tanaka"));
        let code = totp(&enrolment.secret, "tanaka")
            .unwrap()
            .generate_current()
            .to_string();
        let recovery = db.totp_confirm("tanaka", &code).unwrap();
        assert_eq!(recovery.len(), RECOVERY_CODES);
        assert!(db.totp_enabled("tanaka"));
        assert!(
            !db.totp_check("tanaka", &code),
            "the confirming code is used"
        );
        assert!(!db.totp_check("tanaka", "123456x"));
        assert!(db.totp_check("tanaka", &recovery[0]));
        assert!(
            !db.totp_check("tanaka", &recovery[0]),
            "a recovery code works once"
        );
        db.totp_disable("tanaka").unwrap();
        assert!(!db.totp_enabled("tanaka"));
    }
}
