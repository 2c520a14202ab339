//! The bodies of the proxy's REST API that agents read too: the worker list and the
//! agent list (placement). The heartbeat agents send is [`crate::report::Heartbeat`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::InstanceCount;
use crate::spec::WorkerSpec;

/// What a service answers when it refuses a request or fails: `{"error": "..."}`, on
/// every status from 400 up that the services make (a call's terminal reply is a
/// message instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": "no worker named \"add\""})))]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

impl ErrorBody {
    /// The body for `error`'s message.
    pub fn new(error: impl ToString) -> ErrorBody {
        ErrorBody {
            error: error.to_string(),
        }
    }
}

/// The answer of `GET /workers/get`: `{"version": 7, "workers": [...]}`, and
/// `"warnings": {"add": [...]}` for the workers whose lines the configs cannot carry yet.
/// Also what an agent keeps in its config cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// The config version the list belongs to; bumped by every change.
    pub version: i64,
    /// Every worker, sorted by name, in the seed's JSON form.
    pub workers: Vec<WorkerSpec>,
    /// [`WorkerSpec::warnings`] of each worker that has any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub warnings: BTreeMap<String, Vec<String>>,
}

/// The answer of `GET /agents`: the live agents and the placement version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentList {
    /// The placement version the list belongs to: it moves whenever the instances
    /// listed change by a heartbeat, a leave or a forget (not when an agent's entry
    /// merely expires).
    pub version: i64,
    /// Agents silent for longer than this are not listed. (The agent does not read it,
    /// nor the times of each entry: those default, so that a reader depends only on
    /// what it uses.)
    #[serde(default)]
    pub ttl_ms: u64,
    /// The listed agents (not found silent past the TTL), sorted by address: all of
    /// them, or with `since` only those whose listing (instances) changed after that
    /// version; their times are as of the answer, but a change of times alone is not a
    /// change.
    pub agents: Vec<AgentEntry>,
    /// Set when the answer holds only the changes after this version (asked for with
    /// `delta=true`, and answered when the proxy still remembers that version): apply
    /// `agents` and `gone` to the list held at `since`. Absent, the list is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// With `since`, the agents listed then and no longer, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<String>,
}

/// A live agent as `GET /agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentEntry {
    /// The agent's address, `host:port`.
    pub agent: String,
    /// The instances it reported last, sorted by worker.
    pub instances: Vec<InstanceCount>,
    /// When it was first seen since it last expired (ms since the Unix epoch).
    #[serde(default)]
    pub first_seen_ms: i64,
    /// When it was last heard from (ms since the Unix epoch, the proxy's clock).
    #[serde(default)]
    pub last_seen_ms: i64,
    /// How long ago that was, in ms, when this answer was made.
    #[serde(default)]
    pub age_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_list_reads_with_only_what_the_agent_uses() {
        let list: AgentList = serde_json::from_str(
            r#"{"version":7,"agents":[{"agent":"h:1","instances":[{"worker":"add","count":2}]}]}"#,
        )
        .unwrap();
        assert_eq!((list.version, list.agents[0].agent.as_str()), (7, "h:1"));
        assert_eq!(list.agents[0].instances[0].count, 2);
    }

    #[test]
    fn a_worker_list_without_warnings_writes_none_and_reads_them_as_empty() {
        let list = WorkerList {
            version: 3,
            workers: vec![WorkerSpec::new("add")],
            warnings: BTreeMap::new(),
        };

        let json = serde_json::to_string(&list).unwrap();

        assert!(!json.contains("warnings"), "{json}");
        assert_eq!(serde_json::from_str::<WorkerList>(&json).unwrap(), list);
    }

    #[test]
    fn an_agent_list_reads_back_what_the_proxy_writes() {
        let list = AgentList {
            version: 2,
            ttl_ms: 10_000,
            agents: vec![AgentEntry {
                agent: "127.0.0.1:7701".to_owned(),
                instances: vec![InstanceCount {
                    worker: "add".to_owned(),
                    count: 2,
                }],
                first_seen_ms: 1,
                last_seen_ms: 5,
                age_ms: 4,
            }],
            since: None,
            gone: Vec::new(),
        };

        let json = serde_json::to_string(&list).unwrap();

        assert!(!json.contains("since") && !json.contains("gone"), "{json}");
        assert_eq!(serde_json::from_str::<AgentList>(&json).unwrap(), list);
        let changes = AgentList {
            since: Some(1),
            gone: vec!["h:9".to_owned()],
            ..list
        };
        let json = serde_json::to_string(&changes).unwrap();
        assert_eq!(serde_json::from_str::<AgentList>(&json).unwrap(), changes);
    }
}
