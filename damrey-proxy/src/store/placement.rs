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
//!
//! Each version read is compared with the one held before, and the agents whose
//! listing differs are remembered for [`CHANGES_KEPT`] steps, so that an agent waiting
//! past version V is answered only what changed since V: a change costs each agent the
//! changed entries, not the whole list.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{Placement, Store, StoreError};
use damrey_wire::rest::AgentEntry;

/// The longest a placement read from the store is served for; it bounds how stale the
/// last-seen times of agents reporting to other proxies can be (and it is cut to a
/// quarter of the agents' TTL when that is shorter).
pub const PLACEMENT_MAX_AGE: Duration = Duration::from_secs(1);

/// How many version steps a proxy remembers the changes of: an agent whose version is
/// older than the oldest of them (or one this proxy never held) gets the whole list.
pub const CHANGES_KEPT: usize = 1024;

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
    /// The versions held in turn and the agents whose listing differed from each to the
    /// next, oldest first and contiguous (each step starts where the one before ended,
    /// the last ends at `version`); at most [`CHANGES_KEPT`].
    steps: VecDeque<Step>,
}

/// The agents whose listing (being listed, and the instances) differs between two
/// placement versions held one after the other.
#[derive(Debug)]
struct Step {
    from: i64,
    agents: Vec<String>,
}

impl Held {
    /// The agents whose listing changed after `since`, when the steps reach back to it.
    fn changed_since(&self, since: i64) -> Option<BTreeSet<&str>> {
        if since == self.version {
            return Some(BTreeSet::new());
        }
        let first = self.steps.iter().position(|step| step.from == since)?;
        Some(
            self.steps
                .range(first..)
                .flat_map(|step| step.agents.iter().map(String::as_str))
                .collect(),
        )
    }

    /// `entry` as answered at `now_ms`.
    fn aged(entry: &AgentEntry, now_ms: i64) -> AgentEntry {
        AgentEntry {
            age_ms: now_ms.saturating_sub(entry.last_seen_ms).max(0),
            ..entry.clone()
        }
    }

    /// The answer at `now_ms`: the changes since `since` when the steps reach back to
    /// it, else every listed agent.
    fn answer(&self, since: Option<i64>, now_ms: i64) -> Placement {
        let changed = since.and_then(|since| Some((since, self.changed_since(since)?)));
        let Some((since, changed)) = changed else {
            return Placement::whole(
                self.version,
                self.agents
                    .values()
                    .map(|entry| Held::aged(entry, now_ms))
                    .collect(),
            );
        };
        let mut answer = Placement {
            version: self.version,
            since: Some(since),
            agents: Vec::new(),
            gone: Vec::new(),
        };
        for agent in changed {
            match self.agents.get(agent) {
                Some(entry) => answer.agents.push(Held::aged(entry, now_ms)),
                None => answer.gone.push(agent.to_owned()),
            }
        }
        answer
    }
}

/// The agents listed in only one of `before` and `after`, or with other instances.
fn differences(
    before: &BTreeMap<String, AgentEntry>,
    after: &BTreeMap<String, AgentEntry>,
) -> Vec<String> {
    let mut agents: Vec<String> = after
        .iter()
        .filter(|(agent, entry)| {
            before
                .get(*agent)
                .is_none_or(|held| held.instances != entry.instances)
        })
        .map(|(agent, _)| agent.clone())
        .collect();
    agents.extend(
        before
            .keys()
            .filter(|agent| !after.contains_key(*agent))
            .cloned(),
    );
    agents
}

impl PlacementCache {
    /// The answer at `now_ms` from the held placement, when it is younger than
    /// `max_age` and at the version wanted: exactly `version` when `exact` (read from
    /// the store just now), else at least it.
    fn fresh(
        &self,
        version: i64,
        exact: bool,
        max_age: Duration,
        now_ms: i64,
        since: Option<i64>,
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
        Some(held.answer(since, now_ms))
    }

    /// Holds `placement` (a whole one), read from the store at `read_at`, remembering
    /// what changed since the one held before.
    fn hold(&self, placement: &Placement, read_at: Instant) {
        let agents: BTreeMap<String, AgentEntry> = placement
            .agents
            .iter()
            .map(|entry| (entry.agent.clone(), entry.clone()))
            .collect();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let steps = match held.take() {
            Some(before) if before.version <= placement.version => {
                let mut steps = before.steps;
                if before.version < placement.version {
                    steps.push_back(Step {
                        from: before.version,
                        agents: differences(&before.agents, &agents),
                    });
                    if steps.len() > CHANGES_KEPT {
                        steps.pop_front();
                    }
                }
                steps
            }
            // None held, or an older version than held: the store was replaced, and
            // what was remembered describes another history.
            _ => VecDeque::new(),
        };
        *held = Some(Held {
            version: placement.version,
            read_at,
            agents,
            steps,
        });
    }

    /// A heartbeat through this proxy that did not move the placement: its agent's
    /// times as stored now.
    pub(super) fn heard(&self, entry: &AgentEntry) {
        if let Some(held) = self.held.lock().unwrap_or_else(|p| p.into_inner()).as_mut()
            && let Some(listed) = held.agents.get_mut(&entry.agent)
        {
            listed.first_seen_ms = entry.first_seen_ms;
            listed.last_seen_ms = entry.last_seen_ms;
        }
    }
}

impl Store {
    /// The listed agents and the placement version, as [`Store::agents`] reads them, but
    /// served from memory while the held placement is at the version `known` names and
    /// younger than [`PLACEMENT_MAX_AGE`] (or a quarter of `ttl`); callers arriving
    /// together share one read. With `since`, only what changed after that version
    /// when this proxy remembers it ([`Placement::since`] says which was answered).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn placement(
        &self,
        now_ms: i64,
        ttl: Duration,
        known: Known,
        since: Option<i64>,
    ) -> Result<Placement, StoreError> {
        let (version, exact) = match known {
            Known::Stored => (self.placement_version().await?, true),
            Known::AtLeast(version) => (version, false),
        };
        let max_age = PLACEMENT_MAX_AGE.min(ttl / 4);
        let cache = &self.placement_cache;
        if let Some(placement) = cache.fresh(version, exact, max_age, now_ms, since) {
            return Ok(placement);
        }
        let _refresh = cache.refreshing.lock().await;
        // Another caller may have read it while this one waited for the lock.
        if let Some(placement) = cache.fresh(version, false, max_age, now_ms, since) {
            return Ok(placement);
        }
        let read_at = Instant::now();
        let placement = self.agents(now_ms).await?;
        cache.hold(&placement, read_at);
        Ok(cache
            .fresh(placement.version, false, Duration::MAX, now_ms, since)
            .unwrap_or(placement))
    }
}
