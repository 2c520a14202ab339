//! The Prometheus text of the step counters and latencies: one writer for the agent's
//! `/metrics` (a series per attached instance) and the proxy's (a series per worker),
//! with each side's metric names from the table of [`crate::steps`]; and of the routing
//! counters the proxy sums per worker ([`crate::steps::ROUTING`]).

use std::fmt::Write as _;

use crate::latency::{LATENCY_BOUNDS_MICROS, LATENCY_BUCKETS, Latency};
use crate::steps::{Counters, Family, ROUTING, Routing, STEPS};

/// Whose series a `/metrics` page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One series per worker instance (the agent), labelled `worker` and
    /// `worker_instance`.
    Instance,
    /// One series per worker (the proxy), labelled `worker`.
    Worker,
}

impl Scope {
    /// The latency histogram's family.
    fn latency(self) -> Family {
        match self {
            Scope::Instance => Family {
                name: "damrey_step_duration_seconds",
                help: "How long steps took, delivery to answer.",
            },
            Scope::Worker => Family {
                name: "damrey_worker_step_duration_seconds",
                help: "How long answered steps took, delivery to answer.",
            },
        }
    }
}

/// One series: its labels, its counters and its latency histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series<'a> {
    /// The labels between the braces, e.g. `worker="add"`.
    pub labels: String,
    /// Its counters.
    pub counters: Counters,
    /// Its latency histogram.
    pub latency: &'a Latency,
}

impl<'a> Series<'a> {
    /// A worker instance's series: `worker="add",worker_instance="3"` (not `instance`,
    /// which Prometheus sets to the scraped target). Worker names are validated (`A–Z
    /// a–z 0–9 _ . -`), so nothing needs escaping.
    pub fn instance(worker: &str, instance: u64, counters: Counters, latency: &'a Latency) -> Self {
        Series {
            labels: format!("worker=\"{worker}\",worker_instance=\"{instance}\""),
            counters,
            latency,
        }
    }

    /// A worker's series: `worker="add"` (validated, so not escaped).
    pub fn worker(worker: &str, counters: Counters, latency: &'a Latency) -> Self {
        Series {
            labels: format!("worker=\"{worker}\""),
            counters,
            latency,
        }
    }
}

/// Writes a metric family's `HELP` and `TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes the step counters' families that `scope` exposes, in the table's order, then
/// the latency histogram: each family's header, then one line per series.
pub fn write_steps(out: &mut String, scope: Scope, series: &[Series<'_>]) {
    for step in STEPS {
        let metric = match scope {
            Scope::Instance => step.instance,
            Scope::Worker => Some(step.worker),
        };
        let Some(metric) = metric else { continue };
        family(out, metric.name, step.kind.prometheus_type(), metric.help);
        for one in series {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                metric.name,
                one.labels,
                (step.value)(&one.counters)
            );
        }
    }
    let Family { name, help } = scope.latency();
    family(out, name, "histogram", help);
    for one in series {
        let labels = &one.labels;
        let mut cumulative = 0u64;
        for bucket in 0..LATENCY_BUCKETS {
            cumulative =
                cumulative.saturating_add(one.latency.counts.get(bucket).copied().unwrap_or(0));
            let le = LATENCY_BOUNDS_MICROS.get(bucket).map_or_else(
                || "+Inf".to_owned(),
                |&micros| format!("{}", micros as f64 / 1e6),
            );
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = one.latency.sum_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Writes the routing counters' families, in the table's order, each with one line per
/// worker of `workers` (names validated, so not escaped).
pub fn write_routing(out: &mut String, workers: &[(&str, Routing)]) {
    for step in ROUTING {
        let Family { name, help } = step.worker;
        family(out, name, "counter", help);
        for (worker, routing) in workers {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{worker}\"}} {}",
                (step.value)(routing)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_routing_counter_is_a_family_with_a_line_per_worker() {
        let mut out = String::new();
        let idle = Routing {
            rejected_no_instance: 4,
            ..Routing::default()
        };

        write_routing(&mut out, &[("add", Routing::default()), ("idle", idle)]);

        for line in [
            "# TYPE damrey_worker_rejected_no_instance_total counter",
            "damrey_worker_rejected_no_instance_total{worker=\"add\"} 0",
            "damrey_worker_rejected_no_instance_total{worker=\"idle\"} 4",
            "damrey_worker_rejected_overloaded_total{worker=\"idle\"} 0",
            "damrey_worker_rejected_type_total{worker=\"idle\"} 0",
            "damrey_worker_handoff_retries_total{worker=\"idle\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
        }
    }

    #[test]
    fn a_worker_series_lists_every_step_and_an_instance_series_what_the_agent_exposes() {
        let mut latency = Latency::default();
        latency.counts[1] = 2;
        latency.counts[16] = 1;
        latency.sum_us = 20_000_150;
        let counters = Counters {
            received: 3,
            ejections: 1,
            ..Counters::default()
        };
        let mut worker = String::new();
        let mut instance = String::new();

        write_steps(
            &mut worker,
            Scope::Worker,
            &[Series::worker("add", counters, &latency)],
        );
        write_steps(
            &mut instance,
            Scope::Instance,
            &[Series::instance("add", 7, counters, &latency)],
        );

        for line in [
            "# TYPE damrey_worker_steps_received_total counter",
            "damrey_worker_steps_received_total{worker=\"add\"} 3",
            "damrey_worker_ejections_total{worker=\"add\"} 1",
            "# TYPE damrey_worker_ejected_ms gauge",
            "damrey_worker_step_duration_seconds_bucket{worker=\"add\",le=\"0.00005\"} 0",
            "damrey_worker_step_duration_seconds_bucket{worker=\"add\",le=\"0.0001\"} 2",
            "damrey_worker_step_duration_seconds_bucket{worker=\"add\",le=\"+Inf\"} 3",
            "damrey_worker_step_duration_seconds_sum{worker=\"add\"} 20.00015",
            "damrey_worker_step_duration_seconds_count{worker=\"add\"} 3",
        ] {
            assert!(
                worker.lines().any(|l| l == line),
                "no `{line}` in:\n{worker}"
            );
        }
        for line in [
            "damrey_steps_received_total{worker=\"add\",worker_instance=\"7\"} 3",
            "damrey_instance_restarts_total{worker=\"add\",worker_instance=\"7\"} 0",
            "# TYPE damrey_steps_in_flight gauge",
            "damrey_step_duration_seconds_count{worker=\"add\",worker_instance=\"7\"} 3",
        ] {
            assert!(
                instance.lines().any(|l| l == line),
                "no `{line}` in:\n{instance}"
            );
        }
        assert!(!instance.contains("eject"), "{instance}");
    }
}
