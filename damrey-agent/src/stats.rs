//! Per-instance counters and step latencies, counted by the agent for every worker
//! instance attached to it, and their Prometheus text form for `GET /metrics`.
//!
//! Counting a step costs a few relaxed atomic additions and one histogram record.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use damrey_actors::Tag;
use damrey_actors::outlier::Health;
use damrey_actors::report::{self, Counters, LATENCY_BOUNDS_MICROS as BOUNDS_MICROS, Latency};
use damrey_actors::route_counters::RouteCounts;
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
    /// Steps delivered to the instance.
    pub received: AtomicU64,
    /// Steps the instance answered `RESPONSE` (or a `REQUEST` going on down the line).
    pub responses: AtomicU64,
    /// Steps answered `ERROR`.
    pub errors: AtomicU64,
    /// Steps that ran past their deadline or the worker's timeout.
    pub timeouts: AtomicU64,
    /// Steps answered `STOP`.
    pub stops: AtomicU64,
    /// Steps the instance lost by disappearing; the router retries them elsewhere.
    pub retries: AtomicU64,
    /// Times the worker process restarted its actor after a panic (as it reports).
    pub restarts: AtomicU64,
    /// Steps delivered and not answered yet.
    pub in_flight: AtomicUsize,
    /// How long answered steps took, delivery to answer.
    pub latency: Histogram,
    /// The router's view of the instance (ejections), once it is attached.
    pub health: OnceLock<Arc<Health>>,
}

impl InstanceStats {
    /// Counts a step's answer and its duration.
    pub fn answered(&self, tag: Tag, took: Duration) {
        let counter = match tag {
            Tag::Request | Tag::Response => &self.responses,
            Tag::Error => &self.errors,
            Tag::Timeout => &self.timeouts,
            Tag::Stop => &self.stops,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.latency.record(took);
    }

    /// Steps answered, whatever the answer.
    pub fn processed(&self) -> u64 {
        [&self.responses, &self.errors, &self.timeouts, &self.stops]
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .sum()
    }
}

/// One instance's counters and latency quantiles, as `GET /stats` lists them.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub fn report(&self) -> report::InstanceReport {
        report::InstanceReport {
            worker: self.worker.clone(),
            instance: self.instance,
            received: self.received.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            stops: self.stops.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed) as u64,
            latency: self.latency.snapshot(),
            ejections: self.health.get().map_or(0, |health| health.ejections()),
            ejected_ms: self
                .health
                .get()
                .and_then(|health| health.out_for(tokio::time::Instant::now()))
                .map_or(0, |out| u64::try_from(out.as_millis()).unwrap_or(u64::MAX)),
        }
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
            received: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            stops: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
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
    pub fn reports(&self) -> Vec<report::InstanceReport> {
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
        let instances = self.instances();
        let mut out = String::new();
        let counters: [Counter; 8] = [
            (
                "damrey_steps_received_total",
                "Steps delivered to a worker instance.",
                |s| s.received.load(Ordering::Relaxed),
            ),
            (
                "damrey_steps_processed_total",
                "Steps a worker instance answered.",
                InstanceStats::processed,
            ),
            (
                "damrey_steps_responses_total",
                "Steps answered RESPONSE (or REQUEST on down the line).",
                |s| s.responses.load(Ordering::Relaxed),
            ),
            ("damrey_steps_errors_total", "Steps answered ERROR.", |s| {
                s.errors.load(Ordering::Relaxed)
            }),
            (
                "damrey_steps_timeouts_total",
                "Steps that ran out of time.",
                |s| s.timeouts.load(Ordering::Relaxed),
            ),
            ("damrey_steps_stops_total", "Steps answered STOP.", |s| {
                s.stops.load(Ordering::Relaxed)
            }),
            (
                "damrey_instance_restarts_total",
                "Times the worker instance restarted its actor after a panic.",
                |s| s.restarts.load(Ordering::Relaxed),
            ),
            (
                "damrey_steps_retries_total",
                "Steps lost with their instance and retried elsewhere.",
                |s| s.retries.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for stats in &instances {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(stats), value(stats));
            }
        }
        let _ = writeln!(
            out,
            "# HELP damrey_steps_in_flight Steps delivered and not answered yet."
        );
        let _ = writeln!(out, "# TYPE damrey_steps_in_flight gauge");
        for stats in &instances {
            let in_flight = stats.in_flight.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "damrey_steps_in_flight{{{}}} {in_flight}",
                labels(stats)
            );
        }
        let _ = writeln!(
            out,
            "# HELP damrey_step_duration_seconds How long steps took, delivery to answer."
        );
        let _ = writeln!(out, "# TYPE damrey_step_duration_seconds histogram");
        for stats in &instances {
            let labels = labels(stats);
            let mut cumulative = 0;
            for (bucket, count) in stats.latency.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                let le = BOUNDS_MICROS.get(bucket).map_or_else(
                    || "+Inf".to_owned(),
                    |&micros| format!("{}", micros as f64 / 1e6),
                );
                let _ = writeln!(
                    out,
                    "damrey_step_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = stats.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "damrey_step_duration_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                out,
                "damrey_step_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
        out
    }
}

/// A counter's metric name, help text, and value.
type Counter = (&'static str, &'static str, fn(&InstanceStats) -> u64);

/// `worker="add",worker_instance="3"`: not `instance`, which Prometheus sets to the
/// scraped target. Worker names are validated, so nothing needs escaping.
fn labels(stats: &InstanceStats) -> String {
    format!(
        "worker=\"{}\",worker_instance=\"{}\"",
        stats.worker, stats.instance
    )
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
    fn the_prometheus_text_lists_every_live_instance() {
        let registry = Registry::default();
        let add = registry.register("add");
        let gone = registry.register("square");
        add.received.fetch_add(3, Ordering::Relaxed);
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
