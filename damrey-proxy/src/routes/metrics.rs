//! `GET /metrics`: the workers' counters, routing counters, instances and latency
//! histograms, the live agents and the active alarms in Prometheus' text format (open
//! without a token).

use std::fmt::Write as _;

use actix_web::{HttpResponse, web};
use damrey_wire::prometheus::{self, Scope, Series, family};

use damrey_wire::rest::ErrorBody;

use super::AppState;
use crate::alarm::{Alarm, Rule};
use crate::error::ApiError;
use crate::monitor::{DEFAULT_WINDOW_MS, StatsReport};
use crate::store::now_ms;

/// The content type of Prometheus' text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: 200 and the metrics in Prometheus' text format.
///
/// # Errors
/// [`ApiError`] for a store failure.
#[utoipa::path(method(get, head), path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "The metrics in Prometheus' text format",
            content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let snapshot = state.store.snapshot().await?;
    let configured = snapshot.workers.iter().map(|w| w.name.clone()).collect();
    let live_agents = state.monitor.live_agents(now).await?;
    let report = state
        .monitor
        .report_with(now, DEFAULT_WINDOW_MS, &configured, &live_agents)
        .await?;
    let active = state.store.active_alarms().await?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(render(
        &report,
        live_agents.len(),
        &active,
    )))
}

/// The metrics text. Worker names are `A–Z a–z 0–9 _ . -` (validated on the way in),
/// so label values need no escaping.
pub fn render(report: &StatsReport, agents_live: usize, active: &[Alarm]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "damrey_agents_live",
        "gauge",
        "Agents heard from within the agent TTL.",
    );
    let _ = writeln!(out, "damrey_agents_live {agents_live}");
    family(
        &mut out,
        "damrey_worker_live_instances",
        "gauge",
        "Instances of the worker in the live agents' latest heartbeats.",
    );
    for worker in &report.workers {
        let _ = writeln!(
            out,
            "damrey_worker_live_instances{{worker=\"{}\"}} {}",
            worker.worker, worker.live_instances
        );
    }
    let series: Vec<_> = report
        .workers
        .iter()
        .map(|worker| Series::worker(&worker.worker, worker.usage.totals, &worker.usage.latency))
        .collect();
    prometheus::write_steps(&mut out, Scope::Worker, &series);
    let routing: Vec<_> = report
        .workers
        .iter()
        .map(|worker| (worker.worker.as_str(), worker.routing))
        .collect();
    prometheus::write_routing(&mut out, &routing);
    family(
        &mut out,
        "damrey_alarms_active",
        "gauge",
        "Active alarms by rule.",
    );
    for rule in Rule::ALL {
        let count = active
            .iter()
            .filter(|alarm| alarm.condition.rule == rule)
            .count();
        let _ = writeln!(
            out,
            "damrey_alarms_active{{rule=\"{}\"}} {count}",
            rule.as_str()
        );
    }
    out
}
