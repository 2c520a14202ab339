//! `GET /metrics`: the workers' counters, instances and latency histograms, the live
//! agents and the active alarms in Prometheus' text format (open without a token).

use std::fmt::Write as _;

use actix_web::{HttpResponse, web};
use damrey_actors::report::{Counters, LATENCY_BOUNDS_MICROS};

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

/// A per-worker family read from the totals: name, TYPE, HELP and the counter.
type CounterFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Counters) -> u64,
);

/// One metric family: its name, HELP text and TYPE.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
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
    let counters: [CounterFamily; 11] = [
        (
            "damrey_worker_steps_received_total",
            "counter",
            "Steps delivered to the worker's instances.",
            |c| c.received,
        ),
        (
            "damrey_worker_steps_processed_total",
            "counter",
            "Steps the worker's instances answered, whatever the answer.",
            |c| c.processed,
        ),
        (
            "damrey_worker_steps_responses_total",
            "counter",
            "Steps answered RESPONSE.",
            |c| c.responses,
        ),
        (
            "damrey_worker_steps_errors_total",
            "counter",
            "Steps answered ERROR.",
            |c| c.errors,
        ),
        (
            "damrey_worker_steps_timeouts_total",
            "counter",
            "Steps that ran out of time.",
            |c| c.timeouts,
        ),
        (
            "damrey_worker_steps_stops_total",
            "counter",
            "Steps answered STOP.",
            |c| c.stops,
        ),
        (
            "damrey_worker_steps_retries_total",
            "counter",
            "Steps retried elsewhere after their instance was lost.",
            |c| c.retries,
        ),
        (
            "damrey_worker_restarts_total",
            "counter",
            "Restarts of the worker's actors after panics.",
            |c| c.restarts,
        ),
        (
            "damrey_worker_steps_in_flight",
            "gauge",
            "Steps delivered and not answered yet.",
            |c| c.in_flight,
        ),
        (
            "damrey_worker_ejections_total",
            "counter",
            "Times an agent ejected one of the worker's instances from its rotation for failing.",
            |c| c.ejections,
        ),
        (
            "damrey_worker_ejected_ms",
            "gauge",
            "How long the instance out of full rotation longest has been out, in ms (0: none).",
            |c| c.ejected_ms,
        ),
    ];
    for (name, kind, help, value) in counters {
        family(&mut out, name, kind, help);
        for worker in &report.workers {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\"}} {}",
                worker.worker,
                value(&worker.usage.totals)
            );
        }
    }
    let name = "damrey_worker_step_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "How long answered steps took, delivery to answer.",
    );
    for worker in &report.workers {
        let label = &worker.worker;
        let mut cumulative = 0u64;
        for (bound, count) in LATENCY_BOUNDS_MICROS
            .iter()
            .zip(&worker.usage.latency.counts)
        {
            cumulative += count;
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{worker=\"{label}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let count = worker.usage.latency.count();
        let sum = worker.usage.latency.sum_us as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{worker=\"{label}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "{name}_sum{{worker=\"{label}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{worker=\"{label}\"}} {count}");
    }
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
