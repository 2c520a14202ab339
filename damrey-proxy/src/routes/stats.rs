//! `GET /workers/stats`: every worker's counters, rates, latency and instances.

use actix_web::{HttpResponse, web};
use damrey_wire::rest::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use crate::error::ApiError;
use crate::monitor::{DEFAULT_WINDOW_MS, MAX_WINDOW_MS, MIN_WINDOW_MS, Scope};
use crate::store::now_ms;

/// The most workers one page of `GET /workers/stats` holds.
pub const MAX_LIMIT: usize = 1_000;

/// The query of `GET /workers/stats`: `?window_ms=N&worker=W&agent=A&after=W&limit=K`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// The window rates and latencies are measured over (default 10000, 1000 to 3600000).
    pub window_ms: Option<u64>,
    /// Only this worker.
    pub worker: Option<String>,
    /// Only the instances, live counts and routing counters of this agent (`host:port`).
    pub agent: Option<String>,
    /// Only the workers named after this one (byte order): the `next` of the page before.
    pub after: Option<String>,
    /// At most this many workers (1 to 1000); the answer's `next` asks for the rest.
    pub limit: Option<usize>,
}

/// `GET /workers/stats[?window_ms=N][&worker=W][&agent=A][&after=W][&limit=K]`: 200 and
/// the [`crate::monitor::StatsReport`], of every worker or those asked for, a page at a
/// time with `limit`.
///
/// # Errors
/// [`ApiError`] for a window out of range or a store failure.
#[utoipa::path(get, path = "/workers/stats", tag = "monitoring", params(StatsQuery),
    responses(
        (status = 200, description = "Every worker's counters, rates, latency and instances",
            body = crate::monitor::StatsReport),
        (status = 400, description = "The window or the limit is out of range, or the query is invalid", body = ErrorBody),
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
    if let Some(limit) = query.limit
        && !(1..=MAX_LIMIT).contains(&limit)
    {
        return Err(ApiError::Invalid(format!(
            "limit {limit} must be from 1 to {MAX_LIMIT}"
        )));
    }
    let scope = Scope {
        worker: query.worker.clone(),
        agent: query.agent.clone(),
    };
    let mut report = state.monitor.report(now_ms(), window_ms, &scope).await?;
    report.page(query.after.as_deref(), query.limit);
    Ok(HttpResponse::Ok().json(report))
}
