//! Who is looking at a page, and whether they may: the session cookie (`Secure` where it can
//! be, `HttpOnly`, `SameSite=Strict`, idle and absolute timeouts), the role a page needs, and
//! the CSRF token every form carries back. The checks are extractors, so a handler cannot
//! forget one: a page takes [`Page<R>`], a form [`Posted<R, T>`], a sign-in form
//! [`AnonymousPost<T>`]. A refusal is recorded as an audit event.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::accounts::{Account, Role};
use crate::ui::i18n::Lang;
use crate::ui::{PageError, Ui, audit, lang_of};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mimamori_session";
/// The cookie a sign-in form's token is checked against (before there is a session).
pub const FORM_COOKIE: &str = "mimamori_form";
/// Largest form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The person behind a request (if signed in), their language and address.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub account: Option<Account>,
    /// The session's CSRF token, for the page's forms.
    pub csrf: Option<String>,
    pub lang: Lang,
    pub client: Option<IpAddr>,
    /// The session cookie's value (to end it).
    pub(crate) cookie: Option<String>,
    /// The page's path and query (where the language switch comes back to).
    pub path: String,
    /// The account whose password was right but whose second factor is still to come.
    pub pending: Option<String>,
    /// The request came through a proxy (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`): its address is the
    /// proxy's, not the person's.
    pub proxied: bool,
}

impl Viewer {
    pub fn may(&self, role: Role) -> bool {
        self.account.as_ref().is_some_and(|a| a.role >= role)
    }

    pub fn name(&self) -> &str {
        self.account.as_ref().map_or("-", |a| a.name.as_str())
    }
}

/// A cookie's value from the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, `Secure` when the UI says so.
pub(crate) fn set_cookie(ui: &Ui, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if ui.secure_cookies {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    text
}

pub(crate) fn ui_of(state: &AppState) -> Result<&Ui, PageError> {
    state.ui.as_deref().ok_or(PageError::NotFound)
}

fn client(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<crate::listener::ClientAddr>>()
        .map(|c| c.0.0.ip())
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let ui = ui_of(state)?;
        let token = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        let session = match &token {
            Some(token) => {
                let (accounts, token, limits) = (state.clone(), token.clone(), ui.limits);
                tokio::task::spawn_blocking(move || {
                    accounts
                        .ui
                        .as_ref()
                        .and_then(|ui| ui.accounts.session(&token, limits))
                })
                .await
                .map_err(|_| PageError::Internal)?
            }
            None => None,
        };
        let lang = lang_of(
            session.as_ref().and_then(|s| s.account.lang.as_deref()),
            &parts.headers,
        );
        // A session waiting for its second factor is nobody yet, but for the code page.
        let (session, pending) = match session {
            Some(s) if s.pending => (None, Some(s.account.name)),
            other => (other, None),
        };
        Ok(Viewer {
            pending,
            csrf: session.as_ref().map(|s| s.csrf.clone()),
            account: session.map(|s| s.account),
            lang,
            client: client(parts),
            cookie: token,
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            proxied: crate::auth::proxied(&parts.headers),
        })
    }
}

/// The role a page or form needs.
pub trait Needs: Send + Sync {
    const ROLE: Role;
}

/// Any signed-in person: search and reports.
pub struct AnyRole;
/// Alerts and sign-off.
pub struct AuditorRole;
/// Users, tokens, settings.
pub struct AdminRole;

impl Needs for AnyRole {
    const ROLE: Role = Role::Viewer;
}
impl Needs for AuditorRole {
    const ROLE: Role = Role::Auditor;
}
impl Needs for AdminRole {
    const ROLE: Role = Role::Admin;
}

/// A page for someone signed in with at least role `R`.
pub struct Page<R: Needs>(pub Viewer, pub PhantomData<R>);

/// Signed in with role `R`, or the refusal (recorded).
async fn allowed<R: Needs>(
    viewer: Viewer,
    state: &Arc<AppState>,
    what: &str,
) -> Result<Viewer, PageError> {
    let ui = ui_of(state)?;
    if viewer.account.is_none() {
        ui.metrics.refused.with_label_values(&["no_session"]).inc();
        return Err(PageError::SignIn(what.to_owned()));
    }
    if !viewer.may(R::ROLE) {
        ui.metrics.refused.with_label_values(&["role"]).inc();
        audit::record(
            state,
            &viewer,
            audit::Entry::denied(&format!("{what} needs the {} role", R::ROLE.as_str())),
        )
        .await;
        return Err(PageError::Forbidden);
    }
    Ok(viewer)
}

impl<R: Needs> FromRequestParts<Arc<AppState>> for Page<R> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        let what = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        Ok(Page(allowed::<R>(viewer, state, &what).await?, PhantomData))
    }
}

/// Whether a form came from a page of this server: a browser's `Origin` (or, without one,
/// `Referer`) names the host the request was sent to. Neither: allowed (old clients), the
/// token decides.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (host, from) {
        (_, None) => true,
        (Some(host), Some(from)) => {
            let rest = from
                .strip_prefix("https://")
                .or_else(|| from.strip_prefix("http://"))
                .unwrap_or("");
            rest.split('/').next() == Some(host)
        }
        (None, Some(_)) => false,
    }
}

/// Two tokens compared in constant time.
fn same_token(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether a form is this server's own: sent from its pages (`Origin`), with the token
/// expected.
fn genuine(origin_ok: bool, token: &str, expected: &str) -> bool {
    origin_ok && !token.is_empty() && !expected.is_empty() && same_token(token, expected)
}

/// The refusal of a forged form, counted.
fn forged(state: &AppState) -> PageError {
    if let Some(ui) = state.ui.as_deref() {
        ui.metrics.refused.with_label_values(&["csrf"]).inc();
    }
    PageError::Forged
}

#[derive(serde::Deserialize)]
struct Token {
    #[serde(default)]
    csrf: String,
}

/// The body of a form: at most [`MAX_FORM_BYTES`], read as `T`, and its `csrf` field.
async fn form<T: DeserializeOwned>(request: Request) -> Result<(T, String), PageError> {
    let bytes = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            PageError::Bad(format!(
                "フォームが大きすぎます / a form is at most {MAX_FORM_BYTES} bytes"
            ))
        })?;
    let token: Token = serde_urlencoded::from_bytes(&bytes).unwrap_or(Token {
        csrf: String::new(),
    });
    let value = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
        PageError::Bad(format!(
            "フォームの内容が正しくありません / the form is not valid: {e}"
        ))
    })?;
    Ok((value, token.csrf))
}

/// A form sent by someone signed in with role `R`, carrying their session's CSRF token.
pub struct Posted<R: Needs, T>(pub Viewer, pub T, pub PhantomData<R>);

impl<R: Needs, T: DeserializeOwned + Send> FromRequest<Arc<AppState>> for Posted<R, T> {
    type Rejection = PageError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let what = parts.uri.path().to_owned();
        if parts.method != Method::POST {
            return Err(PageError::NotFound);
        }
        let origin_ok = same_origin(&parts.headers);
        let viewer = allowed::<R>(viewer, state, &what).await?;
        let (value, token) = form::<T>(Request::from_parts(parts, body)).await?;
        if !genuine(
            origin_ok,
            &token,
            viewer.csrf.as_deref().unwrap_or_default(),
        ) {
            let refusal = forged(state);
            audit::record(
                state,
                &viewer,
                audit::Entry::denied(&format!("{what}: form without a valid CSRF token")),
            )
            .await;
            return Err(refusal);
        }
        Ok(Posted(viewer, value, PhantomData))
    }
}

/// A sign-in or setup form: its token must equal the [`FORM_COOKIE`] the form's page set.
pub struct AnonymousPost<T>(pub Viewer, pub T);

impl<T: DeserializeOwned + Send> FromRequest<Arc<AppState>> for AnonymousPost<T> {
    type Rejection = PageError;

    async fn from_request(
        request: Request,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let expected = cookie(&parts.headers, FORM_COOKIE)
            .unwrap_or_default()
            .to_owned();
        let origin_ok = same_origin(&parts.headers);
        let (value, token) = form::<T>(Request::from_parts(parts, body)).await?;
        if !genuine(origin_ok, &token, &expected) {
            return Err(forged(state));
        }
        Ok(AnonymousPost(viewer, value))
    }
}
