//! The weekly access reviews: the list of reports kept (signed or not, overdue marked), one
//! week's report (made and kept the first time a finished week is opened; kept as made
//! after that), the report itself as the standalone document an email would carry, and the
//! sign-off an auditor records (who, when, findings, actions, comments), audited.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use minijinja::context;
use report::archive::{ArchiveError, ReportDb, SignOff};
use report::{Period, Span, WeeklyReport};
use serde::Deserialize;

use crate::AppState;
use crate::ui::PageError;
use crate::ui::audit::{self, Entry};
use crate::ui::i18n::format_time;
use crate::ui::pages::{blocking, search_slot};
use crate::ui::ser;
use crate::ui::session::{AnyRole, AuditorRole, Page, Posted, ui_of};

/// The oldest week a review is made of, in weeks before now.
const MAX_WEEKS_BACK: i64 = 262;

fn archive(state: &AppState) -> Result<Arc<ReportDb>, PageError> {
    ui_of(state)?.reports.clone().ok_or(PageError::NotFound)
}

fn archive_error(e: ArchiveError) -> PageError {
    match e {
        ArchiveError::NotFound(_) => PageError::NotFound,
        ArchiveError::Invalid(m) => PageError::Bad(m),
        other => {
            tracing::error!(error = %other, "the report database cannot be used");
            PageError::Internal
        }
    }
}

/// The messages that carried a week's review: channel, state, attempts, last error, when sent.
async fn deliveries(
    state: &Arc<AppState>,
    weeks: Vec<String>,
) -> Result<Vec<Vec<alerting::delivery::store::Delivery>>, PageError> {
    let Some(alerts) = state.alerts.clone() else {
        return Ok(weeks.iter().map(|_| Vec::new()).collect());
    };
    blocking(move || {
        let db = alerts.lock().map_err(|_| PageError::Internal)?;
        weeks
            .iter()
            .map(|w| {
                report::deliver::deliveries(&db, w).map_err(|e| {
                    tracing::error!(error = %e, "the review's deliveries cannot be read");
                    PageError::Internal
                })
            })
            .collect()
    })
    .await
}

/// Whether a review opened is kept: only one made after its scheduled moment (late logs have
/// come in), by someone who may sign it; anyone else gets a provisional one, made afresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    IfFinal,
    Never,
}

/// The kept review of `week` and its sign-offs, made and kept first if the period is final
/// and `keep` allows; otherwise made afresh and not kept (the third value: whether it is kept).
async fn kept(
    state: &Arc<AppState>,
    week: &str,
    keep: Keep,
) -> Result<(WeeklyReport, Vec<SignOff>, bool), PageError> {
    let ui = ui_of(state)?;
    let clinic = ui.clinic();
    let week = Period::parse(week, clinic.zone).map_err(|e| PageError::Bad(e.to_string()))?;
    let db = archive(state)?;
    let name = week.name();
    let found = {
        let (db, name) = (db.clone(), name.clone());
        blocking(move || match db.get(&name) {
            Ok(kept) => Ok(Some(kept)),
            Err(ArchiveError::NotFound(_)) => Ok(None),
            Err(e) => Err(archive_error(e)),
        })
        .await?
    };
    if let Some((kept, signoffs)) = found {
        return Ok((kept, signoffs, true));
    }
    let now = Utc::now();
    // Final once the schedule's moment for it has passed (Monday 08:00, or the 1st, by
    // default): a review frozen at Monday 00:05 would miss the night's imported logs.
    let due = match week.span {
        Span::Week => ui.review_schedule.due(now, clinic.zone),
        Span::Month => ui.review_schedule.due_month(now, clinic.zone),
    };
    let keep = keep == Keep::IfFinal && week.range().1 <= due.range().1;
    if week.range().1 > now {
        return Err(PageError::Bad(
            "この週はまだ終わっていません / this week is not over yet".into(),
        ));
    }
    // Reviews are made for the weeks a store keeps (five years by default), no further back:
    // opening week after week cannot fill the disk with reviews of nothing.
    if week.range().1 < now - chrono::Duration::weeks(MAX_WEEKS_BACK) {
        return Err(PageError::Bad(format!(
            "{MAX_WEEKS_BACK} 週より前の報告は作れません / no review is made of a week more than {MAX_WEEKS_BACK} weeks ago"
        )));
    }
    let slot = search_slot(state).await?;
    let s = state.clone();
    let days = ui.signoff_days;
    let dormant_days = ui.dormant_days;
    let appointments = ui.appointments.clone();
    blocking(move || {
        let _slot = slot;
        // A connection of its own: the alert pages are not held up while the review is made.
        let reader = match &s.alerts {
            Some(a) => {
                let path = a.lock().map_err(|_| PageError::Internal)?.path().to_owned();
                let db = alerting::db::AlertDb::open(
                    std::path::Path::new(&path),
                    chrono::Duration::zero(),
                )
                .map_err(|e| {
                    tracing::error!(error = %e, "the alert database cannot be read for a review");
                    PageError::Internal
                })?;
                Some(db)
            }
            None => None,
        };
        let sources = report::weekly::Sources {
            index: &s.index,
            alerts: reader.as_ref(),
            clinic: &clinic,
            archive: Some(&db),
            signoff_days: days,
            dormant_days,
            appointments: appointments.as_deref(),
        };
        let made = WeeklyReport::build(&sources, week, now).map_err(|e| {
            tracing::error!(error = %e, "a weekly report cannot be made");
            PageError::Internal
        })?;
        if !keep {
            return Ok((made, Vec::new(), false));
        }
        db.keep(&made).map_err(archive_error)?;
        let (kept, signoffs) = db.get(&name).map_err(archive_error)?;
        Ok((kept, signoffs, true))
    })
    .await
}

/// A kept review, for an action on it (sign-off, sending): a provisional one is refused.
async fn final_review(state: &Arc<AppState>, week: &str) -> Result<WeeklyReport, PageError> {
    match kept(state, week, Keep::IfFinal).await? {
        (made, _, true) => Ok(made),
        _ => Err(PageError::Bad(
            "この報告はまだ確定していません(定時の作成後に確認・送信できます) / this review is not final yet: it can be signed off or sent once it is made at its scheduled time".into(),
        )),
    }
}

/// How a viewer opens a review: kept if they may sign it off.
fn keep_for(viewer: &crate::ui::session::Viewer) -> Keep {
    if viewer.may(crate::accounts::Role::Auditor) {
        Keep::IfFinal
    } else {
        Keep::Never
    }
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let db = archive(&state)?;
    let days = ui.signoff_days;
    let rows = blocking(move || db.list().map_err(archive_error)).await?;
    let sent = deliveries(&state, rows.iter().map(|k| k.week.clone()).collect()).await?;
    let zone = ui.zone();
    let now = Utc::now();
    let rows: Vec<minijinja::Value> = rows
        .into_iter()
        .zip(sent)
        .map(|(k, sent)| {
            context! {
                sent => sent.iter().map(|d| context! { channel => d.channel.clone(), state => d.state.as_str() }).collect::<Vec<_>>(),
                week => k.week,
                made => format_time(k.created_at, zone, viewer.lang),
                events => k.events,
                alerts => k.alerts,
                signed => k.signed.as_ref().map(|s| format!("{} ({})", s.reviewer, format_time(s.signed_at, zone, viewer.lang))),
                overdue => k.signed.is_none() && (now - k.created_at).num_days() > days,
            }
        })
        .collect();
    let last = Period::previous(now, zone, Span::Week).name();
    let last_month = Period::previous(now, zone, Span::Month).name();
    Ok(ui.render(
        "weekly_list.html",
        &viewer,
        context! { reports => rows, last => last, last_month => last_month, days => days },
    ))
}

pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Path(week): Path<String>,
) -> Result<Response, PageError> {
    let ui = ui_of(&state)?;
    let (made, signoffs, is_kept) = kept(&state, &week, keep_for(&viewer)).await?;
    audit::require(
        &state,
        &viewer,
        Entry::new("report.weekly", format!("weekly review {}", made.week)),
    )
    .await?;
    let zone = ui.zone();
    let signoffs: Vec<minijinja::Value> = signoffs
        .iter()
        .map(|s| {
            context! {
                reviewer => s.reviewer.clone(),
                at => format_time(s.signed_at, zone, viewer.lang),
                findings => s.findings.clone(),
                actions => s.actions.clone(),
                comments => s.comments.clone(),
            }
        })
        .collect();
    let sent = deliveries(&state, vec![made.week.clone()])
        .await?
        .pop()
        .unwrap_or_default();
    let sent: Vec<minijinja::Value> = sent
        .iter()
        .map(|d| {
            context! {
                channel => d.channel.clone(),
                state => d.state.as_str(),
                attempts => d.attempts,
                at => format_time(d.sent_at.unwrap_or(d.created_at), zone, viewer.lang),
                error => d.last_error.clone(),
            }
        })
        .collect();
    Ok(ui.render(
        "weekly.html",
        &viewer,
        context! {
            r => ser(&made),
            counts => ser(made.alert_counts()),
            provisional => !is_kept,
            signoffs => signoffs,
            sent => sent,
            may_send => ui.review_recipients.is_some() && state.alerts.is_some(),
        },
    ))
}

/// The report as the document an email carries (inline styles, no script).
pub(crate) async fn document(
    State(state): State<Arc<AppState>>,
    Page(viewer, _): Page<AnyRole>,
    Path((week, file)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (made, _, _) = kept(&state, &week, keep_for(&viewer)).await?;
    let lang = viewer.lang;
    let (format, kind) = match file.as_str() {
        "report.html" => (report::Format::Html, "text/html; charset=utf-8"),
        "report.csv" => (report::Format::Csv, "text/csv; charset=utf-8"),
        "report.json" => (report::Format::Json, "application/json"),
        "report.pdf" => (report::Format::Pdf, "application/pdf"),
        _ => return Err(PageError::NotFound),
    };
    audit::require(
        &state,
        &viewer,
        Entry::new(
            "report.weekly",
            format!("weekly review {} ({file})", made.week),
        ),
    )
    .await?;
    // A PDF runs a browser: it counts with the other heavy pages, its slot held until the
    // browser is done (not until the client hangs up).
    let slot = if format == report::Format::Pdf {
        Some(search_slot(&state).await?)
    } else {
        None
    };
    let browser = ui_of(&state)?.pdf_browser.clone();
    let name = made.week.clone();
    let bytes = blocking(move || {
        let _slot = slot;
        report::render_bytes(&made, format, lang, browser.as_deref()).map_err(|e| {
            tracing::warn!(error = %e, "a review cannot be written");
            match format {
                report::Format::Pdf => PageError::Bad(format!("PDF: {e}")),
                _ => PageError::Internal,
            }
        })
    })
    .await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The document's styles are inline (as email needs); it runs nothing.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    if format != report::Format::Html {
        headers.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!(
                "attachment; filename=\"review-{}.{}\"",
                name,
                &file[7..]
            ))
            .unwrap_or(HeaderValue::from_static("attachment")),
        );
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SignForm {
    #[serde(default)]
    findings: String,
    #[serde(default)]
    actions: String,
    #[serde(default)]
    comments: String,
}

pub(crate) async fn sign(
    State(state): State<Arc<AppState>>,
    Path(week): Path<String>,
    Posted(viewer, form, _): Posted<AuditorRole, SignForm>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let made = final_review(&state, &week).await?;
    let signoff = SignOff {
        reviewer: viewer.name().to_owned(),
        signed_at: Utc::now(),
        findings: form.findings.trim().to_owned(),
        actions: form.actions.trim().to_owned(),
        comments: form.comments.trim().to_owned(),
    };
    // Checked before it is recorded as done.
    signoff.check().map_err(archive_error)?;
    let entry = Entry::new(
        "report.signoff",
        format!("weekly review {} signed off", made.week),
    );
    audit::require(&state, &viewer, entry).await?;
    let db = archive(&state)?;
    let name = made.week.clone();
    blocking(move || db.sign(&name, &signoff).map_err(archive_error)).await?;
    Ok(Redirect::to(&format!("/reports/weekly/{}", made.week)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct SendForm {}

/// Sends the kept review to the report channels now (an auditor's request; audited), unless
/// each has one waiting already.
pub(crate) async fn send(
    State(state): State<Arc<AppState>>,
    Path(week): Path<String>,
    Posted(viewer, _form, _): Posted<AuditorRole, SendForm>,
) -> Result<Response, PageError> {
    audit::writable(&state)?;
    let ui = ui_of(&state)?;
    let (Some(recipients), Some(alerts)) = (ui.review_recipients.clone(), state.alerts.clone())
    else {
        return Err(PageError::Bad(
            "送信先がありません / there is nowhere to send the review".into(),
        ));
    };
    let made = final_review(&state, &week).await?;
    let name = made.week.clone();
    // A PDF may be printed: it counts with the other heavy pages until it is done.
    let slot = search_slot(&state).await?;
    // Made (a PDF printed) before the alert database is held.
    let queued = blocking(move || {
        let _slot = slot;
        let outgoing = recipients.messages(&made).map_err(|e| {
            tracing::error!(error = %e, "the weekly review's messages cannot be made");
            PageError::Internal
        })?;
        let db = alerts.lock().map_err(|_| PageError::Internal)?;
        recipients
            .queue(
                &db,
                &outgoing,
                alerting::delivery::store::Again::UnlessPending,
            )
            .map_err(|e| {
                tracing::error!(error = %e, "the weekly review cannot be queued");
                PageError::Internal
            })
    })
    .await?;
    // Recorded as what was done: the channels it was queued for (none: each had one waiting).
    let what = if queued.is_empty() {
        format!("weekly review {name}: sending asked for; each channel had it waiting already")
    } else {
        format!("weekly review {name} queued for {}", queued.join(", "))
    };
    audit::record(&state, &viewer, Entry::new("report.send", what)).await;
    Ok(Redirect::to(&format!("/reports/weekly/{name}#sent")).into_response())
}
