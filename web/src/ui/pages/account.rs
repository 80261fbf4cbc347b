//! A person's own account: the second factor (turn on with an authenticator app, recovery
//! codes shown once, turn off with a current code); and an administrator's view of another's
//! second factor, to turn it off when a phone is lost.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::AppState;
use crate::ui::audit::{self, Entry};
use crate::ui::pages::blocking;
use crate::ui::session::{AdminRole, AnyRole, Page, Posted, Viewer, ui_of};
use crate::ui::{PageError, ser};

async fn render(
    state: &Arc<AppState>,
    viewer: &Viewer,
    values: minijinja::Value,
) -> Result<Response, PageError> {
    let ui = ui_of(state)?;
    let (accounts, name) = (ui.accounts.clone(), viewer.name().to_owned());
    let enabled = blocking(move || Ok(accounts.totp_enabled(&name))).await?;
    Ok(ui.render(
        "account.html",
        viewer,
        context! {
            ..values,
            ..context! {
                enabled => enabled,
                error => None::<String>,
                recovery => None::<Vec<String>>,
                secret => None::<String>,
                url => None::<String>,
            }
        },
    ))
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
) -> Result<Response, PageError> {
    render(&state, &viewer, context! {}).await
}

#[derive(Debug, Deserialize)]
pub struct TotpForm {
    action: String,
    #[serde(default)]
    code: String,
}

pub(crate) async fn totp(
    State(state): State<Arc<AppState>>,
    Posted(viewer, form, _): Posted<AnyRole, TotpForm>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    let (accounts, name) = (ui.accounts.clone(), viewer.name().to_owned());
    let bad = |e: crate::accounts::AccountError| PageError::Bad(e.to_string());
    match form.action.as_str() {
        "start" => {
            let enrolment = blocking(move || accounts.totp_start(&name).map_err(bad)).await?;
            render(
                &state,
                &viewer,
                context! { secret => enrolment.secret, url => enrolment.url },
            )
            .await
        }
        "confirm" => {
            let code = form.code.clone();
            let keep = viewer.cookie.clone();
            match blocking(move || {
                let done = accounts.totp_confirm(&name, &code);
                if done.is_ok() {
                    // Sessions opened before the second factor end (this one goes on).
                    accounts.end_sessions(&name, keep.as_deref());
                }
                Ok(done)
            })
            .await?
            {
                Ok(codes) => {
                    let entry = Entry::new("totp.enable", "second factor turned on");
                    audit::record(&state, &viewer, entry).await;
                    render(&state, &viewer, context! { recovery => ser(codes) }).await
                }
                Err(e) => render(&state, &viewer, context! { error => e.to_string() }).await,
            }
        }
        "disable" => {
            let code = form.code.clone();
            let done = blocking(move || {
                let done =
                    accounts.totp_check(&name, &code) && accounts.totp_disable(&name).is_ok();
                if !done {
                    // Guessing here counts like guessing at the sign-in.
                    accounts.count_failure(&name);
                }
                Ok(done)
            })
            .await?;
            if !done {
                let error = ui.catalogues.text(viewer.lang, "code.wrong");
                return render(&state, &viewer, context! { error => error }).await;
            }
            let entry = Entry::new("totp.disable", "second factor turned off");
            audit::record(&state, &viewer, entry).await;
            Ok(Redirect::to("/account").into_response())
        }
        other => Err(PageError::Bad(format!("unknown action {other:?}"))),
    }
}

/// `/users/{name}/totp`: another account's second factor, for administrators only.
pub(crate) async fn user_totp(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Page(viewer, _): Page<AdminRole>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let (accounts, who) = (ui.accounts.clone(), name.clone());
    let enabled = blocking(move || Ok(accounts.totp_enabled(&who))).await?;
    Ok(ui.render(
        "user_totp.html",
        &viewer,
        context! { subject => name, enabled => enabled },
    ))
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub(crate) async fn reset_user_totp(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Posted(viewer, _, _): Posted<AdminRole, Empty>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    // One's own second factor goes off only with a code, on one's own account page.
    if name.eq_ignore_ascii_case(viewer.name()) {
        return Err(PageError::Refused(
            "自分の2段階認証は「自分のアカウント」でコードを入力して無効にしてください / turn your own off on My account, with a code".into(),
        ));
    }
    let (accounts, who) = (ui.accounts.clone(), name.clone());
    blocking(move || {
        accounts
            .totp_disable(&who)
            .map_err(|e| PageError::Bad(e.to_string()))?;
        accounts.end_sessions(&who, None);
        Ok(())
    })
    .await?;
    let entry = Entry::new("totp.reset", format!("second factor of {name} turned off"));
    audit::record(&state, &viewer, entry).await;
    Ok(Redirect::to("/users").into_response())
}
