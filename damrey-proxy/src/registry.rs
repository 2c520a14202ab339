//! The agent registry's JSON: the entries `GET /agents` lists. The heartbeat agents send
//! is [`damrey_actors::report::Heartbeat`].

use damrey_actors::report::InstanceCount;
use serde::{Deserialize, Serialize};

/// A live agent as `GET /agents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    /// The agent's address, `host:port`.
    pub agent: String,
    /// The instances it reported last, sorted by worker.
    pub instances: Vec<InstanceCount>,
    /// When it was first seen since it last expired (ms since the Unix epoch).
    pub first_seen_ms: i64,
    /// When it was last heard from (ms since the Unix epoch, the proxy's clock).
    pub last_seen_ms: i64,
    /// How long ago that was, in ms, when this answer was made.
    pub age_ms: i64,
}
