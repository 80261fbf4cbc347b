//! The staff roster: `[roster]` in the config (inline `[[roster.staff]]` rows and/or a CSV file
//! with the columns `id,name,roles,site,start,end,flags,patient_id`, lists separated by `|`),
//! read here and written back here when the web UI edits the file. The rows are checked into
//! [`crate::clinic::Staff`] by [`crate::clinic::Clinic::new`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::clinic::{Invalid, invalid, open_csv};

/// The columns a roster file is written with, in order.
pub const COLUMNS: [&str; 8] = [
    "id",
    "name",
    "roles",
    "site",
    "start",
    "end",
    "flags",
    "patient_id",
];

/// `[roster]`: the staff, inline (`[[roster.staff]]`) and/or from a CSV file with the columns
/// `id,name,roles,site,start,end,flags` (roles and flags separated by `|`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RosterConfig {
    pub file: Option<PathBuf>,
    pub staff: Vec<StaffConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// `on_call`, `night_shift`, ...
    #[serde(default)]
    pub flags: Vec<String>,
    /// The staff member's own patient id, if they are a patient here too.
    #[serde(default)]
    pub patient_id: Option<String>,
}

/// The rows of a roster file, each with where it is (`roster.csv line 3`).
pub fn read(path: &Path) -> Result<Vec<(String, StaffConfig)>, Invalid> {
    let key = "roster.file".to_owned();
    let mut reader = open_csv(&key, path)?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| (key.clone(), format!("a header row: {e}")))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(id_col) = col("id") else {
        return invalid(
            key,
            format!(
                "{}: a header with the columns id,name,roles,site,start,end,flags[,patient_id]",
                path.display()
            ),
        );
    };
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| (key.clone(), format!("{} line {line}: {e}", path.display())))?;
        let get = |name: &str| {
            col(name)
                .and_then(|c| row.get(c))
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| v.split('|').map(|x| x.trim().to_owned()).collect())
                .unwrap_or_default()
        };
        out.push((
            format!("{} line {line}", path.display()),
            StaffConfig {
                id: row.get(id_col).unwrap_or("").trim().to_owned(),
                name: get("name").unwrap_or("").to_owned(),
                roles: list("roles"),
                site: get("site").map(str::to_owned),
                start: get("start").map(str::to_owned),
                end: get("end").map(str::to_owned),
                flags: list("flags"),
                patient_id: get("patient_id").map(str::to_owned),
            },
        ));
    }
    Ok(out)
}

/// `rows` as a roster file: a header of [`COLUMNS`], then one line per person.
pub fn to_csv(rows: &[StaffConfig]) -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    // Writing to memory fails only on a bug; a row is then simply missing from the text.
    let _ = writer.write_record(COLUMNS);
    for s in rows {
        let _ = writer.write_record([
            s.id.as_str(),
            &s.name,
            &s.roles.join("|"),
            s.site.as_deref().unwrap_or(""),
            s.start.as_deref().unwrap_or(""),
            s.end.as_deref().unwrap_or(""),
            &s.flags.join("|"),
            s.patient_id.as_deref().unwrap_or(""),
        ]);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_roster_reads_back_the_same() {
        let rows = vec![
            StaffConfig {
                id: "n002".into(),
                name: "山田, 花子 \"はな\"".into(),
                roles: vec!["nurse".into(), "clerk".into()],
                site: Some("main".into()),
                start: Some("2026-04-01".into()),
                end: None,
                flags: vec!["on_call".into()],
                patient_id: Some("P100".into()),
            },
            StaffConfig {
                id: "d001".into(),
                name: String::new(),
                roles: vec![],
                site: None,
                start: None,
                end: Some("2027-03-31".into()),
                flags: vec![],
                patient_id: None,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.csv");
        std::fs::write(&path, to_csv(&rows)).unwrap();
        let back: Vec<StaffConfig> = read(&path).unwrap().into_iter().map(|r| r.1).collect();
        assert_eq!(back, rows);
        let where_ = read(&path).unwrap()[1].0.clone();
        assert!(where_.ends_with("roster.csv line 3"), "{where_}");
    }
}
