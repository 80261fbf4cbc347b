//! The API's errors: `{"code": "bad_query", "message": "..."}` with the status that fits; a 503
//! carries `Retry-After`; an internal error says only "internal error" and logs the detail.

use axum::Json;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use store::StoreError;
use tracing::error;

/// An error as the API reports it: `{"code": "bad_query", "message": "..."}`.
#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    /// Any other client error with its status (401, 403, 413, ...).
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { code, message } => (
                StatusCode::BAD_REQUEST,
                Json(json!({ "code": code, "message": message })),
            )
                .into_response(),
            ApiError::Status {
                status,
                code,
                message,
            } => {
                let mut response =
                    (status, Json(json!({ "code": code, "message": message }))).into_response();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // The store refuses data for now (a full disk): senders should come back.
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                }
                response
            }
            ApiError::Internal(detail) => {
                error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({ "code": "internal", "message": "internal error" })),
                )
                    .into_response()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::BadQuery(message) => ApiError::BadRequest {
                code: "bad_query",
                message,
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A query-string parameter that is wrong, and why.
pub(crate) fn bad_parameter(message: String) -> ApiError {
    ApiError::BadRequest {
        code: "bad_parameter",
        message,
    }
}

/// The query string's parameters, or what is wrong with them.
pub(crate) fn query<T>(
    params: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| bad_parameter(e.body_text()))
}

store::reason_error! {
    /// A request parameter (or command-line option) that is wrong, and why.
    BadParameter
}

/// A small JSON request body: at most `max` bytes (413 beyond, naming `what`), read as `T`
/// (400 with `code`, saying what was `expected`, otherwise).
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
    body: axum::body::Body,
    max: usize,
    what: &str,
    code: &'static str,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::Status {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: format!("{what} is at most {max} bytes"),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
        code,
        message: format!("expected {expected}: {e}"),
    })
}
