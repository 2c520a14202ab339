//! `GET /workers/stats`: every worker's counters, rates, latency and instances.

use actix_web::{HttpResponse, web};
use damrey_wire::rest::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use crate::error::ApiError;
use crate::monitor::{DEFAULT_WINDOW_MS, MAX_WINDOW_MS, MIN_WINDOW_MS};
use crate::store::now_ms;

/// The query of `GET /workers/stats`: `?window_ms=N`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window rates and latencies are measured over (default 10000, 1000 to 3600000).
    pub window_ms: Option<u64>,
}

/// `GET /workers/stats[?window_ms=N]`: 200 and the [`crate::monitor::StatsReport`].
///
/// # Errors
/// [`ApiError`] for a window out of range or a store failure.
#[utoipa::path(get, path = "/workers/stats", tag = "monitoring", params(StatsQuery),
    responses(
        (status = 200, description = "Every worker's counters, rates, latency and instances",
            body = crate::monitor::StatsReport),
        (status = 400, description = "The window is out of range or the query is invalid", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn stats(
    state: web::Data<AppState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let window_ms = query.window_ms.unwrap_or(DEFAULT_WINDOW_MS);
    if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&window_ms) {
        return Err(ApiError::Invalid(format!(
            "window_ms {window_ms} must be from {MIN_WINDOW_MS} to {MAX_WINDOW_MS}"
        )));
    }
    let report = state.monitor.report(now_ms(), window_ms).await?;
    Ok(HttpResponse::Ok().json(report))
}
