//! `GET /metrics`: every attached instance's counters and step latencies, in the
//! Prometheus text format, open without a token like `/healthz` (DESIGN §8); and
//! `GET /stats`: the same as JSON with latency quantiles, behind the token.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::routes::AppState;

/// The Prometheus text exposition of the agent's stats.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.sessions.registry.prometheus())
}

/// `{"agent": "host:port", "instances": [...]}` with each instance's counters and p50,
/// p90 and p99 in milliseconds.
///
/// # Errors
/// [`ApiError::Unauthorized`] without the token, when one is set.
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.authorize(&req)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "agent": state.router.me(),
        "instances": state.sessions.registry.summaries(),
    })))
}
