//! The HTTP side of the appliance: the API (search, ingest, alerts, rules, health, metrics) and
//! the web UI's pages ([`ui`], with the accounts of [`accounts`]) on a bounded listener. Each
//! API area is a module of [`api`]; who may call what is decided by the extractors in [`auth`];
//! errors are [`error::ApiError`].

pub mod accounts;
pub mod api;
pub mod api_tokens;
pub mod auth;
pub mod error;
pub mod https;
pub mod listener;
pub mod sessions;
pub mod twofactor;
pub mod ui;
pub mod web_config;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ingest::import::Importer;
use store::{EventIndex, Health, StoreHandle};

pub use crate::api::alerts::alert_filter;
pub use crate::api::search::{SEARCH_SLOTS, event_json, search_request};
use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub index: EventIndex,
    pub registry: prometheus::Registry,
    /// Present when the store is writable (not for a read-only search server).
    pub importer: Option<Arc<Importer>>,
    /// The store, when this server writes one: HTTP ingest asks it whether it takes data.
    pub store: Option<StoreHandle>,
    /// Every stage's state, for `/healthz`.
    pub health: Health,
    pub ingest_tokens: Arc<Vec<String>>,
    /// Tokens for changing things: alert status, rule reload.
    pub admin_tokens: Arc<Vec<String>>,
    /// Tokens for reading search results and alerts; none: reads are open.
    pub read_tokens: Arc<Vec<String>>,
    pub max_body_bytes: usize,
    /// The alert database, opened once and shared by the requests (the rules thread has its
    /// own connection; SQLite's WAL mode lets them work side by side).
    pub alerts: Option<Arc<std::sync::Mutex<alerting::db::AlertDb>>>,
    pub reloader: Option<Arc<alerting::runner::Reloader>>,
    /// Searches running at once, at most [`SEARCH_SLOTS`]: each may hold up to
    /// [`store::MAX_RESULT_BYTES`] of events.
    pub search_slots: Arc<tokio::sync::Semaphore>,
    /// A request not answered within this long gets 503 (`http.request_timeout_secs`).
    pub request_timeout: std::time::Duration,
    /// Who may read the live alert stream and acknowledge alerts with their own token.
    pub subscribers: Arc<Vec<alerting::delivery::SubscriberConfig>>,
    /// The appliance's name and link base, for the alert documents of the stream.
    pub origin: alerting::document::Origin,
    /// Every rule an alert can come from (silences must name one of them).
    pub rule_names: Arc<Vec<String>>,
    /// The clinic's sites (silences must name one of them).
    pub site_names: Arc<Vec<String>>,
    /// Live streams open at once, at most [`api::delivery::MAX_STREAMS`].
    pub streams: Arc<tokio::sync::Semaphore>,
    /// The web UI's pages; none: the API alone (`[web] enabled = false`).
    pub ui: Option<Arc<ui::Ui>>,
    /// Accounts and API tokens (`accounts.db`).
    pub accounts: Option<Arc<accounts::AccountDb>>,
    /// Reads (search, alerts) need no token: the API listens on loopback only and no token
    /// grants reading.
    pub open_reads: bool,
    /// Host names requests may name besides addresses and `localhost` (`web.allowed_hosts`).
    pub allowed_hosts: Arc<Vec<String>>,
}

impl AppState {
    /// The clinic's time zone (UTC when this server has no clinic model).
    pub fn zone(&self) -> chrono_tz::Tz {
        match (&self.reloader, &self.ui) {
            (Some(reloader), _) => reloader.clinic().zone,
            (None, Some(ui)) => ui.zone(),
            (None, None) => chrono_tz::UTC,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/healthz", get(api::health::healthz))
        .route("/metrics", get(api::health::metrics))
        .route("/api/v1/search", get(api::search::search))
        .route("/api/v1/ingest", post(api::ingest::ingest))
        .route("/api/v1/alerts", get(api::alerts::alerts))
        .route("/api/v1/rules/reload", post(api::rules::reload))
        .route("/api/v1/alerts/{id}", get(api::alerts::alert))
        .route(
            "/api/v1/alerts/{id}/status",
            post(api::alerts::alert_status),
        )
        .route("/api/v1/alerts/stream", get(api::delivery::stream))
        .route("/api/v1/deliveries", get(api::delivery::deliveries))
        .route(
            "/api/v1/silences",
            get(api::delivery::silences).post(api::delivery::add_silence),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(api::delivery::expire_silence),
        )
        .merge(ui::routes())
        // The body limit is enforced in the handler (with a 413 that says so).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ui::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ui::known_host,
        ))
        .with_state(state)
}

/// Every request is answered within `http.request_timeout_secs`: 503 after that.
async fn deadline(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "timeout",
            message: format!(
                "the request took longer than {} s (http.request_timeout_secs)",
                state.request_timeout.as_secs()
            ),
        }
        .into_response(),
    }
}
