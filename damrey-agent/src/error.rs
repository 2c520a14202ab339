//! The agent's HTTP errors: one `ApiError`, shown as `{"error": "..."}`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use damrey_service::credential::AuthError;
use damrey_wire::rest::ErrorBody;

/// What an agent endpoint answers when it cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No bearer token, a wrong one (401), or one whose roles the endpoint does not
    /// admit (403).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Under mutual TLS, a peer link came without a client certificate (403).
    #[error("a peer link needs a client certificate signed by the mesh's CA (mutual TLS)")]
    NoPeerCertificate,
    /// Under mutual TLS, a peer link's client certificate names no agent: it has no
    /// `damrey-agent://HOST:PORT` URI subject alternative name, or several (403).
    #[error(
        "a peer link needs a certificate that names its agent (one damrey-agent://HOST:PORT \
         URI subject alternative name), and this one names none or several: {}",
        damrey_service::tls::REMAKE
    )]
    PeerNamesNoAgent,
    /// The body is larger than the limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The agent is stopping and takes no new work.
    #[error("the agent is stopping; it takes no new calls or workers")]
    Stopping,
    /// The agent cannot do it yet, but will (it has no configs yet).
    #[error("{0}")]
    NotReady(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(AuthError::Unauthorized) => StatusCode::UNAUTHORIZED,
            ApiError::Auth(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoPeerCertificate | ApiError::PeerNamesNoAgent => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Auth(AuthError::Unauthorized) = self {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody::new(self))
    }
}
