//! The pages, one module per area. Each handler takes the extractor of the role it needs
//! ([`crate::ui::session`]) and records what was looked at ([`crate::ui::audit`]).

pub mod account;
pub mod admin;
pub mod alerts;
pub mod login;
pub mod mailbox;
mod range;
pub mod reports;
pub mod roster;
pub mod search;
pub mod tokens;
pub mod weekly;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};

use crate::AppState;
use crate::ui::PageError;
use crate::ui::session::{Viewer, ui_of};

/// `/`: the search page once signed in; the first-run setup while nobody has an account.
pub(crate) async fn home(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if viewer.account.is_some() {
        return Ok(Redirect::to("/search").into_response());
    }
    if ui.accounts.is_empty().map_err(|_| PageError::Internal)? {
        return Ok(Redirect::to("/setup").into_response());
    }
    Ok(Redirect::to("/login").into_response())
}

/// Runs blocking work (the index, SQLite) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PageError> + Send + 'static,
) -> Result<T, PageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| PageError::Internal)?
}

/// How long a page waits for one of the search slots it shares with the API.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One of the [`crate::SEARCH_SLOTS`] (searches at once, each holding up to
/// [`store::MAX_RESULT_BYTES`] of events), or a busy answer after [`SLOT_WAIT`].
pub(crate) async fn search_slot(
    state: &AppState,
) -> Result<tokio::sync::OwnedSemaphorePermit, PageError> {
    tokio::time::timeout(SLOT_WAIT, state.search_slots.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or(PageError::Busy)
}

/// A store error for a page: a bad query says what is wrong, anything else is internal.
pub(crate) fn store_error(e: store::StoreError) -> PageError {
    match e {
        store::StoreError::BadQuery(message) => PageError::Bad(message),
        other => {
            tracing::error!(error = %other, "page cannot read the store");
            PageError::Internal
        }
    }
}

/// The alert database, for pages.
pub(crate) fn alert_db(
    state: &AppState,
) -> Result<Arc<std::sync::Mutex<alerting::db::AlertDb>>, PageError> {
    state.alerts.clone().ok_or(PageError::NotFound)
}
