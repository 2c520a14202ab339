//! The agent registry's JSON: the heartbeat an agent sends and the entries `GET /agents` lists.

use std::collections::HashSet;

use damrey_actors::SpecError;
use damrey_actors::spec::{validate_agent, validate_name};
use serde::{Deserialize, Serialize};

/// What an agent reports every few seconds:
/// `{"agent":"127.0.0.1:7701","instances":[{"worker":"add","count":2}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The agent's advertised address, `host:port`.
    pub agent: String,
    /// The worker instances attached to it now (the whole list, not a delta).
    #[serde(default)]
    pub instances: Vec<Instance>,
}

/// How many instances of one worker are attached to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
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
}

impl Heartbeat {
    /// Checks the address, the worker names, the counts and that no worker repeats.
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
        Ok(())
    }
}

/// A live agent as `GET /agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    /// The agent's address, `host:port`.
    pub agent: String,
    /// The instances it reported last, sorted by worker.
    pub instances: Vec<Instance>,
    /// When it was first seen since it last expired (ms since the Unix epoch).
    pub first_seen_ms: i64,
    /// When it was last heard from (ms since the Unix epoch, the proxy's clock).
    pub last_seen_ms: i64,
    /// How long ago that was, in ms, when this answer was made.
    pub age_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Heartbeat, String> {
        let heartbeat: Heartbeat = serde_json::from_str(json).map_err(|e| e.to_string())?;
        heartbeat.validate().map_err(|e| e.to_string())?;
        Ok(heartbeat)
    }

    #[test]
    fn a_heartbeat_with_instances_parses() {
        let heartbeat =
            parse(r#"{"agent":"127.0.0.1:7701","instances":[{"worker":"add","count":2}]}"#)
                .unwrap();
        assert_eq!(heartbeat.instances[0].count, 2);
        assert!(parse(r#"{"agent":"h:1"}"#).unwrap().instances.is_empty());
    }

    #[test]
    fn bad_heartbeats_are_rejected_with_the_reason() {
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
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err();
            assert!(
                error.contains(expected),
                "{json}: `{error}` lacks `{expected}`"
            );
        }
    }
}
