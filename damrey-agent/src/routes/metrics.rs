//! `GET /metrics`: every attached instance's counters and step latencies, in the
//! Prometheus text format. Open without a token, like `/healthz` (DESIGN §8).

use actix_web::{HttpResponse, web};

use crate::routes::AppState;

/// The Prometheus text exposition of the agent's stats.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.sessions.registry.prometheus())
}
