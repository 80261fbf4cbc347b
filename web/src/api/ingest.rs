//! `POST /api/v1/ingest`: a body of records, imported as `mimamori import` would; answered once
//! the events are in the log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use ingest::import::Format;
use serde::Deserialize;
use serde_json::json;
use store::StoreHandle;

use crate::AppState;
use crate::auth::Ingester;
use crate::error::{ApiError, bad_parameter, query};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    format: Option<String>,
}

/// Per-record errors listed in an ingest answer, at most.
const MAX_LISTED_ERRORS: usize = 1000;

/// `POST /api/v1/ingest?format=<an import format>` (default auto): the body's records are
/// imported as `mimamori import` would, and the answer comes once they are durable.
pub(crate) async fn ingest(
    _: Ingester,
    State(state): State<Arc<AppState>>,
    params: Result<Query<IngestParams>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = |status, code, message: String| ApiError::Status {
        status,
        code,
        message,
    };
    let Some(importer) = state.importer.clone() else {
        return Err(status(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server does not store events".into(),
        ));
    };
    let params = query(params)?;
    // A store that refuses data (a full disk) says so before the body is read.
    if let Some(reason) = state.store.as_ref().and_then(StoreHandle::refusing) {
        return Err(status(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{reason}; try again later"),
        ));
    }
    // The same names as `mimamori import --format`.
    let format = params
        .format
        .as_deref()
        .unwrap_or("auto")
        .parse::<Format>()
        .map_err(|message| bad_parameter(format!("format: {message}")))?;
    let max = state.max_body_bytes;
    let too_large = move |what: &str| ApiError::Status {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        message: format!("the {what} is over the limit of {max} bytes (http.max_body_bytes)"),
    };
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large("request body"))?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || bytes.starts_with(&[0x1f, 0x8b]);
    let started = std::time::Instant::now();
    let outcome = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        use std::io::Read;
        let body: Vec<u8> = if gzip {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest {
                    code: "bad_gzip",
                    message: format!("the gzip body does not decompress: {e}"),
                })?;
            if out.len() > max {
                return Err(too_large("decompressed body"));
            }
            out
        } else {
            bytes.to_vec()
        };
        // The answer lists the first rejects; the count says how many there were.
        let mut rejects = ingest::import::LineCap::new(Vec::new(), MAX_LISTED_ERRORS as u64);
        let report = importer
            .import_stream(format, &mut &body[..], "http", Some(&mut rejects))
            .map_err(|e| match e {
                ingest::import::ImportError::Store(message) => ApiError::Status {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message,
                },
                ingest::import::ImportError::Input(message) => ApiError::BadRequest {
                    code: "bad_body",
                    message,
                },
            })?;
        let listed: Vec<u8> = rejects.finish().unwrap_or_default();
        Ok((report, listed))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (report, rejects) = outcome?;
    let errors: Vec<&str> = std::str::from_utf8(&rejects)
        .unwrap_or("")
        .lines()
        .take(MAX_LISTED_ERRORS)
        .map(|l| l.strip_prefix("http: ").unwrap_or(l))
        .collect();
    Ok(Json(json!({
        "accepted": report.accepted,
        "rejected": report.rejected,
        "duplicates": report.duplicates,
        "filtered": report.filtered.values().sum::<u64>(),
        "gaps": report.gaps,
        "searchable": report.not_searchable == 0,
        "errors": errors,
        "took_ms": started.elapsed().as_secs_f64() * 1000.0,
    })))
}
