//! Monitoring: per-instance and per-worker counters, rates and window latencies, made
//! from the samples agents report (two per instance, and two per worker and agent of the
//! routing counters) and the live agents' instances. `GET /workers/stats`, `GET /metrics`
//! and the alarm rules read [`StatsReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use damrey_wire::report::{Counters, Heartbeat, Latency, Routing};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::placement::Known;
use crate::store::stats::{RoutePair, Sample, SamplePair};
use crate::store::{Store, StoreError};
use damrey_wire::rest::AgentEntry;

/// The shortest window of `GET /workers/stats`, in ms.
pub const MIN_WINDOW_MS: u64 = 1_000;
/// The longest window of `GET /workers/stats`, in ms (one hour).
pub const MAX_WINDOW_MS: u64 = 3_600_000;
/// The window of `GET /workers/stats` when none is asked for, in ms.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// A report the store cannot keep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// A counter or an instance number is over what a BIGINT holds.
    #[error("stats of instance {instance}: {field} {value} is over the largest storable {max}", max = i64::MAX)]
    TooLarge {
        /// The instance's number.
        instance: u64,
        /// The field's name.
        field: String,
        /// The value sent.
        value: u64,
    },
    /// A sum the proxy makes of an instance's numbers is over what a BIGINT holds,
    /// though each number fits.
    #[error("stats of instance {instance}: {sum} is over the largest storable {max}", max = i64::MAX)]
    SumTooLarge {
        /// The instance's number.
        instance: u64,
        /// What is summed.
        sum: &'static str,
    },
    /// A routing counter of a worker, or the steps it refused (their sum), is over what
    /// a BIGINT holds.
    #[error("routing of worker {worker:?}: {field} {value} is over the largest storable {max}", max = i64::MAX)]
    RoutingTooLarge {
        /// The worker.
        worker: String,
        /// The counter's name, or the sum's.
        field: &'static str,
        /// The value sent, or the sum (saturated).
        value: u64,
    },
}

/// Checks that every number of `heartbeat`'s stats and routing fits the store, the
/// latency buckets among them, and so do the sums the proxy makes of them (the steps
/// processed, the latency count, the steps refused), so that no total it shows has
/// overflowed.
///
/// # Errors
/// [`ReportError::TooLarge`] naming the first number that does not fit,
/// [`ReportError::SumTooLarge`] the first sum, [`ReportError::RoutingTooLarge`] the
/// first routing counter or sum.
pub fn check_storable(heartbeat: &Heartbeat) -> Result<(), ReportError> {
    for (worker, routing) in &heartbeat.routing {
        let refused = ("refused (the rejected_* sum)", routing.refused());
        for (field, value) in routing.counts().chain([refused]) {
            if i64::try_from(value).is_err() {
                return Err(ReportError::RoutingTooLarge {
                    worker: worker.clone(),
                    field,
                    value,
                });
            }
        }
    }
    for report in &heartbeat.stats {
        let fields = [("instance", report.instance)]
            .into_iter()
            .chain(report.counts())
            .chain([("latency.sum_us", report.latency.sum_us)]);
        let buckets = &report.latency.counts;
        let fields = fields
            .into_iter()
            .map(|(field, value)| (field.to_owned(), value))
            .chain(
                buckets
                    .iter()
                    .enumerate()
                    .map(|(bucket, count)| (format!("latency.counts[{bucket}]"), *count)),
            );
        for (field, value) in fields {
            if i64::try_from(value).is_err() {
                return Err(ReportError::TooLarge {
                    instance: report.instance,
                    field,
                    value,
                });
            }
        }
        let storable_sum = |values: &[u64]| {
            values
                .iter()
                .try_fold(0u64, |sum, value| sum.checked_add(*value))
                .is_some_and(|sum| i64::try_from(sum).is_ok())
        };
        if !storable_sum(&report.answers()) {
            return Err(ReportError::SumTooLarge {
                instance: report.instance,
                sum: "processed (responses + errors + timeouts + stops)",
            });
        }
        if !storable_sum(buckets) {
            return Err(ReportError::SumTooLarge {
                instance: report.instance,
                sum: "the latency count (the buckets' sum)",
            });
        }
    }
    Ok(())
}

/// Per-second rates over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Rates {
    /// Steps delivered per second.
    pub received: f64,
    /// Steps answered per second.
    pub processed: f64,
    /// `ERROR` answers per second.
    pub errors: f64,
    /// Timeouts per second.
    pub timeouts: f64,
}

impl Rates {
    /// `window`'s counts divided by `span_ms`, the time they were counted over.
    fn over(window: &Counters, span_ms: u64) -> Rates {
        let per_second = |count: u64| rounded(count as f64 * 1e3 / span_ms.max(1) as f64);
        Rates {
            received: per_second(window.received),
            processed: per_second(window.processed),
            errors: per_second(window.errors),
            timeouts: per_second(window.timeouts),
        }
    }

    /// Adds `other`'s rates to these.
    fn add(&mut self, other: &Rates) {
        self.received = rounded(self.received + other.received);
        self.processed = rounded(self.processed + other.processed);
        self.errors = rounded(self.errors + other.errors);
        self.timeouts = rounded(self.timeouts + other.timeouts);
    }
}

/// `rate` to a thousandth of a step per second, so that summing instances' rates shows
/// `0.3`, not `0.30000000000000004`.
fn rounded(rate: f64) -> f64 {
    (rate * 1e3).round() / 1e3
}

/// The time a window's counts of one series were counted over: from its baseline
/// sample to its latest, which may be shorter or longer than the window when samples
/// are stored every few seconds; or the window when the series started within it (its
/// baseline is then zeros at the latest sample's time).
fn span_ms(latest_ms: i64, baseline_ms: i64, window_ms: u64) -> u64 {
    if baseline_ms < latest_ms {
        u64::try_from(latest_ms - baseline_ms).unwrap_or(u64::MAX)
    } else {
        window_ms
    }
}

/// Latency quantiles in ms (bucket upper bounds); `null` when nothing was answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Quantiles {
    /// The median.
    pub p50: Option<f64>,
    /// The 90th percentile.
    pub p90: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
}

impl Quantiles {
    /// The quantiles of `latency`.
    fn of(latency: &Latency) -> Quantiles {
        Quantiles {
            p50: latency.quantile_ms(0.5),
            p90: latency.quantile_ms(0.9),
            p99: latency.quantile_ms(0.99),
        }
    }
}

/// One instance in `GET /workers/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InstanceStats {
    /// The agent it is attached to.
    pub agent: String,
    /// Its number on that agent.
    pub instance: u64,
    /// Whether its agent is listed with instances of its worker and it was in the
    /// agent's latest stored sample.
    pub live: bool,
    /// When it was last reported (ms since the Unix epoch).
    pub last_seen_ms: i64,
    /// Its counters, rates and latency (flattened into the JSON object).
    #[serde(flatten)]
    pub usage: Usage,
}

/// What an instance, or a worker's instances together, did: the latest counters, and
/// rates and latency over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Usage {
    /// The counters in the latest reports.
    pub totals: Counters,
    /// Rates over the window.
    pub rates: Rates,
    /// Latency over the window.
    pub latency_ms: Quantiles,
    /// What happened within the window (not in the JSON).
    #[serde(skip)]
    pub window: Counters,
    /// The latency histogram within the window (not in the JSON).
    #[serde(skip)]
    pub window_latency: Latency,
    /// The cumulative latency histogram (not in the JSON).
    #[serde(skip)]
    pub latency: Latency,
}

impl Usage {
    /// From the counts of one series, counted over `span_ms`; the rates and quantiles
    /// follow from the window's.
    fn new(
        totals: Counters,
        window: Counters,
        window_latency: Latency,
        latency: Latency,
        span_ms: u64,
    ) -> Usage {
        Usage {
            totals,
            rates: Rates::over(&window, span_ms),
            latency_ms: Quantiles::of(&window_latency),
            window,
            window_latency,
            latency,
        }
    }

    /// Counts the steps one router refused (`routing`'s totals, and `window`'s counted
    /// over `span_ms`) as answered `ERROR` without reaching an instance: in `errors`
    /// and `processed`.
    fn count_refused(&mut self, routing: &Routing, window: &Routing, span_ms: u64) {
        let refused = |routing: &Routing| Counters {
            errors: routing.refused(),
            processed: routing.refused(),
            ..Counters::default()
        };
        self.totals.add(&refused(routing));
        self.window.add(&refused(window));
        self.rates.add(&Rates::over(&refused(window), span_ms));
    }

    /// Adds `other`'s counts and rates to these, and merges the latencies.
    fn add(&mut self, other: &Usage) {
        self.totals.add(&other.totals);
        self.rates.add(&other.rates);
        self.window.add(&other.window);
        self.window_latency.add(&other.window_latency);
        self.latency.add(&other.latency);
        self.latency_ms = Quantiles::of(&self.window_latency);
    }
}

impl InstanceStats {
    /// The instance's stats from its two samples; a counter that went down between them
    /// means its agent restarted, so everything since counts.
    fn of(pair: SamplePair, window_ms: u64, live: bool) -> InstanceStats {
        let SamplePair { latest, baseline } = pair;
        let span_ms = span_ms(latest.at_ms, baseline.at_ms, window_ms);
        let reset = latest.counters.dropped_since(&baseline.counters)
            || latest.latency.dropped_since(&baseline.latency);
        let window = within(&latest.counters, &baseline.counters, reset, Counters::minus);
        let window_latency = within(&latest.latency, &baseline.latency, reset, Latency::since);
        let Sample {
            agent,
            instance,
            at_ms,
            mut counters,
            latency,
            ..
        } = latest;
        if !live {
            // What a vanished instance had in flight was retried elsewhere or ended
            // with it; its last report's gauges no longer describe anything.
            counters.clear_gauges();
        }
        InstanceStats {
            agent,
            instance,
            live,
            last_seen_ms: at_ms,
            usage: Usage::new(counters, window, window_latency, latency, span_ms),
        }
    }
}

/// What happened within a window from its two samples' cumulative counts: the latest
/// minus the baseline, or all of the latest when its agent restarted in between (`reset`,
/// a counter went down), as Prometheus takes a counter reset.
fn within<T: Clone>(latest: &T, baseline: &T, reset: bool, minus: fn(&T, &T) -> T) -> T {
    if reset {
        latest.clone()
    } else {
        minus(latest, baseline)
    }
}

/// One worker in `GET /workers/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkerStats {
    /// The worker's name.
    pub worker: String,
    /// Its instances in the live agents' latest heartbeats.
    pub live_instances: u64,
    /// The newest report of any of its instances.
    pub last_seen_ms: Option<i64>,
    /// Its instances' counters summed, rates summed, latency merged (flattened); its
    /// `errors` and `processed` also count the steps its agents' routers refused
    /// (`routing`), which ended their lines with `ERROR` without reaching an instance.
    #[serde(flatten)]
    pub usage: Usage,
    /// Its routing counters summed over the latest reports of the agents that counted
    /// any within the retention: steps refused (no live instance, overloaded, unknown
    /// type) and hand-offs retried.
    pub routing: Routing,
    /// The routing counts within the window (not in the JSON).
    #[serde(skip)]
    pub routing_window: Routing,
    /// Its instances with a sample within the retention, by agent and number.
    pub instances: Vec<InstanceStats>,
}

impl WorkerStats {
    fn new(worker: String) -> WorkerStats {
        WorkerStats {
            worker,
            live_instances: 0,
            last_seen_ms: None,
            usage: Usage::default(),
            routing: Routing::default(),
            routing_window: Routing::default(),
            instances: Vec::new(),
        }
    }

    fn seen(&mut self, at_ms: i64) {
        self.last_seen_ms = Some(self.last_seen_ms.map_or(at_ms, |seen| seen.max(at_ms)));
    }
}

/// The entry of `name` in `workers`, made when missing.
fn worker<'a>(workers: &'a mut BTreeMap<String, WorkerStats>, name: &str) -> &'a mut WorkerStats {
    workers
        .entry(name.to_owned())
        .or_insert_with(|| WorkerStats::new(name.to_owned()))
}

/// The answer of `GET /workers/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StatsReport {
    /// When it was made (ms since the Unix epoch).
    pub at_ms: i64,
    /// The window rates and latencies are measured over.
    pub window_ms: u64,
    /// Every configured worker and any reported one, sorted by name (one page of them
    /// when the request set `limit`).
    pub workers: Vec<WorkerStats>,
    /// When a page ends before the last worker: the `after` that asks for the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl StatsReport {
    /// Keeps the workers named after `after` (byte order), at most `limit` of them, and
    /// sets [`StatsReport::next`] when more are left.
    pub fn page(&mut self, after: Option<&str>, limit: Option<usize>) {
        if let Some(after) = after {
            self.workers.retain(|stats| stats.worker.as_str() > after);
        }
        if let Some(limit) = limit
            && self.workers.len() > limit
        {
            self.workers.truncate(limit);
            self.next = self.workers.last().map(|stats| stats.worker.clone());
        }
    }
}

impl StatsReport {
    /// The report at `now_ms` for `configured` workers, from the live agents' entries
    /// and the samples' pairs (the instances' and the routing counters'). Each series'
    /// rates are its window's counts over the time between its two samples (at least
    /// `window_ms`), and a worker's are its series' summed.
    pub fn build(
        now_ms: i64,
        configured: impl IntoIterator<Item = String>,
        live_agents: &[AgentEntry],
        samples: Samples,
    ) -> StatsReport {
        let Samples {
            window_ms,
            instances: pairs,
            routes,
        } = samples;
        let mut workers: BTreeMap<String, WorkerStats> = configured
            .into_iter()
            .map(|name| (name.clone(), WorkerStats::new(name)))
            .collect();
        let agents_listing: BTreeMap<&str, BTreeSet<&str>> = live_agents
            .iter()
            .map(|agent| {
                let workers = agent
                    .instances
                    .iter()
                    .filter(|instance| instance.count > 0)
                    .map(|instance| instance.worker.as_str())
                    .collect();
                (agent.agent.as_str(), workers)
            })
            .collect();
        for agent in live_agents {
            for instance in &agent.instances {
                let stats = worker(&mut workers, &instance.worker);
                stats.live_instances += u64::from(instance.count);
                stats.seen(agent.last_seen_ms);
            }
        }
        // An agent's instances are sampled together, so its newest sample time is when
        // it was last sampled.
        let mut sampled: BTreeMap<String, i64> = BTreeMap::new();
        for pair in &pairs {
            let latest = &pair.latest;
            match sampled.get_mut(&latest.agent) {
                Some(at) => *at = (*at).max(latest.at_ms),
                None => {
                    sampled.insert(latest.agent.clone(), latest.at_ms);
                }
            }
        }
        for pair in pairs {
            // Live: its agent is listed with instances of its worker, and it was in the
            // agent's latest sample.
            let live = agents_listing
                .get(pair.latest.agent.as_str())
                .is_some_and(|workers| workers.contains(pair.latest.worker.as_str()))
                && sampled
                    .get(&pair.latest.agent)
                    .is_some_and(|at| pair.latest.at_ms >= *at);
            let stats = worker(&mut workers, &pair.latest.worker);
            let instance = InstanceStats::of(pair, window_ms, live);
            stats.seen(instance.last_seen_ms);
            stats.usage.add(&instance.usage);
            stats.instances.push(instance);
        }
        for RoutePair { latest, baseline } in routes {
            let reset = latest.routing.dropped_since(&baseline.routing);
            let window = within(&latest.routing, &baseline.routing, reset, Routing::minus);
            let span_ms = span_ms(latest.at_ms, baseline.at_ms, window_ms);
            let stats = worker(&mut workers, &latest.worker);
            stats.usage.count_refused(&latest.routing, &window, span_ms);
            stats.routing.add(&latest.routing);
            stats.routing_window.add(&window);
        }
        let workers = workers.into_values().collect();
        StatsReport {
            at_ms: now_ms,
            window_ms,
            workers,
            next: None,
        }
    }
}

/// The two samples of every series a report over `window_ms` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    /// The window, cut to the retention.
    pub window_ms: u64,
    /// The instances' pairs.
    pub instances: Vec<SamplePair>,
    /// The routing counters' pairs.
    pub routes: Vec<RoutePair>,
}

/// Where reports are read from, and how long agents and samples count.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// The store.
    pub store: Store,
    /// Agents heard from within this long are live.
    pub agent_ttl: Duration,
    /// Samples are kept this long.
    pub retention: Duration,
}

impl Monitor {
    /// The live agents at `now_ms`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn live_agents(&self, now_ms: i64) -> Result<Vec<AgentEntry>, StoreError> {
        let placement = self
            .store
            .placement(now_ms, self.agent_ttl, Known::Stored, None)
            .await?;
        Ok(placement.agents)
    }

    /// The samples a report at `now_ms` over `window_ms` (at most the retention) needs.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn samples(&self, now_ms: i64, window_ms: u64) -> Result<Samples, StoreError> {
        let window_ms = self.window(window_ms);
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        let window = i64::try_from(window_ms).unwrap_or(i64::MAX);
        let retention = i64::try_from(retention_ms).unwrap_or(i64::MAX);
        let (window_start, oldest) = (
            now_ms.saturating_sub(window),
            now_ms.saturating_sub(retention),
        );
        Ok(Samples {
            window_ms,
            instances: self.store.sample_pairs(window_start, oldest).await?,
            routes: self.store.route_pairs(window_start, oldest).await?,
        })
    }

    /// `window_ms` cut to the retention.
    fn window(&self, window_ms: u64) -> u64 {
        window_ms.min(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX))
    }

    /// The stats at `now_ms` over `window_ms` (at most the retention) of `configured`
    /// workers, given the live agents read just before.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn report_with(
        &self,
        now_ms: i64,
        window_ms: u64,
        configured: &BTreeSet<String>,
        live_agents: &[AgentEntry],
    ) -> Result<StatsReport, StoreError> {
        let samples = self.samples(now_ms, window_ms).await?;
        Ok(StatsReport::build(
            now_ms,
            configured.iter().cloned(),
            live_agents,
            samples,
        ))
    }

    /// The stats at `now_ms` over `window_ms` of every configured worker, or of those
    /// `scope` names, as they run on the agents it names.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn report(
        &self,
        now_ms: i64,
        window_ms: u64,
        scope: &Scope,
    ) -> Result<StatsReport, StoreError> {
        let snapshot = self.store.snapshot().await?;
        let configured: Vec<String> = snapshot
            .workers
            .iter()
            .map(|w| w.name.clone())
            .filter(|worker| scope.worker_in(worker))
            .collect();
        let mut live_agents = self.live_agents(now_ms).await?;
        live_agents.retain(|entry| scope.agent_in(&entry.agent));
        for entry in &mut live_agents {
            entry
                .instances
                .retain(|instance| scope.worker_in(&instance.worker));
        }
        let mut samples = self.samples(now_ms, window_ms).await?;
        samples.instances.retain(|pair| {
            scope.worker_in(&pair.latest.worker) && scope.agent_in(&pair.latest.agent)
        });
        samples.routes.retain(|pair| {
            scope.worker_in(&pair.latest.worker) && scope.agent_in(&pair.latest.agent)
        });
        Ok(StatsReport::build(
            now_ms,
            configured,
            &live_agents,
            samples,
        ))
    }
}

/// Which workers and agents a report covers: all, or one worker, one agent, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this worker.
    pub worker: Option<String>,
    /// Only what runs on this agent.
    pub agent: Option<String>,
}

impl Scope {
    fn worker_in(&self, worker: &str) -> bool {
        self.worker.as_deref().is_none_or(|only| only == worker)
    }

    fn agent_in(&self, agent: &str) -> bool {
        self.agent.as_deref().is_none_or(|only| only == agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: i64, received: u64, errors: u64, bucket: u64) -> Sample {
        let mut latency = Latency::default();
        latency.counts[4] = bucket;
        latency.sum_us = bucket * 1_000;
        Sample {
            agent: "h:1".to_owned(),
            instance: 1,
            worker: "add".to_owned(),
            at_ms,
            counters: Counters {
                received,
                processed: received,
                responses: received - errors,
                errors,
                ..Counters::default()
            },
            latency,
        }
    }

    #[test]
    fn window_counts_are_deltas_and_a_drop_counts_everything_since() {
        let pair = SamplePair {
            baseline: sample(1_000, 10, 1, 10),
            latest: sample(3_000, 30, 5, 30),
        };
        let stats = InstanceStats::of(pair.clone(), 1_000, true).usage;
        assert_eq!((stats.window.received, stats.window.errors), (20, 4));
        // Over the 2 s between the samples, whatever the window.
        assert_eq!(stats.rates.received, 10.0);
        let stats = InstanceStats::of(pair, 10_000, true).usage;
        assert_eq!(stats.rates.received, 10.0);
        assert_eq!(stats.window_latency.count(), 20);
        assert_eq!(stats.totals.received, 30);

        let restarted = SamplePair {
            baseline: sample(1_000, 10, 1, 10),
            latest: sample(3_000, 4, 0, 4),
        };
        let stats = InstanceStats::of(restarted, 1_000, false).usage;
        assert_eq!(
            (stats.window.received, stats.window_latency.count()),
            (4, 4)
        );
        assert_eq!(stats.rates.processed, 2.0);
        // A series that started within the window has no baseline sample: its counts
        // are over the window.
        let started = SamplePair {
            baseline: sample(3_000, 0, 0, 0),
            latest: sample(3_000, 4, 0, 4),
        };
        assert_eq!(
            InstanceStats::of(started, 2_000, true).usage.rates.received,
            2.0
        );
    }

    #[test]
    fn refused_steps_are_errors_and_a_routing_drop_counts_everything_since() {
        use crate::store::stats::RouteSample;
        let route = |agent: &str, at_ms, rejected_no_instance| RouteSample {
            agent: agent.to_owned(),
            worker: "idle".to_owned(),
            at_ms,
            routing: Routing {
                rejected_no_instance,
                ..Routing::default()
            },
        };
        let grown = RoutePair {
            baseline: route("h:1", 1_000, 4),
            latest: route("h:1", 3_000, 10),
        };
        let restarted = RoutePair {
            baseline: route("h:2", 1_000, 4),
            latest: route("h:2", 3_000, 3),
        };

        let report = StatsReport::build(
            5_000,
            ["idle".to_owned()],
            &[],
            Samples {
                window_ms: 10_000,
                instances: Vec::new(),
                routes: vec![grown, restarted],
            },
        );

        let idle = &report.workers[0];
        assert_eq!(idle.routing.rejected_no_instance, 13);
        assert_eq!(idle.routing_window.rejected_no_instance, 6 + 3);
        assert_eq!(
            (idle.usage.totals.errors, idle.usage.totals.processed),
            (13, 13)
        );
        assert_eq!(
            (idle.usage.window.errors, idle.usage.window.processed),
            (9, 9)
        );
        // 9 refused over the 2 s between each agent's two samples.
        assert_eq!(idle.usage.rates.errors, 4.5, "{:?}", idle.usage.rates);
    }

    #[test]
    fn counters_over_what_a_bigint_holds_are_refused() {
        let json = format!(
            r#"{{"agent":"h:1","stats":[{{"worker":"add","instance":2,"received":{},"responses":0,
            "errors":0,"timeouts":0,"stops":0,"retries":0,"restarts":0,"in_flight":0,
            "latency":{{"sum_us":0,"counts":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}}}]}}"#,
            u64::MAX
        );
        let heartbeat: Heartbeat = serde_json::from_str(&json).unwrap();
        assert_eq!(
            check_storable(&heartbeat).unwrap_err().to_string(),
            format!(
                "stats of instance 2: received {} is over the largest storable {}",
                u64::MAX,
                i64::MAX
            )
        );
    }
}
