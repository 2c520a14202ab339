//! `POST /call/{worker}?timeout_ms=N`: put a request (the plain JSON list) to a worker and
//! wait for the line's terminal reply, returned as the JSON list. The status tells the
//! replies apart ([`Terminal::http_status`](damrey_actors::Terminal::http_status)):
//! `RESPONSE` (or a final `REQUEST`) 200; a handler's `ERROR` 422; the runtime's
//! `ERROR` for a handler that panicked 500; an `ERROR` the mesh made 502 (configs, unreachable agent or instance) or 503 (no live instance,
//! overloaded), its cause in the `damrey-fault` header; `STOP` 503; `TIMEOUT` 504.
//! A stopping agent refuses new calls (503, `{"error": ...}`).

use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use damrey_actors::spec::validate_name;
use damrey_actors::{FAULT_HEADER, Message};
use damrey_wire::rest::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::routes::AppState;

/// The largest body a call takes: as large as a frame of the internal links (4 MiB), so
/// that a message of 1 MiB arguments, and then some, is carried.
pub const BODY_LIMIT: usize = damrey_wire::frame::MAX_FRAME;

/// The wait when the caller gives none.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// The query of a call: `?timeout_ms=N` (no other parameter).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// How long to wait for the terminal reply in ms (default 5000, capped by the
    /// agent's `max_call_ms`).
    #[serde(default, deserialize_with = "millis")]
    pub timeout_ms: Option<u64>,
}

/// A count of milliseconds, named in the error when it is not one.
fn millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "timeout_ms must be a whole number of milliseconds, not {text:?}"
        ))
    })
}

/// What a call answered 503 carries: the terminal reply (`STOP`, or the mesh's `ERROR`
/// for no live instance or overload), or `{"error": ...}` when the agent is stopping.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Unavailable {
    /// The terminal reply.
    Reply(Message),
    /// The agent is stopping and takes no new calls.
    Refused(ErrorBody),
}

/// Runs the request and answers with its terminal reply.
#[utoipa::path(post, path = "/call/{worker}", tag = "calls",
    params(("worker" = String, Path, description = "The worker the line starts at"), CallQuery),
    request_body(content = Message, description = "The request, as a JSON list of strings; read whatever the `Content-Type`"),
    responses(
        (status = 200, description = "`RESPONSE` (or a final `REQUEST`)", body = Message,
            example = json!(["RESPONSE", "sqsum", "25"])),
        (status = 400, description = "The worker name, the query or the message is invalid", body = ErrorBody),
        (status = 413, description = "The body is larger than 4 MiB", body = ErrorBody),
        (status = 422, description = "The handler answered `ERROR` about the request's data", body = Message,
            example = json!(["ERROR", "sqsum", "not a number: x"])),
        (status = 500, description = "`ERROR`: a handler panicked", body = Message, headers(("damrey-fault" = String, description = "Why the mesh answered `ERROR`: the fault's name"))),
        (status = 502, description = "`ERROR` the mesh made: configs, an unreachable agent or instance", body = Message, headers(("damrey-fault" = String, description = "Why the mesh answered `ERROR`: the fault's name"))),
        (status = 503, description = "`STOP`, or the mesh's `ERROR` (no live instance, overloaded), or the agent is stopping", body = Unavailable, headers(("damrey-fault" = String, description = "Why the mesh answered `ERROR`: the fault's name"))),
        (status = 504, description = "`TIMEOUT`: no terminal reply in time", body = Message,
            example = json!(["TIMEOUT"])),
    ))]
pub async fn call(
    state: web::Data<AppState>,
    worker: web::Path<String>,
    query: web::Query<CallQuery>,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    state.admit()?;
    validate_name("worker", &worker).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let body = body.map_err(|error| match error.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => ApiError::TooLarge { limit: BODY_LIMIT },
        _ => ApiError::Invalid(format!("could not read the body: {error}")),
    })?;
    let message = Message::from_json_slice(&body).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let timeout =
        Duration::from_millis(query.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)).min(state.max_call);
    let reply = state
        .router
        .request_terminal(&worker, message, timeout)
        .await;
    let status =
        StatusCode::from_u16(reply.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if let Some(fault) = reply.fault {
        response.insert_header((FAULT_HEADER, fault.as_str()));
    }
    Ok(response
        .content_type("application/json")
        .body(reply.message.to_json()))
}
