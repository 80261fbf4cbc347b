//! The API tokens page (admin): the tokens with their scopes and last use, a new one (shown
//! once), revoking one.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Value, context};
use serde::Deserialize;

use crate::AppState;
use crate::api_tokens::{SCOPES, Scope};
use crate::ui::audit::{self, Entry};
use crate::ui::pages::blocking;
use crate::ui::session::{AdminRole, Page, Posted, Viewer, ui_of};
use crate::ui::{PageError, ser};

async fn render(
    state: &Arc<AppState>,
    viewer: &Viewer,
    created: Option<(String, String)>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(state)?;
    let accounts = ui.accounts.clone();
    let tokens = blocking(move || accounts.tokens().map_err(|_| PageError::Internal)).await?;
    let rows: Vec<Value> = tokens
        .iter()
        .map(|t| {
            context! {
                name => t.name.clone(),
                scopes => t.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                created => format!("{} ({})", t.created_at.get(..16).unwrap_or(&t.created_at), t.created_by),
                used => t.last_used_at.clone(),
                revoked => t.revoked,
            }
        })
        .collect();
    let mut response = ui.render(
        "tokens.html",
        viewer,
        context! {
            tokens => rows,
            scopes => ser(SCOPES.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            created => created.as_ref().map(|c| c.0.clone()),
            created_name => created.map(|c| c.1),
            error => error.clone(),
        },
    );
    if error.is_some() {
        *response.status_mut() = axum::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AdminRole>,
) -> Result<Response, PageError> {
    render(&state, &viewer, None, None).await
}

/// The form: an action, a name, and the checked scopes (`scope=search&scope=ingest`: a key
/// repeated, which is read from the pairs as they came).
#[derive(Debug, Deserialize)]
#[serde(from = "Vec<(String, String)>")]
pub struct TokenForm {
    action: String,
    name: String,
    scope: Vec<String>,
}

impl From<Vec<(String, String)>> for TokenForm {
    fn from(pairs: Vec<(String, String)>) -> TokenForm {
        let one = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        TokenForm {
            action: one("action"),
            name: one("name"),
            scope: pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }
}

pub(crate) async fn change(
    State(state): State<Arc<AppState>>,
    Posted(viewer, form, _): Posted<AdminRole, TokenForm>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    let accounts = ui.accounts.clone();
    let by = viewer.name().to_owned();
    let name = form.name.clone();
    match form.action.as_str() {
        "add" => {
            let scopes = form
                .scope
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PageError::Bad(e.to_string()))?;
            let described = format!(
                "API token {name} added with {}",
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let added = blocking(move || Ok(accounts.add_token(&form.name, &scopes, &by))).await?;
            match added {
                Ok(token) => {
                    audit::record(&state, &viewer, Entry::new("token.add", described)).await;
                    render(&state, &viewer, Some((token, name)), None).await
                }
                Err(e) => render(&state, &viewer, None, Some(e.to_string())).await,
            }
        }
        "revoke" => {
            blocking(move || {
                accounts
                    .revoke_token(&form.name)
                    .map_err(|e| PageError::Bad(e.to_string()))
            })
            .await?;
            let entry = Entry::new("token.revoke", format!("API token {name} revoked"));
            audit::record(&state, &viewer, entry).await;
            Ok(Redirect::to("/tokens").into_response())
        }
        other => Err(PageError::Bad(format!("unknown action {other:?}"))),
    }
}
