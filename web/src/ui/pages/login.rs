//! Signing in and out, the first-run setup, and the language switch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::Deserialize;

use crate::AppState;
use crate::accounts::{LOCKOUT_FAILURES, LoginError, Role, random_token};
use crate::ui::audit::{self, Entry};
use crate::ui::pages::blocking;
use crate::ui::session::{
    AnonymousPost, AnyRole, FORM_COOKIE, Posted, SESSION_COOKIE, Viewer, set_cookie, ui_of,
};
use crate::ui::{PageError, Ui, i18n::Lang};

/// Failed sign-ins from one address within [`THROTTLE_WINDOW`] before it must wait.
const THROTTLE_FAILURES: u32 = 20;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (an attacker with many addresses cannot grow the table).
const THROTTLE_TABLE: usize = 10_000;

/// Where to go after signing in: a path of this server only.
fn next_path(next: Option<&str>) -> String {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.len() <= 2000
            // No backslash, space, tab or control character: browsers drop some of them and
            // would read `/\t/host` as `//host`, another site.
            && n.chars().all(|c| c.is_ascii_graphic() && c != '\\')
    })
    .unwrap_or("/search")
    .to_owned()
}

#[derive(Debug, Deserialize, Default)]
pub struct NextParams {
    next: Option<String>,
    token: Option<String>,
}

/// A page with a sign-in style form: its token goes in a cookie too.
fn form_page(ui: &Ui, viewer: &Viewer, template: &str, values: minijinja::Value) -> Response {
    let token = random_token();
    let mut response = ui.render(
        template,
        viewer,
        minijinja::context! { form_token => token.clone(), ..values },
    );
    if let Ok(cookie) = set_cookie(ui, FORM_COOKIE, &token, Some(3600)).parse() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn form(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(params): Query<NextParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if ui.accounts.is_empty().map_err(|_| PageError::Internal)? {
        return Ok(Redirect::to("/setup").into_response());
    }
    Ok(form_page(
        ui,
        &viewer,
        "login.html",
        context! { next => next_path(params.next.as_deref()), error => None::<String> },
    ))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

/// Whether `client` has failed too often lately; forgets old windows.
fn throttled(ui: &Ui, client: Option<std::net::IpAddr>) -> bool {
    let Some(client) = client else { return false };
    let mut table = ui.failures.lock().unwrap_or_else(|p| p.into_inner());
    table.retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
    table
        .get(&client)
        .is_some_and(|(n, _)| *n >= THROTTLE_FAILURES)
}

fn count_failure(ui: &Ui, client: Option<std::net::IpAddr>) {
    let Some(client) = client else { return };
    let mut table = ui.failures.lock().unwrap_or_else(|p| p.into_inner());
    if table.len() >= THROTTLE_TABLE && !table.contains_key(&client) {
        return;
    }
    table.entry(client).or_insert((0, Instant::now())).0 += 1;
}

/// A response that signs `name` in: the session cookie, and on to `next`.
fn signed_in(ui: &Ui, token: &str, next: &str) -> Response {
    let mut response = Redirect::to(next).into_response();
    let headers = response.headers_mut();
    let max_age = ui.limits.absolute.num_seconds();
    for cookie in [
        set_cookie(ui, SESSION_COOKIE, token, Some(max_age)),
        set_cookie(ui, FORM_COOKIE, "", Some(0)),
    ] {
        if let Ok(v) = cookie.parse() {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    AnonymousPost(viewer, form): AnonymousPost<LoginForm>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let next = next_path(form.next.as_deref());
    if throttled(ui, viewer.client) {
        ui.metrics.logins.with_label_values(&["throttled"]).inc();
        if audit::unauthenticated_budget() {
            let entry = Entry::new("login_failed", "too many failed sign-ins from this address");
            audit::record(&state, &viewer, entry.failed().user(&form.name)).await;
        } else {
            ui.metrics.audit_suppressed.inc();
        }
        return Err(PageError::TooMany);
    }
    let (db, name, password) = (state.clone(), form.name.clone(), form.password);
    let outcome = blocking(move || {
        let ui = ui_of(&db)?;
        let result = ui.accounts.login(&name, &password);
        Ok(match result {
            Ok(account) => {
                // With a second factor, the session waits for its code.
                let second = ui.accounts.totp_enabled(&account.name);
                let token = if second {
                    ui.accounts.start_pending_session(&account.name)
                } else {
                    ui.accounts.start_session(&account.name)
                };
                let token = token.map_err(|e| {
                    tracing::error!(error = %e, "cannot start a session");
                    PageError::Internal
                })?;
                Ok((token, account, second))
            }
            Err(e) => Err(e),
        })
    })
    .await?;
    match outcome {
        Ok((token, _, true)) => {
            ui.metrics
                .logins
                .with_label_values(&["second_factor"])
                .inc();
            let target = format!("/login/code?next={}", crate::ui::urlencode(&next));
            Ok(signed_in(ui, &token, &target))
        }
        Ok((token, account, false)) => {
            ui.metrics.logins.with_label_values(&["success"]).inc();
            let viewer = Viewer {
                account: Some(account),
                ..viewer
            };
            // No sign-in without its record: the session just made ends again.
            if !audit::record(
                &state,
                &viewer,
                Entry::new("login", "signed in to the web UI"),
            )
            .await
            {
                end_session(&state, token).await?;
                return Err(PageError::AuditDown);
            }
            Ok(signed_in(ui, &token, &next))
        }
        Err(e) => {
            count_failure(ui, viewer.client);
            // One message for all: it must not tell which accounts exist.
            let (label, why) = match &e {
                LoginError::Refused => ("refused", "wrong name or password"),
                LoginError::Locked(_) => ("locked", "account locked"),
                LoginError::Disabled => ("disabled", "account disabled"),
            };
            ui.metrics.logins.with_label_values(&[label]).inc();
            if audit::unauthenticated_budget() {
                let entry = Entry::new("login_failed", why).failed().user(&form.name);
                audit::record(&state, &viewer, entry).await;
            } else {
                ui.metrics.audit_suppressed.inc();
            }
            let error = ui
                .catalogues
                .text(viewer.lang, "login.refused")
                .replace("{n}", &LOCKOUT_FAILURES.to_string());
            let mut response = form_page(
                ui,
                &viewer,
                "login.html",
                context! { next => next, error => Some(error) },
            );
            *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
            Ok(response)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    Posted(viewer, _, _): Posted<AnyRole, Empty>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if let Some(token) = viewer.cookie.clone() {
        end_session(&state, token).await?;
    }
    audit::record(&state, &viewer, Entry::new("logout", "signed out")).await;
    let mut response = Redirect::to("/login").into_response();
    if let Ok(v) = set_cookie(ui, SESSION_COOKIE, "", Some(0)).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Ends the session of `token` (off the async threads).
async fn end_session(state: &Arc<AppState>, token: String) -> Result<(), PageError> {
    let db = state.clone();
    blocking(move || {
        if let Some(ui) = db.ui.as_deref() {
            ui.accounts.end_session(&token);
        }
        Ok(())
    })
    .await
}

/// The setup is open while nobody has an account, from this machine (not through a proxy on
/// it, which makes everyone look local) or with the token printed at start.
fn setup_allowed(ui: &Ui, viewer: &Viewer, token: Option<&str>) -> bool {
    (viewer.client.is_some_and(|c| c.is_loopback()) && !viewer.proxied)
        || token.is_some_and(|t| !t.is_empty() && t == ui.setup_token)
}

pub(crate) async fn setup_form(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(params): Query<NextParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if !ui.accounts.is_empty().map_err(|_| PageError::Internal)? {
        return Ok(Redirect::to("/login").into_response());
    }
    if !setup_allowed(ui, &viewer, params.token.as_deref()) {
        return Err(PageError::Forbidden);
    }
    Ok(form_page(
        ui,
        &viewer,
        "setup.html",
        context! { token => params.token.unwrap_or_default(), error => None::<String> },
    ))
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    name: String,
    password: String,
    password2: String,
    #[serde(default)]
    token: String,
}

pub(crate) async fn setup(
    State(state): State<Arc<AppState>>,
    AnonymousPost(viewer, form): AnonymousPost<SetupForm>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if !setup_allowed(ui, &viewer, Some(&form.token)) {
        return Err(PageError::Forbidden);
    }
    let error = if form.password != form.password2 {
        Some(ui.catalogues.text(viewer.lang, "setup.mismatch"))
    } else {
        let (db, name, password) = (state.clone(), form.name.clone(), form.password.clone());
        blocking(move || {
            let ui = ui_of(&db)?;
            // Only the first account comes from here: of two setups at once, one wins.
            Ok(ui.accounts.add_first(&name, &password).err())
        })
        .await?
        .map(|e| e.to_string())
    };
    if let Some(error) = error {
        return Ok(form_page(
            ui,
            &viewer,
            "setup.html",
            context! { token => form.token, error => Some(error) },
        ));
    }
    let viewer = Viewer {
        account: Some(crate::accounts::Account {
            name: form.name.clone(),
            role: Role::Admin,
            lang: None,
        }),
        ..viewer
    };
    audit::record(
        &state,
        &viewer,
        Entry::new(
            "user.add",
            format!("first-run setup: admin account {}", form.name),
        ),
    )
    .await;
    let (db, name) = (state.clone(), form.name.clone());
    let token = blocking(move || {
        ui_of(&db)?
            .accounts
            .start_session(&name)
            .map_err(|_| PageError::Internal)
    })
    .await?;
    Ok(signed_in(ui, &token, "/search"))
}

#[derive(Debug, Deserialize)]
pub struct LangForm {
    lang: String,
    next: Option<String>,
}

pub(crate) async fn language(
    State(state): State<Arc<AppState>>,
    Posted(viewer, form, _): Posted<AnyRole, LangForm>,
) -> Result<Response, PageError> {
    let lang = Lang::from_code(&form.lang)
        .ok_or_else(|| PageError::Bad(format!("unknown language {:?}", form.lang)))?;
    let (db, name) = (state.clone(), viewer.name().to_owned());
    blocking(move || {
        ui_of(&db)?
            .accounts
            .set_lang(&name, lang.code())
            .map_err(|_| PageError::Internal)
    })
    .await?;
    Ok(Redirect::to(&next_path(form.next.as_deref())).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CodeForm {
    code: String,
    next: Option<String>,
}

/// `/login/code`: the second factor of a sign-in whose password was right.
pub(crate) async fn code_form(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Query(params): Query<NextParams>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    if viewer.pending.is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    Ok(form_page(
        ui,
        &viewer,
        "code.html",
        context! { next => next_path(params.next.as_deref()), error => None::<String> },
    ))
}

pub(crate) async fn code(
    State(state): State<Arc<AppState>>,
    AnonymousPost(viewer, form): AnonymousPost<CodeForm>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let (Some(name), Some(token)) = (viewer.pending.clone(), viewer.cookie.clone()) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let next = next_path(form.next.as_deref());
    if throttled(ui, viewer.client) {
        ui.metrics.logins.with_label_values(&["throttled"]).inc();
        return Err(PageError::TooMany);
    }
    let (accounts, who, session) = (ui.accounts.clone(), name.clone(), token.clone());
    let (good, alive) = blocking(move || {
        // A locked account's codes are not even checked.
        if !accounts.locked(&who) && accounts.totp_check(&who, &form.code) {
            accounts
                .complete_session(&session)
                .map_err(|_| PageError::Internal)?;
            accounts.clear_failures(&who);
            return Ok((true, true));
        }
        // A wrong code counts like a wrong password: against the account and the address.
        accounts.count_failure(&who);
        Ok((false, accounts.fail_second_factor(&session)))
    })
    .await?;
    if !good {
        count_failure(ui, viewer.client);
    }
    let account = ui
        .accounts
        .list()
        .ok()
        .and_then(|l| l.into_iter().find(|a| a.name == name));
    let acting = Viewer {
        account: account.map(|a| crate::accounts::Account {
            name: a.name,
            role: a.role,
            lang: None,
        }),
        ..viewer.clone()
    };
    if good {
        ui.metrics.logins.with_label_values(&["success"]).inc();
        let entry = Entry::new("login", "signed in to the web UI (with a second factor)");
        if !audit::record(&state, &acting, entry).await {
            end_session(&state, token).await?;
            return Err(PageError::AuditDown);
        }
        return Ok(Redirect::to(&next).into_response());
    }
    ui.metrics.logins.with_label_values(&["refused"]).inc();
    if audit::unauthenticated_budget() {
        let entry = Entry::new("login_failed", "wrong second-factor code").failed();
        audit::record(&state, &acting, entry.user(&name)).await;
    } else {
        ui.metrics.audit_suppressed.inc();
    }
    if !alive {
        return Ok(Redirect::to("/login").into_response());
    }
    let error = ui.catalogues.text(viewer.lang, "code.wrong");
    let mut response = form_page(
        ui,
        &viewer,
        "code.html",
        context! { next => next, error => Some(error) },
    );
    *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
    Ok(response)
}
