//! `GET /metrics`: every attached instance's counters and step latencies, in the
//! Prometheus text format, open without a token like `/healthz` (DESIGN §8); and
//! `GET /stats`: the same as JSON with latency quantiles, behind the token.

use actix_web::{HttpResponse, web};

use damrey_actors::route_counters::RouteCounts;
use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::AppState;
use crate::stats::{self, InstanceSummary};

/// The counter of envelopes refused for an unknown origin.
const REFUSED_ORIGINS: &str = "damrey_peer_origins_refused_total";

/// The Prometheus text exposition of the agent's stats.
#[utoipa::path(method(get, head), path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "The metrics in Prometheus' text format",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(
            state.sessions.registry.prometheus()
                + &stats::routes_prometheus(
                    &state.router.route_counts(),
                    state.router.not_configured(),
                )
                + &format!(
                    "# HELP {REFUSED_ORIGINS} Envelopes refused because their origin is no agent the proxy lists.\n\
                     # TYPE {REFUSED_ORIGINS} counter\n{REFUSED_ORIGINS} {}\n",
                    state.known.refused()
                )
                + &stats::ejected_prometheus(&state.router.ejected_instances()),
        )
}

/// `{"agent": "host:port", "instances": [...], "workers": [...], "not_configured": N}`:
/// each instance's counters and p50, p90 and p99 in milliseconds; each configured
/// worker's routing events (they outlive its instances), with its instances here out of
/// full rotation for failing (`ejected_now`) and for how long (`ejected_for_ms`); and
/// the steps refused because no worker of their name is configured.
#[utoipa::path(get, path = "/stats", tag = "monitoring",
    responses((status = 200, description = "Each instance's counters and latency, each worker's routing events", body = AgentStats)))]
pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let ejected: std::collections::HashMap<String, (usize, std::time::Duration)> = state
        .router
        .ejected_instances()
        .into_iter()
        .map(|(worker, instances, longest)| (worker, (instances, longest)))
        .collect();
    HttpResponse::Ok().json(AgentStats {
        agent: state.router.me().to_owned(),
        instances: state.sessions.registry.summaries(),
        workers: state
            .router
            .route_counts()
            .into_iter()
            .map(|(worker, counts)| {
                let (instances, longest) = ejected.get(&worker).copied().unwrap_or_default();
                WorkerRouting {
                    worker,
                    counts,
                    ejected_now: instances,
                    ejected_for_ms: u64::try_from(longest.as_millis()).unwrap_or(u64::MAX),
                }
            })
            .collect(),
        not_configured: state.router.not_configured(),
    })
}

/// What `/stats` answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentStats {
    /// The agent's address, `host:port`.
    pub agent: String,
    /// Each attached instance's counters and latency quantiles.
    pub instances: Vec<InstanceSummary>,
    /// Each configured worker's routing events.
    pub workers: Vec<WorkerRouting>,
    /// Steps refused because no worker of their name is configured.
    pub not_configured: u64,
}

/// One configured worker's routing events in `/stats`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkerRouting {
    /// The worker's name.
    pub worker: String,
    /// Its routing counters (flattened into the JSON object): `rerouted`,
    /// `handoff_retries`, `rejected_type`, `rejected_no_instance`, `rejected_overloaded`,
    /// `ejections`.
    #[serde(flatten)]
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub counts: RouteCounts,
    /// Its instances here out of full rotation for failing.
    pub ejected_now: usize,
    /// How long the longest of them has been out, in ms.
    pub ejected_for_ms: u64,
}
