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
    /// Nobody is signed in.
    Unauthenticated(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Splitter(e)
    }
}

impl ApiError {
    /// The status, the stable machine-readable `code`, and the message.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadBody(m) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_body", m.clone()),
            ApiError::PreconditionRequired => (
                StatusCode::PRECONDITION_REQUIRED,
                "if_match_required",
                "send If-Match with the policy's ETag (its revision): GET the policy first".into(),
            ),
            ApiError::Unauthenticated(m) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", m.clone())
            }
            ApiError::Splitter(e) => {
                let (status, code) = match e {
                    Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
                    Error::NotAllowed(_) => (StatusCode::CONFLICT, "not_allowed"),
                    Error::NoChange(_) => (StatusCode::CONFLICT, "no_change"),
                    Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                    Error::AlreadyExists(_) | Error::RecordExists(_) => {
                        (StatusCode::CONFLICT, "already_exists")
                    }
                    Error::Conflict { .. } => (StatusCode::CONFLICT, "stale_revision"),
                    Error::Unavailable { .. } | Error::Corrupt { .. } => {
                        (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
                    }
                };
                (status, code, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut body = json!({ "error": message, "code": code });
        match &self {
            ApiError::Splitter(Error::Invalid { field, .. }) => body["field"] = json!(field),
            ApiError::Splitter(Error::Conflict { current, .. }) => body["current"] = json!(current),
            _ => {}
        }
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
