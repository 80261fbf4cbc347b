//! Editing the staff roster (admin): one person at a time, added, changed or removed. A change
//! is checked with the whole configuration (as a reload would), recorded in the audit trail,
//! written over the roster file atomically, and put in force by reloading the rules. Rows
//! given inline in the config file (`[[roster.staff]]`) are shown but changed only there.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use rules::roster::{self, StaffConfig};
use serde::Deserialize;

use crate::AppState;
use crate::ui::audit::{self, Entry};
use crate::ui::pages::blocking;
use crate::ui::session::{AdminRole, Page, Posted, Viewer, ui_of};
use crate::ui::{PageError, RosterFile};

/// Longest value of one field.
const MAX_FIELD_CHARS: usize = 200;
/// Most people a roster edited here may have.
const MAX_ROWS: usize = 10_000;

/// The roster file as it is now: its rows (none when it does not exist yet) and a version
/// that a form carries, so that a change made meanwhile by someone else is not overwritten.
pub(crate) struct Current {
    pub rows: Vec<StaffConfig>,
    pub version: String,
}

/// The roster file as it is now (not found: the roster is not editable here).
pub(crate) async fn read_current(state: &Arc<AppState>) -> Result<Current, PageError> {
    let s = state.clone();
    blocking(move || current(ui_of(&s)?.roster.as_ref().ok_or(PageError::NotFound)?)).await
}

fn current(file: &RosterFile) -> Result<Current, PageError> {
    let text = match std::fs::read(&file.path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(PageError::Bad(format!(
                "名簿ファイルを読めません / The roster file cannot be read: {}: {e}",
                file.path.display()
            )));
        }
    };
    let rows = if text.is_empty() {
        Vec::new()
    } else {
        roster::read(&file.path)
            .map_err(|(key, why)| PageError::Bad(format!("{key}: {why}")))?
            .into_iter()
            .map(|(_, row)| row)
            .collect()
    };
    Ok(Current {
        rows,
        version: crate::accounts::digest(&String::from_utf8_lossy(&text)),
    })
}

#[derive(Debug, Deserialize)]
pub struct Wanted {
    #[serde(default)]
    id: String,
}

/// The form for one person: `?id=` an existing row, or an empty one to add.
pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AdminRole>,
    Query(wanted): Query<Wanted>,
) -> Result<Response, PageError> {
    // (A person's own patient id is shown only while the trail of changes can be kept.)
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    let _edit = ui.roster_lock.lock().await;
    let now = read_current(&state).await?;
    let row = if wanted.id.is_empty() {
        None
    } else {
        Some(
            now.rows
                .iter()
                .find(|r| r.id.eq_ignore_ascii_case(&wanted.id))
                .cloned()
                .ok_or(PageError::NotFound)?,
        )
    };
    let form = row.as_ref().map(RosterForm::of).unwrap_or_default();
    Ok(render(&state, &viewer, &form, &now.version, None))
}

fn render(
    state: &AppState,
    viewer: &Viewer,
    form: &RosterForm,
    version: &str,
    error: Option<String>,
) -> Response {
    let Some(ui) = state.ui.as_deref() else {
        return PageError::NotFound.into_response();
    };
    let clinic = ui.clinic();
    let mut response = ui.render(
        "roster.html",
        viewer,
        context! {
            editing => !form.original.is_empty(),
            original => form.original.clone(),
            id => form.id.clone(),
            name => form.name.clone(),
            roles => clinic.roles.keys().map(|r| context! {
                name => r.clone(),
                checked => form.role.iter().any(|x| x == r),
            }).collect::<Vec<Value>>(),
            sites => clinic.sites.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            site => form.site.clone(),
            start => form.start.clone(),
            end => form.end.clone(),
            flags => form.flags.clone(),
            patient_id => form.patient_id.clone(),
            version => version.to_owned(),
            file => ui.roster.as_ref().map(|f| f.path.display().to_string()),
            error => error.clone(),
        },
    );
    if error.is_some() {
        *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    response
}

/// One person as the form sends it (`role` repeated, one per ticked box).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct RosterForm {
    action: String,
    /// The id of the row edited; empty when adding.
    original: String,
    version: String,
    id: String,
    name: String,
    role: Vec<String>,
    site: String,
    start: String,
    end: String,
    flags: String,
    patient_id: String,
}

impl From<Vec<(String, String)>> for RosterForm {
    fn from(pairs: Vec<(String, String)>) -> RosterForm {
        let one = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        RosterForm {
            action: one("action"),
            original: one("original"),
            version: one("version"),
            id: one("id"),
            name: one("name"),
            role: pairs
                .iter()
                .filter(|(k, _)| k == "role")
                .map(|(_, v)| v.trim().to_owned())
                .collect(),
            site: one("site"),
            start: one("start"),
            end: one("end"),
            flags: one("flags"),
            patient_id: one("patient_id"),
        }
    }
}

impl RosterForm {
    fn of(row: &StaffConfig) -> RosterForm {
        RosterForm {
            action: String::new(),
            original: row.id.clone(),
            version: String::new(),
            id: row.id.clone(),
            name: row.name.clone(),
            role: row.roles.clone(),
            site: row.site.clone().unwrap_or_default(),
            start: row.start.clone().unwrap_or_default(),
            end: row.end.clone().unwrap_or_default(),
            flags: row.flags.join(", "),
            patient_id: row.patient_id.clone().unwrap_or_default(),
        }
    }

    /// The row, or what is wrong with the form (said for people).
    fn row(&self) -> Result<StaffConfig, String> {
        let fields = [
            ("id", &self.id),
            ("name", &self.name),
            ("site", &self.site),
            ("start", &self.start),
            ("end", &self.end),
            ("flags", &self.flags),
            ("patient_id", &self.patient_id),
        ];
        for (key, value) in fields.iter().chain(
            self.role
                .iter()
                .map(|r| ("roles", r))
                .collect::<Vec<_>>()
                .iter(),
        ) {
            if value.chars().count() > MAX_FIELD_CHARS {
                return Err(format!(
                    "{key}: {MAX_FIELD_CHARS} 文字以内で入力してください / at most {MAX_FIELD_CHARS} characters"
                ));
            }
            if value.chars().any(|c| c.is_control() || invisible(c)) || value.contains('|') {
                return Err(format!(
                    "{key}: 改行・制御文字・見えない文字・「|」は使えません / no line breaks, control or invisible characters or \"|\""
                ));
            }
            // A spreadsheet opening the file would run it as a formula.
            if value.starts_with(['=', '+', '-', '@']) {
                return Err(format!(
                    "{key}: 「=」「+」「-」「@」で始まる値は使えません / a value may not start with =, +, - or @"
                ));
            }
        }
        if self.id.is_empty() || self.id.chars().any(char::is_whitespace) {
            return Err(
                "id: ログに出るアカウント名を空白なしで入力してください / the account name as the logs write it, without spaces"
                    .into(),
            );
        }
        let mut roles: Vec<String> = Vec::new();
        for r in &self.role {
            if !roles.contains(r) {
                roles.push(r.clone());
            }
        }
        if !self.start.is_empty() && !self.end.is_empty() && self.end < self.start {
            return Err(
                "end: 退職日は着任日より後にしてください / the leaving date comes after the start"
                    .into(),
            );
        }
        let some = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Ok(StaffConfig {
            id: self.id.clone(),
            name: self.name.clone(),
            roles,
            site: some(&self.site),
            start: some(&self.start),
            end: some(&self.end),
            flags: self
                .flags
                .split([',', '、', ' ', '\u{3000}'])
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            patient_id: some(&self.patient_id),
        })
    }
}

/// A character that shows nothing or turns text around (zero-width, bidirectional controls,
/// the byte-order mark): two ids that look the same must be the same.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// What changed in a row, for the audit trail: `roles nurse → nurse|clerk; end — → 2027-03-31`.
fn described(before: &StaffConfig, after: &StaffConfig) -> String {
    let show = |v: &str| {
        if v.is_empty() {
            "—".to_owned()
        } else {
            v.to_owned()
        }
    };
    let fields = |s: &StaffConfig| {
        [
            ("id", s.id.clone()),
            ("name", s.name.clone()),
            ("roles", s.roles.join("|")),
            ("site", s.site.clone().unwrap_or_default()),
            ("start", s.start.clone().unwrap_or_default()),
            ("end", s.end.clone().unwrap_or_default()),
            ("flags", s.flags.join("|")),
            ("patient_id", s.patient_id.clone().unwrap_or_default()),
        ]
    };
    fields(before)
        .into_iter()
        .zip(fields(after))
        .filter(|(a, b)| a.1 != b.1)
        .map(|((key, a), (_, b))| format!("{key} {} → {}", show(&a), show(&b)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a change does to the rows.
enum Change {
    Added(StaffConfig),
    Changed(StaffConfig, StaffConfig),
    Removed(StaffConfig),
}

impl Change {
    fn describe(&self) -> String {
        let empty = StaffConfig::default();
        match self {
            Change::Added(row) => format!("roster: {} added ({})", row.id, described(&empty, row)),
            Change::Changed(a, b) => format!("roster: {} changed ({})", a.id, described(a, b)),
            Change::Removed(row) => {
                format!("roster: {} removed ({})", row.id, described(row, &empty))
            }
        }
    }
}

/// Applies the form to `rows`: the change, or what is wrong (said for people).
fn apply(
    rows: &mut Vec<StaffConfig>,
    form: &RosterForm,
    inline: &dyn Fn(&str) -> bool,
) -> Result<Change, String> {
    let position =
        |rows: &[StaffConfig], id: &str| rows.iter().position(|r| r.id.eq_ignore_ascii_case(id));
    let found = (!form.original.is_empty())
        .then(|| position(rows, &form.original))
        .flatten();
    if !form.original.is_empty() && found.is_none() {
        return Err(format!(
            "{} は名簿にありません / {} is not on the roster",
            form.original, form.original
        ));
    }
    if form.action == "delete" {
        let i = found.ok_or("削除する人を選んでください / choose whom to remove")?;
        return Ok(Change::Removed(rows.remove(i)));
    }
    if form.action != "save" {
        return Err(format!("unknown action {:?}", form.action));
    }
    let row = form.row()?;
    let taken = position(rows, &row.id).is_some_and(|i| Some(i) != found) || inline(&row.id);
    if taken {
        return Err(format!(
            "{} は既に名簿にあります / {} is already on the roster",
            row.id, row.id
        ));
    }
    match found {
        Some(i) => {
            let before = std::mem::replace(&mut rows[i], row.clone());
            Ok(Change::Changed(before, row))
        }
        None if rows.len() >= MAX_ROWS => Err(format!(
            "名簿は {MAX_ROWS} 人までです / a roster has at most {MAX_ROWS} people here"
        )),
        None => {
            rows.push(row.clone());
            Ok(Change::Added(row))
        }
    }
}

/// The file a roster path names: a symbolic link's target (edited in place of the link).
fn target(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Writes `text` beside the roster file, under a new random name (created, never opened
/// through a link), and syncs it: the candidate a check reads. Removed again on failure.
fn write_candidate(path: &Path, text: &str) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    let path = target(path);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.new", &crate::accounts::random_token()[..12]));
    let candidate = path.with_file_name(name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)?;
        // The roster names people (and their own patient ids): as private as the file it
        // replaces, or readable by the service alone.
        let permissions = std::fs::metadata(&path)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o600));
        file.set_permissions(permissions)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(candidate),
        Err(e) => {
            let _ = std::fs::remove_file(&candidate);
            Err(e)
        }
    }
}

/// Puts `candidate` in place of the roster file, durably.
fn replace(candidate: &Path, path: &Path) -> std::io::Result<()> {
    let path = target(path);
    std::fs::rename(candidate, &path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?
        .sync_all()?;
    }
    Ok(())
}

pub(crate) async fn change(
    State(state): State<Arc<AppState>>,
    Posted(viewer, form, _): Posted<AdminRole, RosterForm>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if ui.roster.is_none() {
        return Err(PageError::NotFound);
    }
    let _edit = ui.roster_lock.lock().await;
    let now = read_current(&state).await?;
    if now.version != form.version {
        let error = "ほかの人が先に名簿を変更しました。最新の名簿を確かめてからやり直してください / Someone changed the roster meanwhile: check the current one and try again";
        let mut response = render(&state, &viewer, &form, &now.version, Some(error.into()));
        *response.status_mut() = axum::http::StatusCode::CONFLICT;
        return Ok(response);
    }
    let clinic = ui.clinic();
    let file_ids: Vec<String> = now.rows.iter().map(|r| r.id.to_lowercase()).collect();
    // People defined in the config file itself are on the clinic's roster but not in the file.
    let inline = |id: &str| {
        let id = id.to_lowercase();
        clinic.staff.contains_key(&id) && !file_ids.contains(&id)
    };
    let mut rows = now.rows;
    let change = match apply(&mut rows, &form, &inline) {
        Ok(change) => change,
        Err(error) => return Ok(render(&state, &viewer, &form, &now.version, Some(error))),
    };
    // Checked as a reload would check it: the whole configuration, with the new file.
    let text = roster::to_csv(&rows);
    let s = state.clone();
    let checked = blocking(move || {
        let file = ui_of(&s)?.roster.as_ref().ok_or(PageError::NotFound)?;
        let candidate = write_candidate(&file.path, &text).map_err(|e| {
            PageError::Bad(format!(
                "名簿ファイルを書けません / The roster file cannot be written: {}: {e}",
                file.path.display()
            ))
        })?;
        match (file.check)(&candidate) {
            Ok(()) => Ok(Ok(candidate)),
            Err(why) => {
                let _ = std::fs::remove_file(&candidate);
                let shown = why.replace(
                    &candidate.display().to_string(),
                    &file.path.display().to_string(),
                );
                Ok(Err(shown))
            }
        }
    })
    .await?;
    let candidate = match checked {
        Ok(candidate) => candidate,
        Err(why) => return Ok(render(&state, &viewer, &form, &now.version, Some(why))),
    };
    // The change is kept only if its record is; one that then fails is recorded as failed.
    let described = change.describe();
    let entry = Entry::new("roster.change", described.clone());
    if let Err(e) = audit::require(&state, &viewer, entry).await {
        let _ = std::fs::remove_file(&candidate);
        return Err(e);
    }
    let s = state.clone();
    let written = candidate.clone();
    let replaced = blocking(move || {
        let file = ui_of(&s)?.roster.as_ref().ok_or(PageError::NotFound)?;
        Ok(replace(&written, &file.path).map_err(|e| {
            format!(
                "名簿ファイルを置き換えられません / The roster file cannot be replaced: {}: {e}",
                file.path.display()
            )
        }))
    })
    .await?;
    if let Err(why) = replaced {
        let _ = std::fs::remove_file(&candidate);
        let failed =
            Entry::new("roster.change", format!("{described}: not saved ({why})")).failed();
        audit::record(&state, &viewer, failed).await;
        return Err(PageError::Bad(why));
    }
    let applied = match ui.reloader.clone() {
        Some(reloader) => tokio::task::spawn_blocking(move || reloader.reload())
            .await
            .map_err(|_| PageError::Internal)?
            .map_err(|e| e.0),
        None => Err("the rules are not running".to_owned()),
    };
    match applied {
        Ok(_) => Ok(Redirect::to("/settings?roster=saved#roster").into_response()),
        Err(why) => {
            tracing::warn!("a roster change was saved but the reload was refused");
            let error = format!(
                "名簿は保存しましたが、まだ反映されていません(設定ファイルを直して mimamori rules reload を実行してください) / The roster was saved but is not in force yet: {why}"
            );
            Err(PageError::Bad(error))
        }
    }
}
