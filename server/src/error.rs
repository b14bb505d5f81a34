//! The server's one error type and its one mapping to HTTP.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use splitter::Error;

/// An API failure: what went wrong, as a sentence, with the status that says so.
#[derive(Debug)]
pub enum ApiError {
    /// A splitter error (validation, rules, conflict, store).
    Splitter(Error),
    /// The request body is not the JSON this endpoint takes.
    BadBody(String),
    /// A write without `If-Match`.
    PreconditionRequired,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Splitter(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadBody(m) => (StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": m })),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                json!({ "error": "send If-Match with the policy's ETag (its revision): GET the policy first" }),
            ),
            ApiError::Splitter(e) => match e {
                Error::Invalid { field, .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "error": e.to_string(), "field": field }),
                ),
                Error::NotAllowed(_) | Error::NoChange(_) => {
                    (StatusCode::CONFLICT, json!({ "error": e.to_string() }))
                }
                Error::NotFound(_) => (StatusCode::NOT_FOUND, json!({ "error": e.to_string() })),
                Error::AlreadyExists(_) => {
                    (StatusCode::CONFLICT, json!({ "error": e.to_string() }))
                }
                Error::Conflict { current, .. } => (
                    StatusCode::CONFLICT,
                    json!({ "error": e.to_string(), "current": current }),
                ),
                Error::Unavailable { .. } | Error::Corrupt { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": e.to_string() }),
                ),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Splitter(Error::Conflict {
            current: Some(c), ..
        }) = &self
        {
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", c.revision)) {
                response.headers_mut().insert(header::ETAG, etag);
            }
        }
        response
    }
}
