//! What an agent reports to the proxy every second, `POST /agents/heartbeat`: the worker
//! instances attached to it and each one's counters and latency histogram.
//!
//! Counters are cumulative since the instance attached; the proxy turns two reports into
//! rates and windowed latencies. A counter that goes down means the agent restarted.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::spec::{SpecError, validate_agent, validate_name};

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`); one more
/// bucket after the last bound holds anything longer.
pub const LATENCY_BOUNDS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// How many latency buckets a report carries: one per bound and the overflow bucket.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MICROS.len() + 1;

/// The most instances one heartbeat may report.
pub const MAX_REPORTED_INSTANCES: usize = 4_096;

/// An agent's heartbeat:
/// `{"agent":"127.0.0.1:7701","instances":[{"worker":"add","count":2}],"stats":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The agent's advertised address, `host:port`.
    pub agent: String,
    /// The worker instances attached to it now (the whole list, not a delta).
    #[serde(default)]
    pub instances: Vec<InstanceCount>,
    /// Each attached instance's counters; empty when the agent does not count.
    #[serde(default)]
    pub stats: Vec<InstanceReport>,
    /// The agent is shutting down cleanly: forget it now rather than alarm when it goes
    /// silent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// How many instances of one worker are attached to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceCount {
    /// The worker's name.
    pub worker: String,
    /// How many instances, at least 1.
    pub count: u32,
}

/// One attached instance's counters since it attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceReport {
    /// The worker's name.
    pub worker: String,
    /// The instance's number on its agent (unique per agent run).
    pub instance: u64,
    /// Steps delivered.
    pub received: u64,
    /// Steps answered `RESPONSE` (or a `REQUEST` going on down the line).
    pub responses: u64,
    /// Steps answered `ERROR`.
    pub errors: u64,
    /// Steps out of time.
    pub timeouts: u64,
    /// Steps answered `STOP`.
    pub stops: u64,
    /// Steps lost with the instance and retried elsewhere.
    pub retries: u64,
    /// Restarts of the worker's actor after panics.
    pub restarts: u64,
    /// Steps delivered and not answered yet.
    pub in_flight: u64,
    /// How long answered steps took, delivery to answer.
    pub latency: Latency,
    /// Times the agent ejected the instance from its rotation for failing.
    #[serde(default)]
    pub ejections: u64,
    /// How long the instance has been out of full rotation for failing (ejected or on
    /// probation), in ms; `0` while it is in rotation.
    #[serde(default)]
    pub ejected_ms: u64,
}

impl InstanceReport {
    /// Steps answered, whatever the answer; `u64::MAX` when the sum overflows (the proxy
    /// refuses a report whose sums do not fit).
    pub fn processed(&self) -> u64 {
        [self.errors, self.timeouts, self.stops]
            .into_iter()
            .fold(self.responses, u64::saturating_add)
    }
}

/// Step counters: cumulative in `totals`, or what happened within a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Steps delivered.
    pub received: u64,
    /// Steps answered, whatever the answer.
    pub processed: u64,
    /// Steps answered `RESPONSE`.
    pub responses: u64,
    /// Steps answered `ERROR`.
    pub errors: u64,
    /// Steps out of time.
    pub timeouts: u64,
    /// Steps answered `STOP`.
    pub stops: u64,
    /// Steps retried elsewhere after their instance was lost.
    pub retries: u64,
    /// Restarts after panics.
    pub restarts: u64,
    /// Steps delivered and not answered yet (a gauge: the latest value, never a delta).
    pub in_flight: u64,
    /// Ejections from the rotation for failing.
    pub ejections: u64,
    /// How long it has been out of full rotation for failing, in ms (a gauge, the latest
    /// value; summed instances keep the longest).
    pub ejected_ms: u64,
}

impl Counters {
    /// The counters of one instance's report.
    pub fn of(report: &InstanceReport) -> Counters {
        Counters {
            received: report.received,
            processed: report.processed(),
            responses: report.responses,
            errors: report.errors,
            timeouts: report.timeouts,
            stops: report.stops,
            retries: report.retries,
            restarts: report.restarts,
            in_flight: report.in_flight,
            ejections: report.ejections,
            ejected_ms: report.ejected_ms,
        }
    }

    /// The counters that only grow while the instance's agent runs.
    fn cumulative(&self) -> [u64; 8] {
        [
            self.received,
            self.responses,
            self.errors,
            self.timeouts,
            self.stops,
            self.retries,
            self.restarts,
            self.ejections,
        ]
    }

    /// Whether a cumulative counter is lower than in `earlier` (its agent restarted).
    pub fn dropped_since(&self, earlier: &Counters) -> bool {
        self.cumulative()
            .iter()
            .zip(earlier.cumulative())
            .any(|(now, then)| *now < then)
    }

    /// What happened after `earlier`; `in_flight` stays the latest value.
    pub fn minus(&self, earlier: &Counters) -> Counters {
        Counters {
            received: self.received - earlier.received,
            processed: self.processed.saturating_sub(earlier.processed),
            responses: self.responses - earlier.responses,
            errors: self.errors - earlier.errors,
            timeouts: self.timeouts - earlier.timeouts,
            stops: self.stops - earlier.stops,
            retries: self.retries - earlier.retries,
            restarts: self.restarts - earlier.restarts,
            in_flight: self.in_flight,
            ejections: self.ejections - earlier.ejections,
            ejected_ms: self.ejected_ms,
        }
    }

    /// Adds `other`'s counts to these (to sum instances of one worker).
    pub fn add(&mut self, other: &Counters) {
        self.received = self.received.saturating_add(other.received);
        self.processed = self.processed.saturating_add(other.processed);
        self.responses = self.responses.saturating_add(other.responses);
        self.errors = self.errors.saturating_add(other.errors);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        self.stops = self.stops.saturating_add(other.stops);
        self.retries = self.retries.saturating_add(other.retries);
        self.restarts = self.restarts.saturating_add(other.restarts);
        self.in_flight = self.in_flight.saturating_add(other.in_flight);
        self.ejections = self.ejections.saturating_add(other.ejections);
        self.ejected_ms = self.ejected_ms.max(other.ejected_ms);
    }
}

/// A latency histogram: counts per bucket of [`LATENCY_BOUNDS_MICROS`] (not cumulative)
/// and the sum of all durations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Sum of the recorded durations in microseconds.
    pub sum_us: u64,
    /// [`LATENCY_BUCKETS`] counts, one per bucket.
    pub counts: Vec<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            sum_us: 0,
            counts: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl Latency {
    /// How many durations were recorded; `u64::MAX` when the sum overflows.
    pub fn count(&self) -> u64 {
        self.counts.iter().copied().fold(0, u64::saturating_add)
    }

    /// The upper bound in milliseconds of the bucket holding the `q` quantile
    /// (0 < q ≤ 1); `None` when empty, the largest bound for the overflow bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen = count.saturating_add(seen);
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MICROS[bucket.min(LATENCY_BOUNDS_MICROS.len() - 1)];
                return Some(bound as f64 / 1e3);
            }
        }
        None
    }

    /// Whether a count or the sum is lower than in `earlier` (its agent restarted).
    pub fn dropped_since(&self, earlier: &Latency) -> bool {
        self.sum_us < earlier.sum_us
            || self
                .counts
                .iter()
                .zip(&earlier.counts)
                .any(|(now, then)| now < then)
    }

    /// What was recorded after `earlier` was taken; all of `self` when a count went
    /// down (the instance's agent restarted in between).
    pub fn since(&self, earlier: &Latency) -> Latency {
        if self.dropped_since(earlier) {
            return self.clone();
        }
        Latency {
            sum_us: self.sum_us - earlier.sum_us,
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now - then)
                .collect(),
        }
    }

    /// Adds `other`'s counts to these (to sum instances of one worker).
    pub fn add(&mut self, other: &Latency) {
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// A heartbeat that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatError {
    /// The agent address or a worker name is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An instance count is zero.
    #[error("instances of worker {0:?} have count 0; list only attached workers")]
    ZeroCount(String),
    /// A worker appears twice in `instances`.
    #[error("worker {0:?} is listed twice in instances")]
    DuplicateWorker(String),
    /// An instance number appears twice in `stats`.
    #[error("instance {0} is listed twice in stats")]
    DuplicateInstance(u64),
    /// Too many instances in `stats`.
    #[error("stats lists {0} instances, the most is {MAX_REPORTED_INSTANCES}")]
    TooManyInstances(usize),
    /// A latency histogram has the wrong number of buckets.
    #[error("instance {instance} has {found} latency buckets, expected {LATENCY_BUCKETS}")]
    BucketCount {
        /// The instance's number.
        instance: u64,
        /// How many buckets it sent.
        found: usize,
    },
}

impl Heartbeat {
    /// Checks the address, the worker names, the counts, that nothing repeats, and the
    /// shape of each latency histogram.
    ///
    /// # Errors
    /// The first [`HeartbeatError`] found.
    pub fn validate(&self) -> Result<(), HeartbeatError> {
        if self.agent.is_empty() {
            return Err(SpecError::InvalidAgent {
                agent: String::new(),
                problem: "must not be empty".to_owned(),
            }
            .into());
        }
        validate_agent(&self.agent)?;
        let mut seen = HashSet::with_capacity(self.instances.len());
        for instance in &self.instances {
            validate_name("instance worker", &instance.worker)?;
            if instance.count == 0 {
                return Err(HeartbeatError::ZeroCount(instance.worker.clone()));
            }
            if !seen.insert(instance.worker.as_str()) {
                return Err(HeartbeatError::DuplicateWorker(instance.worker.clone()));
            }
        }
        if self.stats.len() > MAX_REPORTED_INSTANCES {
            return Err(HeartbeatError::TooManyInstances(self.stats.len()));
        }
        let mut numbers = HashSet::with_capacity(self.stats.len());
        for report in &self.stats {
            validate_name("stats worker", &report.worker)?;
            if !numbers.insert(report.instance) {
                return Err(HeartbeatError::DuplicateInstance(report.instance));
            }
            if report.latency.counts.len() != LATENCY_BUCKETS {
                return Err(HeartbeatError::BucketCount {
                    instance: report.instance,
                    found: report.latency.counts.len(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Heartbeat, String> {
        let heartbeat: Heartbeat = serde_json::from_str(json).map_err(|e| e.to_string())?;
        heartbeat.validate().map_err(|e| e.to_string())?;
        Ok(heartbeat)
    }

    fn report(instance: u64, buckets: usize) -> String {
        format!(
            r#"{{"worker":"add","instance":{instance},"received":3,"responses":2,"errors":1,
            "timeouts":0,"stops":0,"retries":0,"restarts":0,"in_flight":0,
            "latency":{{"sum_us":900,"counts":{:?}}}}}"#,
            vec![1u64; buckets]
        )
    }

    #[test]
    fn a_heartbeat_with_instances_and_stats_parses() {
        let heartbeat = parse(&format!(
            r#"{{"agent":"127.0.0.1:7701","instances":[{{"worker":"add","count":2}}],"stats":[{}]}}"#,
            report(1, LATENCY_BUCKETS)
        ))
        .unwrap();
        assert_eq!(heartbeat.instances[0].count, 2);
        assert_eq!(heartbeat.stats[0].processed(), 3);
        assert!(!heartbeat.leaving);
        let bare = parse(r#"{"agent":"h:1"}"#).unwrap();
        assert!(bare.instances.is_empty() && bare.stats.is_empty());
        assert!(parse(r#"{"agent":"h:1","leaving":true}"#).unwrap().leaving);
    }

    #[test]
    fn bad_heartbeats_are_rejected_with_the_reason() {
        let twice = format!(
            r#"{{"agent":"h:1","stats":[{},{}]}}"#,
            report(1, LATENCY_BUCKETS),
            report(1, LATENCY_BUCKETS)
        );
        let short = format!(r#"{{"agent":"h:1","stats":[{}]}}"#, report(4, 3));
        let cases = [
            (r#"{"agent":""}"#, "agent \"\" must not be empty"),
            (r#"{"agent":"nohost"}"#, "must be host:port"),
            (r#"{"agent":"h:1","colour":1}"#, "unknown field `colour`"),
            (
                r#"{"agent":"h:1","instances":[{"worker":"a b","count":1}]}"#,
                "instance worker \"a b\" contains ' '",
            ),
            (
                r#"{"agent":"h:1","instances":[{"worker":"a","count":0}]}"#,
                "count 0",
            ),
            (
                r#"{"agent":"h:1","instances":[{"worker":"a","count":-1}]}"#,
                "invalid value",
            ),
            (
                r#"{"agent":"h:1","instances":[{"worker":"a","count":1},{"worker":"a","count":2}]}"#,
                "listed twice",
            ),
            (&twice, "instance 1 is listed twice"),
            (&short, "instance 4 has 3 latency buckets, expected 17"),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err();
            assert!(
                error.contains(expected),
                "{json}: `{error}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn sums_that_overflow_saturate_instead_of_wrapping_or_panicking() {
        let mut report: InstanceReport = serde_json::from_str(&report(1, LATENCY_BUCKETS)).unwrap();
        report.responses = u64::MAX;
        report.latency.counts[3] = u64::MAX;
        assert_eq!(report.processed(), u64::MAX);
        assert_eq!(report.latency.count(), u64::MAX);
        assert_eq!(report.latency.quantile_ms(1.0), Some(0.5));
    }

    #[test]
    fn quantiles_come_from_the_bucket_bounds() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        // 1 under 50 µs, 4 under 100 µs, 3 under 500 µs, 1 under 1 ms, 1 overflow.
        latency.counts[0] = 1;
        latency.counts[1] = 4;
        latency.counts[3] = 3;
        latency.counts[4] = 1;
        latency.counts[16] = 1;
        assert_eq!(latency.count(), 10);
        assert_eq!(latency.quantile_ms(0.1), Some(0.05));
        assert_eq!(latency.quantile_ms(0.5), Some(0.1));
        assert_eq!(latency.quantile_ms(0.9), Some(1.0));
        assert_eq!(latency.quantile_ms(1.0), Some(10_000.0));
    }

    #[test]
    fn since_subtracts_and_treats_a_drop_as_a_restart() {
        let mut earlier = Latency::default();
        earlier.counts[2] = 5;
        earlier.sum_us = 1_000;
        let mut now = earlier.clone();
        now.counts[2] = 7;
        now.counts[5] = 1;
        now.sum_us = 4_000;
        let delta = now.since(&earlier);
        assert_eq!(
            (delta.counts[2], delta.counts[5], delta.sum_us),
            (2, 1, 3_000)
        );
        let mut restarted = Latency::default();
        restarted.counts[0] = 1;
        restarted.sum_us = 10;
        assert_eq!(restarted.since(&earlier), restarted);
        let mut sum = Latency::default();
        sum.add(&delta);
        sum.add(&restarted);
        assert_eq!(sum.count(), 4);
    }
}
