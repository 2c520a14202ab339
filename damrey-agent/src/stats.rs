//! Per-instance counters and step latencies, counted by the agent for every worker
//! instance attached to it, and their Prometheus text form for `GET /metrics`; and the
//! router's per-worker routing counters as the heartbeat and `/metrics` show them.
//!
//! Counting a step costs a few relaxed atomic additions and one histogram record.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use damrey_actors::Tag;
use damrey_actors::outlier::Health;
use damrey_actors::report::{
    Counters, InstanceReport, LATENCY_BOUNDS_MICROS as BOUNDS_MICROS, Latency, Routing,
};
use damrey_actors::route_counters::RouteCounts;
use damrey_wire::prometheus::{self, Scope, Series};
use damrey_wire::steps::Tally;
use serde::Serialize;

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One count per bucket of `BOUNDS_MICROS`, and a last one for anything longer.
    counts: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The counts and sum as they are now.
    pub fn snapshot(&self) -> Latency {
        Latency {
            sum_us: self.sum_micros.load(Ordering::Relaxed),
            counts: self
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// What the agent counts for one attached worker instance.
#[derive(Debug)]
pub struct InstanceStats {
    /// The worker's name.
    pub worker: String,
    /// The instance's number on this agent.
    pub instance: u64,
    /// The step counters the agent counts itself (declared in `damrey_wire::steps`).
    pub tally: Tally,
    /// How long answered steps took, delivery to answer.
    pub latency: Histogram,
    /// The router's view of the instance (ejections), once it is attached.
    pub health: OnceLock<Arc<Health>>,
}

impl InstanceStats {
    /// Counts a step's answer and its duration.
    pub fn answered(&self, tag: Tag, took: Duration) {
        let counter = match tag {
            Tag::Request | Tag::Response => &self.tally.responses,
            Tag::Error => &self.tally.errors,
            Tag::Timeout => &self.tally.timeouts,
            Tag::Stop => &self.tally.stops,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.record(took);
    }
}

/// One instance's counters and latency quantiles, as `GET /stats` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InstanceSummary {
    /// The worker's name.
    pub worker: String,
    /// The instance's number on this agent.
    pub instance: u64,
    /// Its counters (flattened into the JSON object).
    #[serde(flatten)]
    pub counters: Counters,
    /// Step latency quantiles in milliseconds (bucket upper bounds); `None` before any step.
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p90_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
}

impl InstanceStats {
    /// The counters and histogram as the heartbeat reports them to the proxy.
    pub fn report(&self) -> InstanceReport {
        let mut report =
            InstanceReport::new(self.worker.clone(), self.instance, self.latency.snapshot());
        self.tally.load_into(&mut report);
        report.ejections = self.health.get().map_or(0, |health| health.ejections());
        report.ejected_ms = self
            .health
            .get()
            .and_then(|health| health.out_for(tokio::time::Instant::now()))
            .map_or(0, |out| u64::try_from(out.as_millis()).unwrap_or(u64::MAX));
        report
    }

    /// A snapshot of the counters and quantiles, for `GET /stats`.
    pub fn summary(&self) -> InstanceSummary {
        let report = self.report();
        InstanceSummary {
            counters: Counters::of(&report),
            p50_ms: report.latency.quantile_ms(0.50),
            p90_ms: report.latency.quantile_ms(0.90),
            p99_ms: report.latency.quantile_ms(0.99),
            worker: report.worker,
            instance: report.instance,
        }
    }
}

/// The stats of every instance attached to this agent.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<Vec<Arc<InstanceStats>>>,
    /// Instances that left, and how many more heartbeats report their final counts:
    /// the steps lost with a vanished instance are counted as it goes, and would
    /// otherwise never reach the proxy.
    departed: Mutex<Vec<(Arc<InstanceStats>, u32)>>,
}

/// Heartbeats that report an instance's final counts after it left.
const DEPARTED_REPORTS: u32 = 2;

impl Registry {
    /// Starts counting for a new instance of `worker`.
    pub fn register(&self, worker: &str) -> Arc<InstanceStats> {
        let stats = Arc::new(InstanceStats {
            worker: worker.to_owned(),
            instance: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            tally: Tally::default(),
            latency: Histogram::default(),
            health: OnceLock::new(),
        });
        self.live().push(stats.clone());
        stats
    }

    /// Stops listing an instance that left.
    pub fn unregister(&self, stats: &Arc<InstanceStats>) {
        self.live().retain(|live| !Arc::ptr_eq(live, stats));
        self.departed().push((stats.clone(), DEPARTED_REPORTS));
    }

    fn departed(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<InstanceStats>, u32)>> {
        self.departed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stats of every attached instance.
    pub fn instances(&self) -> Vec<Arc<InstanceStats>> {
        self.live().clone()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Arc<InstanceStats>>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every attached instance's counters, as the heartbeat reports them, and those of
    /// instances that left lately (their final counts, for a couple of heartbeats).
    pub fn reports(&self) -> Vec<InstanceReport> {
        let mut reports: Vec<_> = self
            .instances()
            .iter()
            .map(|stats| stats.report())
            .collect();
        let mut departed = self.departed();
        for (stats, left) in departed.iter_mut() {
            reports.push(stats.report());
            *left -= 1;
        }
        departed.retain(|(_, left)| *left > 0);
        reports
    }

    /// Every attached instance's counters and quantiles, for `GET /stats`.
    pub fn summaries(&self) -> Vec<InstanceSummary> {
        self.instances()
            .iter()
            .map(|stats| stats.summary())
            .collect()
    }

    /// Every instance's stats in the Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let reports: Vec<_> = self
            .instances()
            .iter()
            .map(|stats| stats.report())
            .collect();
        let series: Vec<_> = reports
            .iter()
            .map(|report| {
                Series::instance(
                    &report.worker,
                    report.instance,
                    Counters::of(report),
                    &report.latency,
                )
            })
            .collect();
        let mut out = String::new();
        prometheus::write_steps(&mut out, Scope::Instance, &series);
        out
    }
}

/// The router's per-worker routing events (and the refusals of unconfigured names) in
/// the Prometheus text exposition format, labelled `worker`.
pub fn routes_prometheus(routes: &[(String, RouteCounts)], not_configured: u64) -> String {
    let mut out = String::new();
    let Some((_, first)) = routes.first() else {
        return not_configured_prometheus(out, not_configured);
    };
    for (index, (name, help, _)) in first.metrics().into_iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (worker, counts) in routes {
            let value = counts.metrics()[index].2;
            // Worker names are validated, so nothing needs escaping.
            let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {value}");
        }
    }
    not_configured_prometheus(out, not_configured)
}

/// The router's per-worker routing counts as the heartbeat carries them: the counters
/// the proxy keeps, of the workers that counted any (a worker left out counts 0).
pub fn routing_report(routes: Vec<(String, RouteCounts)>) -> BTreeMap<String, Routing> {
    routes
        .into_iter()
        .map(|(worker, counts)| {
            let routing = Routing {
                rejected_no_instance: counts.rejected_no_instance,
                rejected_overloaded: counts.rejected_overloaded,
                rejected_type: counts.rejected_type,
                handoff_retries: counts.handoff_retries,
            };
            (worker, routing)
        })
        .filter(|(_, routing)| *routing != Routing::default())
        .collect()
}

/// Each worker's instances here out of full rotation for failing (ejected or on
/// probation), as a Prometheus gauge labelled `worker`.
pub fn ejected_prometheus(ejected: &[(String, usize, Duration)]) -> String {
    let mut out = String::new();
    let name = "damrey_route_ejected_instances";
    let _ = writeln!(
        out,
        "# HELP {name} Instances here out of full rotation for failing (ejected or on probation)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (worker, instances, _) in ejected {
        // Worker names are validated, so nothing needs escaping.
        let _ = writeln!(out, "{name}{{worker=\"{worker}\"}} {instances}");
    }
    out
}

fn not_configured_prometheus(mut out: String, not_configured: u64) -> String {
    let name = "damrey_route_rejected_not_configured_total";
    let _ = writeln!(
        out,
        "# HELP {name} Steps refused because no worker of their name is configured."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {not_configured}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_records_into_the_shared_buckets() {
        let histogram = Histogram::default();
        for micros in [40, 60, 70, 80, 90, 200, 300, 400, 900, 20_000_000] {
            histogram.record(Duration::from_micros(micros));
        }
        let latency = histogram.snapshot();
        assert_eq!(latency.count(), 10);
        assert_eq!(latency.sum_us, 20_002_140);
        assert_eq!(&latency.counts[..5], [1, 4, 1, 2, 1]);
        assert_eq!(latency.counts[16], 1);
        assert_eq!(latency.quantile_ms(0.5), Some(0.1));
    }

    #[test]
    fn the_heartbeat_reports_the_routing_of_workers_that_counted_any() {
        let idle = RouteCounts {
            rejected_no_instance: 2,
            rejected_overloaded: 3,
            rejected_type: 4,
            handoff_retries: 5,
            rerouted: 6,
            ejections: 7,
        };

        let report = routing_report(vec![
            ("add".to_owned(), RouteCounts::default()),
            ("idle".to_owned(), idle),
        ]);

        assert_eq!(
            report,
            BTreeMap::from([(
                "idle".to_owned(),
                Routing {
                    rejected_no_instance: 2,
                    rejected_overloaded: 3,
                    rejected_type: 4,
                    handoff_retries: 5,
                }
            )])
        );
    }

    #[test]
    fn the_prometheus_text_lists_every_live_instance() {
        let registry = Registry::default();
        let add = registry.register("add");
        let gone = registry.register("square");
        add.tally.received.fetch_add(3, Ordering::Relaxed);
        add.answered(Tag::Response, Duration::from_micros(80));
        add.answered(Tag::Response, Duration::from_micros(120));
        add.answered(Tag::Error, Duration::from_millis(3));
        registry.unregister(&gone);

        let text = registry.prometheus();

        for line in [
            "# TYPE damrey_steps_received_total counter",
            "damrey_steps_received_total{worker=\"add\",worker_instance=\"1\"} 3",
            "damrey_steps_processed_total{worker=\"add\",worker_instance=\"1\"} 3",
            "damrey_steps_responses_total{worker=\"add\",worker_instance=\"1\"} 2",
            "damrey_steps_errors_total{worker=\"add\",worker_instance=\"1\"} 1",
            "damrey_step_duration_seconds_bucket{worker=\"add\",worker_instance=\"1\",le=\"0.0001\"} 1",
            "damrey_step_duration_seconds_bucket{worker=\"add\",worker_instance=\"1\",le=\"0.00025\"} 2",
            "damrey_step_duration_seconds_bucket{worker=\"add\",worker_instance=\"1\",le=\"+Inf\"} 3",
            "damrey_step_duration_seconds_count{worker=\"add\",worker_instance=\"1\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
        assert!(!text.contains("square"), "{text}");
    }
}
