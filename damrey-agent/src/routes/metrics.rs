//! `GET /metrics`: every attached instance's counters and step latencies, in the
//! Prometheus text format, open without a token like `/healthz` (DESIGN §8); and
//! `GET /stats`: the same as JSON with latency quantiles, behind the token.

use actix_web::{HttpResponse, web};

use crate::routes::AppState;
use crate::stats;

/// The counter of envelopes refused for an unknown origin.
const REFUSED_ORIGINS: &str = "damrey_peer_origins_refused_total";

/// The Prometheus text exposition of the agent's stats.
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
pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    let ejected: std::collections::HashMap<String, (usize, std::time::Duration)> = state
        .router
        .ejected_instances()
        .into_iter()
        .map(|(worker, instances, longest)| (worker, (instances, longest)))
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "agent": state.router.me(),
        "instances": state.sessions.registry.summaries(),
        "workers": state.router.route_counts().into_iter().map(|(worker, counts)| {
            let mut entry = serde_json::to_value(counts).expect("counts serialize");
            let (instances, longest) = ejected.get(&worker).copied().unwrap_or_default();
            entry["ejected_now"] = instances.into();
            entry["ejected_for_ms"] = u64::try_from(longest.as_millis()).unwrap_or(u64::MAX).into();
            entry["worker"] = worker.into();
            entry
        }).collect::<Vec<_>>(),
        "not_configured": state.router.not_configured(),
    }))
}
