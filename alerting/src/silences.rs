//! Silences: for a time, alerts that match (rule, user, site; an empty matcher part matches
//! anything) are not sent to any channel. The alerts themselves are still raised, stored and
//! shown; the delivery is recorded as `silenced`. Who set a silence and why is kept.

use chrono::{DateTime, Utc};
use rules::Alert;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::db::{AlertDb, AlertDbError, parse_time};

/// Longest silence: a forgotten one must end by itself.
pub const MAX_SILENCE_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    #[serde(default)]
    pub id: i64,
    /// Rule name; none: any rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Account; none: anyone (compared without case).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default)]
    pub created_by: String,
    /// Why: required.
    pub comment: String,
}

impl Silence {
    pub fn matches(&self, alert: &Alert, at: DateTime<Utc>) -> bool {
        let part = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        at >= self.starts_at
            && at < self.ends_at
            && self.rule.as_ref().is_none_or(|r| *r == alert.rule)
            && part(&self.user, &alert.user)
            && part(&self.site, &alert.site)
    }
}

fn sqlite(db: &AlertDb) -> impl Fn(rusqlite::Error) -> AlertDbError + '_ {
    |source| AlertDbError::Sqlite {
        path: db.path().to_owned(),
        source,
    }
}

/// Stores a silence; it needs a comment, an end after its start, at most
/// [`MAX_SILENCE_DAYS`], a rule (if any) among `rules` and a site (if any) among `sites`.
pub fn add(
    db: &AlertDb,
    silence: &Silence,
    rules: &[String],
    sites: &[String],
) -> Result<Silence, AlertDbError> {
    let invalid = |m: &str| Err(AlertDbError::Invalid(m.into()));
    let parts = [&silence.rule, &silence.user, &silence.site];
    if parts
        .iter()
        .any(|p| p.as_deref().is_some_and(|v| v.contains('*')))
    {
        return invalid("no wildcards: leave a part out (rule, user or site) to match any");
    }
    if let Some(r) = silence
        .rule
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        && !rules.iter().any(|x| x == r)
    {
        return Err(AlertDbError::Invalid(format!(
            "no rule named {r:?}; rules: {}",
            rules.join(", ")
        )));
    }
    if let Some(site) = silence
        .site
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        && !sites.iter().any(|x| x.eq_ignore_ascii_case(site))
    {
        return Err(AlertDbError::Invalid(format!(
            "no site named {site:?}; sites: {}",
            sites.join(", ")
        )));
    }
    if silence.comment.trim().is_empty() {
        return invalid("a silence needs a comment (why alerts are muted)");
    }
    if silence.comment.chars().count() > 1000 || silence.created_by.chars().count() > 200 {
        return invalid("a comment is at most 1000 characters, a name 200");
    }
    if silence.ends_at <= silence.starts_at {
        return invalid("a silence must end after it starts");
    }
    if silence.ends_at - silence.starts_at > chrono::Duration::days(MAX_SILENCE_DAYS) {
        return invalid("a silence lasts at most 90 days");
    }
    let all_empty = [&silence.rule, &silence.user, &silence.site]
        .iter()
        .all(|p| p.as_deref().is_none_or(|v| v.trim().is_empty()));
    if all_empty {
        return invalid(
            "a silence needs at least one of rule, user or site (it would mute every alert)",
        );
    }
    let conn = db.conn();
    let blank = |p: &Option<String>| {
        p.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    conn.execute(
        "INSERT INTO silences (rule, user, site, starts_at, ends_at, created_by, comment, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            blank(&silence.rule),
            blank(&silence.user),
            blank(&silence.site),
            silence.starts_at.to_rfc3339(),
            silence.ends_at.to_rfc3339(),
            silence.created_by,
            silence.comment.trim(),
            Utc::now().to_rfc3339()
        ],
    )
    .map_err(sqlite(db))?;
    let id = conn.last_insert_rowid();
    Ok(list(db, false)?
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| silence.clone()))
}

/// Silences, newest first; `active`: only those not yet ended.
pub fn list(db: &AlertDb, active: bool) -> Result<Vec<Silence>, AlertDbError> {
    let mut stmt = db
        .conn()
        .prepare(
            "SELECT id, rule, user, site, starts_at, ends_at, created_by, comment FROM silences
             WHERE ?1 = 0 OR ends_at > ?2 ORDER BY id DESC LIMIT 1000",
        )
        .map_err(sqlite(db))?;
    let rows = stmt
        .query_map(params![active as i64, Utc::now().to_rfc3339()], |r| {
            Ok(Silence {
                id: r.get(0)?,
                rule: r.get(1)?,
                user: r.get(2)?,
                site: r.get(3)?,
                starts_at: parse_time(r.get(4)?),
                ends_at: parse_time(r.get(5)?),
                created_by: r.get(6)?,
                comment: r.get(7)?,
            })
        })
        .map_err(sqlite(db))?;
    rows.collect::<Result<_, _>>().map_err(sqlite(db))
}

/// Ends a silence now (kept, for the record).
pub fn expire(db: &AlertDb, id: i64) -> Result<(), AlertDbError> {
    let n = db
        .conn()
        .execute(
            "UPDATE silences SET ends_at = ?2 WHERE id = ?1 AND ends_at > ?2",
            params![id, Utc::now().to_rfc3339()],
        )
        .map_err(sqlite(db))?;
    if n == 0 {
        return Err(AlertDbError::Invalid(format!(
            "no active silence with id {id}"
        )));
    }
    Ok(())
}

/// A duration such as `30m`, `2h`, `3d`.
pub fn parse_duration(text: &str) -> Option<chrono::Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let n: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if n <= 0 {
        return None;
    }
    match unit {
        'm' => Some(chrono::Duration::minutes(n)),
        'h' => Some(chrono::Duration::hours(n)),
        'd' => Some(chrono::Duration::days(n)),
        _ => None,
    }
}
