//! `POST /call/{worker}?timeout_ms=N`: put a request (the plain JSON list) to a worker and
//! wait for the line's terminal reply, returned as the JSON list. The status tells the
//! tags apart: `RESPONSE` (or a final `REQUEST`) 200, `ERROR` 422, `STOP` 503,
//! `TIMEOUT` 504. A stopping agent refuses new calls (503, `{"error": ...}`).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use damrey_actors::spec::validate_name;
use damrey_actors::{Message, Tag};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::AppState;

/// The wait when the caller gives none.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// The query of a call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// How long to wait for the terminal reply (capped by the agent's `max_call_ms`).
    pub timeout_ms: Option<u64>,
}

/// Runs the request and answers with its terminal reply.
pub async fn call(
    state: web::Data<AppState>,
    worker: web::Path<String>,
    query: web::Query<CallQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    state.admit()?;
    validate_name("worker", &worker).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let message = Message::from_json_slice(&body).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let timeout =
        Duration::from_millis(query.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)).min(state.max_call);
    let reply = state.router.request(&worker, message, timeout).await;
    let status = match reply.tag {
        Tag::Request | Tag::Response => StatusCode::OK,
        Tag::Error => StatusCode::UNPROCESSABLE_ENTITY,
        Tag::Stop => StatusCode::SERVICE_UNAVAILABLE,
        Tag::Timeout => StatusCode::GATEWAY_TIMEOUT,
    };
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(reply.to_json()))
}
