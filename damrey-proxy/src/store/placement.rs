//! The placement as this proxy holds it in memory: the live agents and their instances
//! at one placement version, read from the store once per version (and at most every
//! [`PLACEMENT_MAX_AGE`]) instead of once per request, so that N agents waking on a
//! change cost one read of N rows, not N reads of N rows each.
//!
//! The stored version stays the truth: a held placement is served only while it is at
//! the version the caller knows of (the stored one, or the one the change feed saw,
//! which is this proxy's own writes at once and other proxies' within `feed_poll_ms`).
//! Heartbeats through this proxy that move nothing update their agent's entry in place
//! (its last-seen time), so its own agents' entries are exact; those of agents that
//! report to other proxies are at most [`PLACEMENT_MAX_AGE`] old.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Placement, Store, StoreError};
use crate::registry::AgentEntry;

/// The longest a placement read from the store is served for; it bounds how stale the
/// last-seen times of agents reporting to other proxies can be (and it is cut to a
/// quarter of the agents' TTL when that is shorter).
pub const PLACEMENT_MAX_AGE: Duration = Duration::from_secs(1);

/// Which version a caller needs the placement at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Read the stored version (one small query) and serve that one.
    Stored,
    /// At least this version: the latest the change feed has seen.
    AtLeast(i64),
}

/// The held placement and the lock that makes one refresh serve every waiting caller.
#[derive(Debug, Default)]
pub(super) struct PlacementCache {
    held: Mutex<Option<Held>>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Held {
    version: i64,
    read_at: Instant,
    agents: BTreeMap<String, AgentEntry>,
}

impl PlacementCache {
    /// The held placement as of `now_ms`, when it is younger than `max_age` and at the
    /// version wanted: exactly `version` when `exact` (read from the store just now),
    /// else at least it.
    fn fresh(
        &self,
        version: i64,
        exact: bool,
        max_age: Duration,
        now_ms: i64,
        ttl: Duration,
    ) -> Option<Placement> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let held = held.as_ref()?;
        let at_version = if exact {
            held.version == version
        } else {
            held.version >= version
        };
        if !at_version || held.read_at.elapsed() >= max_age {
            return None;
        }
        let oldest = now_ms.saturating_sub(super::ms(ttl));
        Some(Placement {
            version: held.version,
            agents: held
                .agents
                .values()
                .filter(|entry| entry.last_seen_ms >= oldest)
                .map(|entry| AgentEntry {
                    age_ms: now_ms.saturating_sub(entry.last_seen_ms).max(0),
                    ..entry.clone()
                })
                .collect(),
        })
    }

    /// Holds `placement`, read from the store at `read_at`.
    fn hold(&self, placement: &Placement, read_at: Instant) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held {
            version: placement.version,
            read_at,
            agents: placement
                .agents
                .iter()
                .map(|entry| (entry.agent.clone(), entry.clone()))
                .collect(),
        });
    }

    /// A heartbeat through this proxy that did not move the placement: its agent's
    /// entry as stored now (a new agent without instances is listed from now on).
    pub(super) fn heard(&self, entry: &AgentEntry) {
        if let Some(held) = self.held.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            held.agents.insert(entry.agent.clone(), entry.clone());
        }
    }

    /// An agent that left or was forgotten through this proxy.
    pub(super) fn gone(&self, agent: &str) {
        if let Some(held) = self.held.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            held.agents.remove(agent);
        }
    }
}

impl Store {
    /// The agents heard from within `ttl` before `now_ms` and the placement version, as
    /// [`Store::agents`] reads them, but served from memory while the held placement is
    /// at the version `known` names and younger than [`PLACEMENT_MAX_AGE`] (or a
    /// quarter of `ttl`); callers arriving together share one read.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn placement(
        &self,
        now_ms: i64,
        ttl: Duration,
        known: Known,
    ) -> Result<Placement, StoreError> {
        let (version, exact) = match known {
            Known::Stored => (self.placement_version().await?, true),
            Known::AtLeast(version) => (version, false),
        };
        let max_age = PLACEMENT_MAX_AGE.min(ttl / 4);
        let cache = &self.placement_cache;
        if let Some(placement) = cache.fresh(version, exact, max_age, now_ms, ttl) {
            return Ok(placement);
        }
        let _refresh = cache.refreshing.lock().await;
        // Another caller may have read it while this one waited for the lock.
        if let Some(placement) = cache.fresh(version, false, max_age, now_ms, ttl) {
            return Ok(placement);
        }
        let read_at = Instant::now();
        let placement = self.agents(now_ms, ttl).await?;
        cache.hold(&placement, read_at);
        Ok(placement)
    }
}
