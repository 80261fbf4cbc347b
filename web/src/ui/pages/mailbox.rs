//! The demo's mailbox (`mimamori demo`): the mails the email channel sent, received by a local
//! SMTP server on this machine, listed and opened as a person reads them. Served only when
//! the UI was given a mailbox.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};

use crate::AppState;
use crate::ui::PageError;
use crate::ui::i18n::format_time;
use crate::ui::pages::blocking;
use crate::ui::session::{AnyRole, Page, ui_of};

fn mailbox(state: &AppState) -> Result<alerting::mailbox::Mailbox, PageError> {
    ui_of(state)?.mailbox.clone().ok_or(PageError::NotFound)
}

fn failed(e: std::io::Error) -> PageError {
    tracing::warn!(error = %e, "the demo mailbox cannot be read");
    PageError::Internal
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let mailbox = mailbox(&state)?;
    let dir = mailbox.dir().display().to_string();
    let mails = blocking(move || mailbox.list().map_err(failed)).await?;
    let zone = ui.zone();
    let rows: Vec<_> = mails
        .into_iter()
        .map(|m| {
            context! {
                id => m.id,
                to => m.to,
                subject => m.subject,
                received => format_time(m.received, zone, viewer.lang),
                kib => m.bytes.div_ceil(1024),
            }
        })
        .collect();
    Ok(ui.render("mailbox.html", &viewer, context! { mails => rows, dir }))
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let mailbox = mailbox(&state)?;
    let wanted = id.clone();
    let mail = blocking(move || mailbox.open(&wanted).map_err(failed))
        .await?
        .ok_or(PageError::NotFound)?;
    Ok(ui.render(
        "mail.html",
        &viewer,
        context! {
            id,
            mail => context! {
                from => mail.from,
                to => mail.to,
                subject => mail.subject,
                date => mail.date,
                text => mail.text,
                has_html => mail.html.is_some(),
                attachments => mail.attachments.into_iter().map(|a| context! {
                    name => a.name, content_type => a.content_type, bytes => a.bytes,
                }).collect::<Vec<Value>>(),
            },
        },
    ))
}

/// The mail's HTML part as its own document: inline styles only, nothing runs or loads.
pub(crate) async fn html(
    State(state): State<Arc<AppState>>,
    Page(_, _): Page<AnyRole>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let mailbox = mailbox(&state)?;
    let mail = blocking(move || mailbox.open(&id).map_err(failed))
        .await?
        .ok_or(PageError::NotFound)?;
    let html = mail.html.ok_or(PageError::NotFound)?;
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; \
             frame-ancestors 'none'; sandbox",
        ),
    );
    Ok(response)
}
