//! The agent registry's SQL: heartbeats recorded many to one statement, agents leaving
//! and forgotten, the expiry sweep, and the read of the placement.
//!
//! An agent's row holds all that `GET /agents` lists of it (its instances as JSON, and
//! whether it is listed), so a batch of heartbeats is one multi-row upsert whose
//! `RETURNING` says which of them moved the placement, and the placement is one read of
//! the listed rows. Every write that changes the listing — an agent new or back, other
//! instances, an agent leaving, forgotten, or found silent past the TTL — moves the
//! placement version in the same transaction, so agents can follow the placement by its
//! changes alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use damrey_wire::report::{Heartbeat, InstanceCount};
use sqlx::{Any, Row, Transaction};

use super::{Placement, Registered, Store, StoreError, ms, stats};
use damrey_wire::rest::AgentEntry;

/// The parameters one heartbeat binds in the batched upsert: address, time, instances.
const PARAMETERS_PER_AGENT: usize = 3;

impl Store {
    /// Records one heartbeat at `now_ms`; see [`Store::heartbeats`]. A `leaving`
    /// heartbeat removes the agent at once (its samples stay until the retention prunes
    /// them), so that no alarm fires for it.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn heartbeat(
        &self,
        heartbeat: &Heartbeat,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<Registered<AgentEntry>, StoreError> {
        if heartbeat.leaving {
            let placement = self.remove_agent(&heartbeat.agent, false).await?.placement;
            return Ok(Registered {
                value: AgentEntry {
                    agent: heartbeat.agent.clone(),
                    instances: Vec::new(),
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    age_ms: 0,
                },
                placement,
            });
        }
        let recorded = self
            .heartbeats(&[heartbeat], &[heartbeat], now_ms, ttl)
            .await?;
        Ok(Registered {
            value: recorded
                .value
                .into_iter()
                .next()
                .unwrap_or_else(|| unreachable!("one heartbeat recorded answers one entry")),
            placement: recorded.placement,
        })
    }

    /// Records `heartbeats` (of distinct agents, none `leaving`) at `now_ms` in one
    /// transaction: one upsert of their rows, the samples of those in `sampled`, and one
    /// move of the placement version when any of them changed the listing. Their
    /// entries as recorded, in the same order.
    ///
    /// An agent is listed from its first heartbeat, and again after it was found silent
    /// (its `first_seen_ms` then starts over, as it does when it was silent for longer
    /// than `ttl` and the sweep has not run yet). The periodic heartbeat of an unchanged
    /// agent moves nothing.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; nothing of the batch is recorded then.
    pub async fn heartbeats(
        &self,
        heartbeats: &[&Heartbeat],
        sampled: &[&Heartbeat],
        now_ms: i64,
        ttl: Duration,
    ) -> Result<Registered<Vec<AgentEntry>>, StoreError> {
        debug_assert!(
            heartbeats.iter().all(|heartbeat| !heartbeat.leaving),
            "a farewell is recorded by Store::heartbeat"
        );
        let listings: Vec<(Vec<InstanceCount>, String)> = heartbeats
            .iter()
            .map(|heartbeat| {
                let mut instances = heartbeat.instances.clone();
                instances.sort_by(|a, b| a.worker.cmp(&b.worker));
                let json = serde_json::to_string(&instances)
                    .expect("a list of instance counts always serializes");
                (instances, json)
            })
            .collect();
        self.bounded(async move {
            let mut tx = self.pool.begin().await?;
            let mut sql = String::from(
                "INSERT INTO agents (address, first_seen_ms, last_seen_ms, instances, listed, moved) VALUES ",
            );
            for row in 0..heartbeats.len() {
                let first = row * PARAMETERS_PER_AGENT;
                let separator = if row == 0 { "" } else { ", " };
                let _ = write!(
                    sql,
                    "{separator}(${}, ${}, ${}, ${}, 1, 1)",
                    first + 1,
                    first + 2,
                    first + 2,
                    first + 3
                );
            }
            // Every SET sees the row as it was, so `moved` compares the old listing
            // with the new one.
            let _ = write!(
                sql,
                " ON CONFLICT (address) DO UPDATE SET \
                 first_seen_ms = CASE WHEN agents.listed = 1 AND agents.last_seen_ms >= ${oldest} \
                 THEN agents.first_seen_ms ELSE excluded.first_seen_ms END, \
                 moved = CASE WHEN agents.listed = 1 AND agents.instances = excluded.instances \
                 THEN 0 ELSE 1 END, \
                 instances = excluded.instances, \
                 listed = 1, \
                 last_seen_ms = excluded.last_seen_ms \
                 RETURNING address, first_seen_ms, moved",
                oldest = heartbeats.len() * PARAMETERS_PER_AGENT + 1
            );
            let mut query = sqlx::query(&sql);
            for (heartbeat, (_, json)) in heartbeats.iter().zip(&listings) {
                query = query.bind(&heartbeat.agent).bind(now_ms).bind(json);
            }
            let rows = query
                .bind(now_ms.saturating_sub(ms(ttl)))
                .fetch_all(&mut *tx)
                .await?;
            let mut recorded: HashMap<String, (i64, bool)> = HashMap::with_capacity(rows.len());
            for row in rows {
                let moved: i64 = row.try_get("moved")?;
                recorded.insert(row.try_get("address")?, (row.try_get("first_seen_ms")?, moved != 0));
            }
            stats::insert_samples(&mut tx, sampled, now_ms).await?;
            let moved = recorded.values().any(|(_, moved)| *moved);
            let placement = bump_placement_if(&mut tx, moved).await?;
            tx.commit().await?;
            let entries: Vec<AgentEntry> = heartbeats
                .iter()
                .zip(listings)
                .map(|(heartbeat, (instances, _))| AgentEntry {
                    agent: heartbeat.agent.clone(),
                    instances,
                    first_seen_ms: recorded
                        .get(&heartbeat.agent)
                        .map_or(now_ms, |(first_seen_ms, _)| *first_seen_ms),
                    last_seen_ms: now_ms,
                    age_ms: 0,
                })
                .collect();
            if placement.is_none() {
                for entry in &entries {
                    self.placement_cache.heard(entry);
                }
            }
            Ok(Registered {
                value: entries,
                placement,
            })
        })
        .await
    }

    /// Forgets an agent: its registry entry and its samples, so that a machine that will
    /// not come back stops raising `agent_silent`. Whether it was known; the placement
    /// moves when it was listed.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn forget_agent(&self, agent: &str) -> Result<Registered<bool>, StoreError> {
        self.remove_agent(agent, true).await
    }

    /// Removes `agent`'s row, and its samples when `samples`; whether anything was
    /// removed, and the new placement version when it was listed.
    async fn remove_agent(
        &self,
        agent: &str,
        samples: bool,
    ) -> Result<Registered<bool>, StoreError> {
        self.bounded(async move {
            let mut tx = self.pool.begin().await?;
            let removed = sqlx::query("DELETE FROM agents WHERE address = $1 RETURNING listed")
                .bind(agent)
                .fetch_optional(&mut *tx)
                .await?;
            let listed = match &removed {
                Some(row) => row.try_get::<i64, _>("listed")? != 0,
                None => false,
            };
            let samples = if samples {
                stats::forget_samples(&mut tx, agent).await?
            } else {
                0
            };
            let placement = bump_placement_if(&mut tx, listed).await?;
            tx.commit().await?;
            Ok(Registered {
                value: removed.is_some() || samples > 0,
                placement,
            })
        })
        .await
    }

    /// Takes the agents silent for longer than `ttl` before `now_ms` off the placement,
    /// moving its version when there were any; the new version then. Several proxies
    /// may sweep at once: each agent is taken off by one of them.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn expire_agents(
        &self,
        now_ms: i64,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        self.bounded(async move {
            let mut tx = self.pool.begin().await?;
            let expired = sqlx::query(
                "UPDATE agents SET listed = 0, moved = 1 WHERE listed = 1 AND last_seen_ms < $1",
            )
            .bind(now_ms.saturating_sub(ms(ttl)))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let placement = bump_placement_if(&mut tx, expired > 0).await?;
            tx.commit().await?;
            Ok(placement)
        })
        .await
    }

    /// Every agent in the registry, silent ones too, with when it was last heard from:
    /// `(address, last_seen_ms)`, sorted by address.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn agents_last_seen(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query("SELECT address, last_seen_ms FROM agents ORDER BY address")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| Ok((row.try_get("address")?, row.try_get("last_seen_ms")?)))
                .collect()
        })
        .await
    }

    /// The listed agents, sorted by address, and the placement version, consistent with
    /// each other; `age_ms` is counted from `now_ms`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or a stored instance list is unreadable.
    pub async fn agents(&self, now_ms: i64) -> Result<Placement, StoreError> {
        self.bounded(async move {
            // One statement, so one snapshot on every backend, even at READ COMMITTED: a
            // waiter that sees version V has seen everything V stands for.
            let rows = sqlx::query(
                "SELECT p.version, a.address, a.first_seen_ms, a.last_seen_ms, a.instances \
                 FROM placement_version p \
                 LEFT JOIN agents a ON a.listed = 1 \
                 WHERE p.id = 1",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut version = 0;
            let mut agents: BTreeMap<String, AgentEntry> = BTreeMap::new();
            for row in rows {
                version = row.try_get("version")?;
                let Some(address) = row.try_get::<Option<String>, _>("address")? else {
                    continue;
                };
                let instances: String = row.try_get("instances")?;
                let instances = serde_json::from_str(&instances).map_err(|source| {
                    StoreError::CorruptAgent {
                        agent: address.clone(),
                        source,
                    }
                })?;
                let last_seen_ms: i64 = row.try_get("last_seen_ms")?;
                agents.insert(
                    address.clone(),
                    AgentEntry {
                        agent: address,
                        instances,
                        first_seen_ms: row.try_get("first_seen_ms")?,
                        last_seen_ms,
                        age_ms: now_ms.saturating_sub(last_seen_ms).max(0),
                    },
                );
            }
            Ok(Placement::whole(version, agents.into_values().collect()))
        })
        .await
    }
}

/// Moves the placement version inside `tx` when `changed`; the new version.
async fn bump_placement_if(
    tx: &mut Transaction<'_, Any>,
    changed: bool,
) -> Result<Option<i64>, StoreError> {
    if !changed {
        return Ok(None);
    }
    let row = sqlx::query(
        "UPDATE placement_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(row.try_get("version")?))
}
