//! The web UI: server-rendered pages (minijinja templates compiled into the binary, one
//! stylesheet and one small script, nothing from the internet) for the clinic's director and
//! office manager. Who is signed in is decided by [`session`]; every page and change is
//! recorded in the store as an audit event ([`audit`]).

pub mod audit;
pub mod i18n;
mod pages;
pub mod session;
mod svg;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono_tz::Tz;
use minijinja::{Environment, Value, context};

use crate::AppState;
use crate::accounts::{AccountDb, SessionLimits};
use crate::ui::i18n::{Catalogues, Lang};
use crate::ui::session::Viewer;

/// What the pages share.
pub struct Ui {
    pub accounts: Arc<AccountDb>,
    pub catalogues: Catalogues,
    env: Environment<'static>,
    /// The clinic model at start; [`Ui::clinic`] is the one in force.
    started_clinic: Arc<rules::clinic::Clinic>,
    /// The rules' reloader, which holds the clinic model in force after a reload.
    pub reloader: Option<Arc<alerting::runner::Reloader>>,
    /// The roster file the settings page edits (none: the roster is not editable here).
    pub roster: Option<RosterFile>,
    /// The weekly reviews kept, and the days a report may stay unsigned.
    pub reports: Option<Arc<report::archive::ReportDb>>,
    pub signoff_days: i64,
    /// When reviews are made: a period's review is final (kept) only after its moment.
    pub review_schedule: report::schedule::Schedule,
    /// Days without an event that make a roster account dormant in the review (0: never).
    pub dormant_days: i64,
    /// The browser that prints a review as PDF (none: `chromium` on the PATH).
    pub pdf_browser: Option<std::path::PathBuf>,
    /// Who receives the weekly reviews (none: they are not sent from the UI).
    pub review_recipients: Option<report::deliver::Recipients>,
    /// One roster edit at a time.
    pub(crate) roster_lock: tokio::sync::Mutex<()>,
    pub appointments: Option<Arc<rules::detections::records::Appointments>>,
    /// The first-run setup's one-time token (printed at start while nobody has an account).
    pub setup_token: String,
    /// Cookies marked `Secure` (the UI is served over HTTPS or only on loopback).
    pub secure_cookies: bool,
    pub limits: SessionLimits,
    /// Failed sign-ins per client address in the current window, for throttling.
    pub(crate) failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Shown on every page when set (`mimamori demo`).
    pub banner: Option<String>,
    /// The demo's local mailbox, listed at `/mailbox` (`mimamori demo` only).
    pub mailbox: Option<alerting::mailbox::Mailbox>,
    pub metrics: UiMetrics,
}

/// The roster file the UI edits, and how a new one is checked before it replaces it.
pub struct RosterFile {
    pub path: std::path::PathBuf,
    /// Checks the whole configuration with `candidate` as its roster file, as a reload
    /// would; the error names the key and what is expected.
    #[allow(clippy::type_complexity)]
    pub check: Box<dyn Fn(&std::path::Path) -> Result<(), String> + Send + Sync>,
}

/// Counters of the UI in `/metrics`.
#[derive(Clone)]
pub struct UiMetrics {
    pub logins: prometheus::IntCounterVec,
    pub refused: prometheus::IntCounterVec,
    pub audit_events: prometheus::IntCounter,
    pub audit_lost: prometheus::IntCounter,
    pub audit_suppressed: prometheus::IntCounter,
}

impl UiMetrics {
    pub fn new(registry: &prometheus::Registry) -> prometheus::Result<UiMetrics> {
        let logins = prometheus::IntCounterVec::new(
            prometheus::Opts::new("ui_logins_total", "Sign-ins by outcome"),
            &["outcome"],
        )?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "ui_refused_total",
                "Requests of the web UI refused, by reason",
            ),
            &["reason"],
        )?;
        let audit_events = prometheus::IntCounter::new(
            "ui_audit_events_total",
            "Audit events (sign-ins, searches, reports, changes) written to the store",
        )?;
        let audit_lost = prometheus::IntCounter::new(
            "ui_audit_events_lost_total",
            "Audit events the store did not take (it refused data or was closing)",
        )?;
        let audit_suppressed = prometheus::IntCounter::new(
            "ui_audit_events_suppressed_total",
            "Audit events of unknown requesters (failed sign-ins, refused tokens) over the 60 a minute stored",
        )?;
        registry.register(Box::new(audit_suppressed.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(audit_events.clone()))?;
        registry.register(Box::new(audit_lost.clone()))?;
        Ok(UiMetrics {
            logins,
            refused,
            audit_events,
            audit_lost,
            audit_suppressed,
        })
    }
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("setup.html", include_str!("../../templates/setup.html")),
    ("search.html", include_str!("../../templates/search.html")),
    ("event.html", include_str!("../../templates/event.html")),
    ("patient.html", include_str!("../../templates/patient.html")),
    ("staff.html", include_str!("../../templates/staff.html")),
    ("alerts.html", include_str!("../../templates/alerts.html")),
    ("alert.html", include_str!("../../templates/alert.html")),
    ("sources.html", include_str!("../../templates/sources.html")),
    ("mailbox.html", include_str!("../../templates/mailbox.html")),
    ("mail.html", include_str!("../../templates/mail.html")),
    (
        "settings.html",
        include_str!("../../templates/settings.html"),
    ),
    ("users.html", include_str!("../../templates/users.html")),
    ("roster.html", include_str!("../../templates/roster.html")),
    ("weekly.html", include_str!("../../templates/weekly.html")),
    (
        "weekly_list.html",
        include_str!("../../templates/weekly_list.html"),
    ),
    ("range.html", include_str!("../../templates/range.html")),
    ("tokens.html", include_str!("../../templates/tokens.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("code.html", include_str!("../../templates/code.html")),
    (
        "user_totp.html",
        include_str!("../../templates/user_totp.html"),
    ),
];

const STYLE: &str = include_str!("../../static/app.css");
const SCRIPT: &str = include_str!("../../static/app.js");

impl Ui {
    pub fn new(
        accounts: Arc<AccountDb>,
        clinic: Arc<rules::clinic::Clinic>,
        appointments: Option<Arc<rules::detections::records::Appointments>>,
        secure_cookies: bool,
        metrics: UiMetrics,
    ) -> Ui {
        let mut env = Environment::new();
        // A key missing from a catalogue is an error (a test renders every page), not an
        // empty string on a page.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        Ui {
            accounts,
            catalogues: Catalogues::load(),
            env,
            started_clinic: clinic,
            reloader: None,
            roster: None,
            reports: None,
            signoff_days: 7,
            dormant_days: 30,
            review_schedule: report::schedule::Schedule {
                day: chrono::Weekday::Mon,
                time: chrono::NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            },
            review_recipients: None,
            pdf_browser: None,
            roster_lock: tokio::sync::Mutex::new(()),
            appointments,
            setup_token: crate::accounts::random_token(),
            secure_cookies,
            limits: SessionLimits::default(),
            failures: Mutex::new(HashMap::new()),
            banner: None,
            mailbox: None,
            metrics,
        }
    }

    /// The clinic model in force (a reload, by SIGHUP, the API or a roster edit, changes it).
    pub fn clinic(&self) -> Arc<rules::clinic::Clinic> {
        match &self.reloader {
            Some(r) => r.clinic(),
            None => self.started_clinic.clone(),
        }
    }

    pub fn zone(&self) -> Tz {
        self.clinic().zone
    }

    /// A page: `template` with `values`, the catalogue and who is looking.
    pub fn render(&self, template: &str, viewer: &Viewer, values: Value) -> Response {
        let base = context! {
            t => self.catalogues.messages(viewer.lang),
            lang => viewer.lang.code(),
            user => viewer.account.as_ref().map(|a| a.name.clone()),
            role => viewer.account.as_ref().map(|a| a.role.as_str()),
            may_triage => viewer.may(crate::accounts::Role::Auditor),
            is_admin => viewer.may(crate::accounts::Role::Admin),
            csrf => viewer.csrf.clone(),
            path => viewer.path.clone(),
            clinic => self.clinic().name.clone(),
            banner => self.banner.clone(),
            has_mailbox => self.mailbox.is_some(),
        };
        let page = context! { ..values, ..base };
        match self.env.get_template(template).and_then(|t| t.render(page)) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "page cannot be rendered");
                PageError::Internal.into_response()
            }
        }
    }
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page, then back.
    SignIn(String),
    /// Signed in, but the role does not allow it.
    Forbidden,
    /// A form without its session's CSRF token, or from another site.
    Forged,
    NotFound,
    /// Wrong input, said for people.
    Bad(String),
    /// Not allowed, with why (said for people).
    Refused(String),
    TooMany,
    /// Every search slot is taken: try again shortly.
    Busy,
    /// The audit trail cannot be written: patient data is not shown.
    AuditDown,
    Internal,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            PageError::SignIn(next) => {
                let target = format!("/login?next={}", urlencode(&next));
                return Redirect::to(&target).into_response();
            }
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "この操作の権限がありません / Your role does not allow this".to_owned(),
            ),
            PageError::Forged => (
                StatusCode::FORBIDDEN,
                "フォームの有効期限が切れたか、別のサイトから送られました。ページを開き直してください / The form expired or came from another site: open the page again".to_owned(),
            ),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "見つかりません / Not found".to_owned(),
            ),
            PageError::Bad(message) => (StatusCode::BAD_REQUEST, message),
            PageError::Refused(message) => (StatusCode::FORBIDDEN, message),
            PageError::TooMany => {
                let text = "試行が多すぎます。しばらく待ってください / Too many attempts: wait a while";
                let mut response = (StatusCode::TOO_MANY_REQUESTS, text).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("900"));
                return response;
            }
            PageError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "混み合っています。少し待ってから開き直してください / Busy: try again shortly"
                    .to_owned(),
            ),
            PageError::AuditDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "操作の記録(監査証跡)を保存できないため、表示できません。ディスクの空きを確認してください / The audit trail cannot be written (is the disk full?): nothing is shown until it can".to_owned(),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "内部エラー / Internal error".to_owned(),
            ),
        };
        let html = format!(
            "<!doctype html><html lang=\"ja\"><meta charset=\"utf-8\"><title>mimamori</title>\
             <link rel=\"stylesheet\" href=\"/static/app.css\"><main class=\"error\">\
             <h1>{}</h1><p>{}</p><p><a href=\"/\">mimamori</a></p></main></html>",
            status.as_u16(),
            escape(&text)
        );
        (status, Html(html)).into_response()
    }
}

/// Any serializable value for a template (`context!` takes only what converts to a value).
pub fn ser<T: serde::Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// HTML-escapes text put into a page outside a template.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value.
pub fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The pages' routes (under `/`, beside the API).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/static/app.css", get(style))
        .route("/static/app.js", get(script))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route(
            "/login/code",
            get(pages::login::code_form).post(pages::login::code),
        )
        .route("/account", get(pages::account::page))
        .route("/account/totp", post(pages::account::totp))
        .route(
            "/users/{name}/totp",
            get(pages::account::user_totp).post(pages::account::reset_user_totp),
        )
        .route(
            "/setup",
            get(pages::login::setup_form).post(pages::login::setup),
        )
        .route("/language", post(pages::login::language))
        .route("/search", get(pages::search::page))
        .route("/search/export.csv", get(pages::search::export))
        .route("/events/{id}", get(pages::search::event))
        .route("/reports/patient", get(pages::reports::patient))
        .route("/reports/staff", get(pages::reports::staff))
        .route("/reports/weekly", get(pages::weekly::list))
        .route("/reports/weekly/{week}", get(pages::weekly::show))
        .route("/reports/weekly/{week}/signoff", post(pages::weekly::sign))
        .route("/reports/weekly/{week}/send", post(pages::weekly::send))
        .route(
            "/reports/weekly/{week}/{file}",
            get(pages::weekly::document),
        )
        .route("/mailbox", get(pages::mailbox::list))
        .route("/mailbox/{id}", get(pages::mailbox::show))
        .route("/mailbox/{id}/html", get(pages::mailbox::html))
        .route("/alerts", get(pages::alerts::list))
        .route(
            "/alerts/{id}",
            get(pages::alerts::page).post(pages::alerts::change),
        )
        .route("/sources", get(pages::admin::sources))
        .route("/settings", get(pages::admin::settings))
        .route(
            "/settings/roster",
            get(pages::roster::form).post(pages::roster::change),
        )
        .route(
            "/users",
            get(pages::admin::users).post(pages::admin::add_user),
        )
        .route(
            "/tokens",
            get(pages::tokens::page).post(pages::tokens::change),
        )
}

async fn style() -> Response {
    static_file(STYLE, "text/css; charset=utf-8")
}

async fn script() -> Response {
    static_file(SCRIPT, "text/javascript; charset=utf-8")
}

fn static_file(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Headers on every answer: nothing runs but our own script, nothing frames the pages, no
/// address with a patient's id leaks to another site (`same-origin`: `no-referrer` would make
/// browsers send `Origin: null` with our own forms), and pages are not cached.
pub async fn security_headers(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // (A response that set its own, the weekly report's document, keeps it.)
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_static {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Served over HTTPS (here or by a proxy in front): browsers keep to it for a year.
    if state.ui.as_ref().is_some_and(|ui| ui.secure_cookies) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Whether a `Host` header names this appliance: an address (any: a name is what a page
/// elsewhere would rebind), `localhost`, or one of `web.allowed_hosts`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Refuses a request that names a host this appliance is not (DNS rebinding: a page on
/// another site whose name now points here), before anything else runs. `/healthz` and
/// `/metrics` (no patient data, scraped by name) answer any host.
pub async fn known_host(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = request.uri().path();
    // One Host only, and a request line's own host (`GET http://name/...`) must pass too.
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let named = request.uri().authority().map(|a| a.as_str().to_owned());
    let allowed = hosts <= 1
        && host_allowed(host, &state.allowed_hosts)
        && named
            .as_deref()
            .is_none_or(|n| host_allowed(n, &state.allowed_hosts));
    if path != "/healthz" && path != "/metrics" && !allowed {
        if let Some(ui) = state.ui.as_deref() {
            ui.metrics.refused.with_label_values(&["host"]).inc();
        }
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "このホスト名では応答しません(web.allowed_hosts) / this host name is not served here: add it to web.allowed_hosts\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// The language of a request's pages: the account's choice, else the browser's.
pub(crate) fn lang_of(account_lang: Option<&str>, headers: &axum::http::HeaderMap) -> Lang {
    account_lang.and_then(Lang::from_code).unwrap_or_else(|| {
        Lang::from_accept_language(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_addresses_localhost_and_configured_names_are_served() {
        let allowed = vec!["mimamori.clinic.local".to_owned()];
        for ok in [
            "127.0.0.1:8480",
            "192.0.2.10",
            "[::1]:8480",
            "localhost:8480",
            "MIMAMORI.clinic.local:443",
        ] {
            assert!(super::host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8480",
            "",
            "127.0.0.1.evil.example",
            "[evil]",
        ] {
            assert!(!super::host_allowed(bad, &allowed), "{bad}");
        }
    }
}
