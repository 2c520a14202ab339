//! What an agent reports to the proxy every second, `POST /agents/heartbeat`: the worker
//! instances attached to it, each one's counters and latency histogram, and each
//! worker's routing counters.
//!
//! Counters are cumulative since the instance attached (the routing counters: since the
//! agent's run started); the proxy turns two reports into rates and windowed latencies.
//! A counter that goes down means the agent restarted. The counters are declared in
//! [`crate::steps`] and the histogram in [`crate::latency`]; both are re-exported here,
//! beside the heartbeat that carries them.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

pub use crate::latency::{LATENCY_BOUNDS_MICROS, LATENCY_BUCKETS, Latency};
use crate::spec::{SpecError, validate_agent, validate_name};
pub use crate::steps::{Counters, InstanceReport, Routing};

/// The most instances one heartbeat may report.
pub const MAX_REPORTED_INSTANCES: usize = 4_096;

/// The most workers one heartbeat may report routing counters of.
pub const MAX_REPORTED_WORKERS: usize = 4_096;

/// An agent's heartbeat: `{"agent":"127.0.0.1:7701","instances":[{"worker":"add","count":2}],`
/// `"stats":[...],"routing":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(
    example = json!({"agent": "127.0.0.1:7701", "instances": [{"worker": "add", "count": 2}],
        "routing": {"square": {"rejected_no_instance": 3}}})
))]
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
    /// Worker name → its routing counters on this agent (steps refused, hand-offs
    /// retried); a worker left out has counted nothing, as has every worker of an agent
    /// from before this field.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, Routing>,
    /// The agent is shutting down cleanly: forget it now rather than alarm when it goes
    /// silent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// How many instances of one worker are attached to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstanceCount {
    /// The worker's name.
    pub worker: String,
    /// How many instances, at least 1.
    pub count: u32,
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
    /// Too many workers in `routing`.
    #[error("routing lists {0} workers, the most is {MAX_REPORTED_WORKERS}")]
    TooManyWorkers(usize),
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
    /// Checks the address, the worker names, the counts, that nothing repeats, the shape
    /// of each latency histogram, and how many workers `routing` lists.
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
        if self.routing.len() > MAX_REPORTED_WORKERS {
            return Err(HeartbeatError::TooManyWorkers(self.routing.len()));
        }
        for worker in self.routing.keys() {
            validate_name("routing worker", worker)?;
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
    fn the_routing_section_is_pinned_and_whatever_it_leaves_out_counts_zero() {
        let mut heartbeat = parse(r#"{"agent":"h:1"}"#).unwrap();
        assert!(heartbeat.routing.is_empty());
        assert_eq!(
            serde_json::to_string(&heartbeat).unwrap(),
            r#"{"agent":"h:1","instances":[],"stats":[]}"#
        );
        heartbeat.routing.insert(
            "idle".to_owned(),
            Routing {
                rejected_no_instance: 2,
                rejected_overloaded: 3,
                rejected_type: 4,
                handoff_retries: 5,
            },
        );

        let json = serde_json::to_string(&heartbeat).unwrap();

        assert_eq!(
            json,
            r#"{"agent":"h:1","instances":[],"stats":[],"routing":{"idle":{"rejected_no_instance":2,"rejected_overloaded":3,"rejected_type":4,"handoff_retries":5}}}"#
        );
        assert_eq!(parse(&json).unwrap(), heartbeat);
        let partial = parse(r#"{"agent":"h:1","routing":{"idle":{"rejected_no_instance":2}}}"#);
        assert_eq!(
            partial.unwrap().routing["idle"],
            Routing {
                rejected_no_instance: 2,
                ..Routing::default()
            }
        );
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
            (
                r#"{"agent":"h:1","routing":{"a b":{}}}"#,
                "routing worker \"a b\" contains ' '",
            ),
            (
                r#"{"agent":"h:1","routing":{"a":{"rejected_colour":1}}}"#,
                "unknown field `rejected_colour`",
            ),
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
}
