//! `ApiError`: every failure an HTTP caller can see, as `{"error": "..."}` with its status.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use damrey_service::credential::AuthError;
use damrey_service::telemetry::error_chain;
use damrey_wire::rest::ErrorBody;

use crate::store::StoreError;

/// A request that failed; caller mistakes show their message, internal failures do not.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// The path or the named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already (409).
    #[error("{0}")]
    Conflict(String),
    /// The bearer token is missing or wrong (401), or its roles do not cover the
    /// endpoint (403).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body is larger than the limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The path exists but not for this method (405).
    #[error("method {method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path asked for.
        path: String,
        /// The methods the path takes, joined by `, `.
        allowed: String,
    },
    /// The store cannot be reached right now (503).
    #[error("the store is unavailable; try again shortly")]
    Unavailable(#[source] StoreError),
    /// Anything else (500).
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let cause = match &error {
            StoreError::Batch(cause) => &**cause,
            error => error,
        };
        match cause {
            StoreError::Conflict(_) => ApiError::Conflict(error.to_string()),
            StoreError::NotFound(_) => ApiError::NotFound(error.to_string()),
            StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Stopped => {
                ApiError::Unavailable(error)
            }
            _ => ApiError::Internal(error),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Auth(AuthError::Unauthorized) => StatusCode::UNAUTHORIZED,
            ApiError::Auth(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable(cause) => {
                tracing::warn!(error = %error_chain(cause), "store unavailable");
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause), "request failed");
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                response.insert_header((
                    header::ALLOW,
                    HeaderValue::from_str(allowed).expect("method names are header values"),
                ));
            }
            ApiError::Auth(AuthError::Unauthorized) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        response.json(ErrorBody::new(self))
    }
}
