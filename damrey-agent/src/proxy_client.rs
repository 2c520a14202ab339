//! The agent's side of the proxy: the worker configs, kept current by waiting on the
//! proxy's change feed, and the heartbeat that tells the proxy this agent's instances
//! and learns where the other agents' instances are.
//!
//! The configs are cached in the router and on disk ([`crate::cache`]): while the proxy
//! is down, routing goes on from the last configs (across a restart of the agent too),
//! and the agent catches up as soon as the proxy answers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::report::{Heartbeat, InstanceCount};
use damrey_actors::{Router, WorkerSpec};
use serde::{Deserialize, Serialize};

use crate::cache::ConfigCache;
use crate::stats::Registry;

/// `GET /workers/get`: every worker and the config version; also the agent's cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    /// Bumped by every change.
    pub version: i64,
    /// Every worker's config.
    pub workers: Vec<WorkerSpec>,
}

/// `GET /agents`: the live agents.
#[derive(Debug, Deserialize)]
pub struct AgentList {
    /// Every live agent.
    pub agents: Vec<AgentEntry>,
}

/// One live agent and its instances.
#[derive(Debug, Deserialize)]
pub struct AgentEntry {
    /// Its `host:port`.
    pub agent: String,
    /// Its instances.
    pub instances: Vec<InstanceCount>,
}

/// An HTTP client for the proxy's REST API.
pub struct ProxyClient {
    base: String,
    token: Option<String>,
    client: awc::Client,
}

impl ProxyClient {
    /// A client for the proxy at `host:port`, sending `token` when set.
    pub fn new(proxy: &str, token: Option<String>, timeout: Duration) -> Self {
        ProxyClient {
            base: format!("http://{proxy}"),
            token,
            client: awc::Client::builder().timeout(timeout).finish(),
        }
    }

    fn get(&self, path: &str) -> awc::ClientRequest {
        let request = self.client.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The configs, waiting up to `wait_ms` for a version newer than `after`.
    ///
    /// # Errors
    /// A description of what failed.
    pub async fn workers(&self, after: Option<i64>, wait_ms: u64) -> Result<WorkerList, String> {
        let path = match after {
            Some(version) => format!("/workers/get?after={version}&wait_ms={wait_ms}"),
            None => "/workers/get".to_owned(),
        };
        let mut response = self.get(&path).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the proxy answered {}", response.status()));
        }
        response
            .json::<WorkerList>()
            .limit(64 << 20)
            .await
            .map_err(|e| e.to_string())
    }

    /// Tells the proxy which instances this agent holds.
    ///
    /// # Errors
    /// A description of what failed.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), String> {
        let request = self.client.post(format!("{}/agents/heartbeat", self.base));
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send_json(heartbeat)
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the proxy answered {}", response.status()))
        }
    }

    /// The live agents and their instances.
    ///
    /// # Errors
    /// A description of what failed.
    pub async fn agents(&self) -> Result<AgentList, String> {
        let mut response = self
            .get("/agents")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("the proxy answered {}", response.status()));
        }
        response
            .json::<AgentList>()
            .limit(16 << 20)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Keeps the router's configs equal to the proxy's, forever: a long wait on the change
/// feed, then the next; on failure, a short pause and again (the configs stay). Every
/// version taken is kept in `cache` for the agent's next start.
///
/// The first answer is always taken, whatever the cache held: a store replaced behind
/// the proxy may reuse a version number for other configs.
pub async fn follow_configs(router: Router, client: ProxyClient, wait_ms: u64, cache: ConfigCache) {
    let mut version = None;
    let mut failures = 0u32;
    loop {
        match client.workers(version, wait_ms).await {
            Ok(list) => {
                failures = 0;
                if version != Some(list.version) {
                    let count = list.workers.len();
                    match router.set_specs(list.workers.clone()) {
                        Ok(()) => {
                            tracing::info!(
                                version = list.version,
                                workers = count,
                                "configs updated"
                            );
                            version = Some(list.version);
                            keep_on_disk(&cache, list).await;
                        }
                        Err(error) => {
                            tracing::error!(error = %error, "the proxy sent an invalid config")
                        }
                    }
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %error, "the proxy is unreachable; routing from the cached configs");
                }
                let pause = Duration::from_millis(100 * u64::from(failures.min(5)));
                actix_rt::time::sleep(pause).await;
            }
        }
    }
}

/// Writes `list` to the disk cache on a blocking thread. A failure costs only the
/// cache's freshness, so it is logged and routing goes on.
async fn keep_on_disk(cache: &ConfigCache, list: WorkerList) {
    let cache = cache.clone();
    match tokio::task::spawn_blocking(move || cache.store(&list)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not keep the configs on disk"
        ),
        Err(error) => tracing::warn!(error = %error, "could not keep the configs on disk"),
    }
}

/// This agent's heartbeat now: its instances and, when it counts, their counters.
fn current_heartbeat(router: &Router, registry: Option<&Registry>) -> Heartbeat {
    Heartbeat {
        agent: router.me().to_owned(),
        instances: router
            .local_counts()
            .into_iter()
            .map(|(worker, count)| InstanceCount {
                worker,
                count: u32::try_from(count).unwrap_or(u32::MAX),
            })
            .collect(),
        stats: registry.map(Registry::reports).unwrap_or_default(),
        leaving: false,
    }
}

/// Every `every`: tells the proxy this agent's instances and their counters (one
/// request), and learns the other agents' instances.
pub async fn heartbeat(
    router: Router,
    registry: Option<Arc<Registry>>,
    client: ProxyClient,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let heartbeat = current_heartbeat(&router, registry.as_deref());
        if let Err(error) = client.heartbeat(&heartbeat).await {
            tracing::debug!(error = %error, "heartbeat failed");
            continue;
        }
        match client.agents().await {
            Ok(list) => router.set_all_remote_instances(holders(list, router.me())),
            Err(error) => tracing::debug!(error = %error, "listing agents failed"),
        }
    }
}

/// Worker name → the other agents holding instances of it.
fn holders(list: AgentList, me: &str) -> HashMap<String, Vec<String>> {
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for entry in list.agents.into_iter().filter(|entry| entry.agent != me) {
        for instance in entry
            .instances
            .into_iter()
            .filter(|instance| instance.count > 0)
        {
            holders
                .entry(instance.worker)
                .or_default()
                .push(entry.agent.clone());
        }
    }
    holders
}
