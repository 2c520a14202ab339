//! The agent's side of the proxy: the worker configs, kept current by waiting on the
//! proxy's change feed; the heartbeat that tells the proxy this agent's instances (at
//! once when they change, and every period with their counters); and where the other
//! agents' instances are, kept current by waiting on the proxy's placement feed.
//!
//! Pushed rather than polled: an instance attaching here is in the proxy one heartbeat
//! later and in every other agent one wake-up after that, well within DESIGN §5.6's
//! 100 ms, instead of after the next periodic heartbeat and list.
//!
//! The configs are cached in the router and on disk ([`crate::cache`]): while the proxy
//! is down, routing goes on from the last configs (across a restart of the agent too),
//! and the agent catches up as soon as the proxy answers again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::Router;
use damrey_actors::report::{Heartbeat, InstanceCount};
use damrey_service::backoff::Backoff;
use damrey_service::credential::Secret;
use damrey_service::telemetry::error_chain;
use damrey_service::tls;
use damrey_wire::rest::{AgentList, WorkerList};

use crate::cache::ConfigCache;
use crate::known::KnownAgents;
use crate::shutdown::Flag;
use crate::stats::{self, Registry};

/// A request to the proxy that failed. Its causes are awc's, which are neither `Send`
/// nor `Sync`: the error stays on the task that made the request, where it is logged.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request could not be sent or got no answer.
    #[error("the request to the proxy failed")]
    Send(#[source] awc::error::SendRequestError),
    /// The proxy answered with a status other than 2xx.
    #[error("the proxy answered {0}")]
    Status(awc::http::StatusCode),
    /// The answer's body is not the JSON expected.
    #[error("the proxy's answer could not be read")]
    Body(#[source] awc::error::JsonPayloadError),
}

/// An HTTP client for the proxy's REST API.
pub struct ProxyClient {
    base: String,
    token: Option<Secret>,
    client: awc::Client,
}

impl ProxyClient {
    /// A client for the proxy at `host:port`, sending `token` when set, over HTTPS with
    /// `tls`.
    pub fn new(
        proxy: &str,
        token: Option<Secret>,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Self {
        ProxyClient {
            base: format!("{}://{proxy}", tls::http_scheme(tls.is_some())),
            token,
            client: tls::client(timeout, tls),
        }
    }

    fn get(&self, path: &str) -> awc::ClientRequest {
        let request = self.client.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// The configs, waiting up to `wait_ms` for a version newer than `after`.
    ///
    /// # Errors
    /// [`ProxyError`] when the proxy cannot be reached, answers other than 2xx, or
    /// answers what cannot be read.
    pub async fn workers(
        &self,
        after: Option<i64>,
        wait_ms: u64,
    ) -> Result<WorkerList, ProxyError> {
        let path = match after {
            Some(version) => format!("/workers/get?after={version}&wait_ms={wait_ms}"),
            None => "/workers/get".to_owned(),
        };
        let mut response = self.get(&path).send().await.map_err(ProxyError::Send)?;
        if !response.status().is_success() {
            return Err(ProxyError::Status(response.status()));
        }
        response
            .json::<WorkerList>()
            .limit(64 << 20)
            .await
            .map_err(ProxyError::Body)
    }

    /// Tells the proxy which instances this agent holds.
    ///
    /// # Errors
    /// [`ProxyError`] when the proxy cannot be reached, answers other than 2xx, or
    /// answers what cannot be read.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), ProxyError> {
        let request = self.client.post(format!("{}/agents/heartbeat", self.base));
        let request = match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        };
        let response = request
            .send_json(heartbeat)
            .await
            .map_err(ProxyError::Send)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ProxyError::Status(response.status()))
        }
    }

    /// The listed agents and their instances, waiting up to `wait_ms` for a placement
    /// version other than `after`; with `delta`, then only the changes after it, when
    /// the proxy still remembers that version (the answer's `since` says so).
    ///
    /// # Errors
    /// [`ProxyError`] when the proxy cannot be reached, answers other than 2xx, or
    /// answers what cannot be read.
    pub async fn agents(
        &self,
        after: Option<i64>,
        wait_ms: u64,
        delta: bool,
    ) -> Result<AgentList, ProxyError> {
        let path = match after {
            Some(version) if delta => {
                format!("/agents?after={version}&wait_ms={wait_ms}&delta=true")
            }
            Some(version) => format!("/agents?after={version}&wait_ms={wait_ms}"),
            None => "/agents".to_owned(),
        };
        let mut response = self.get(&path).send().await.map_err(ProxyError::Send)?;
        if !response.status().is_success() {
            return Err(ProxyError::Status(response.status()));
        }
        response
            .json::<AgentList>()
            .limit(16 << 20)
            .await
            .map_err(ProxyError::Body)
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
    let mut backoff = FOLLOW_BACKOFF;
    loop {
        match client.workers(version, wait_ms).await {
            Ok(list) => {
                failures = 0;
                backoff.reset();
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
                            // Keep routing from the configs we have, and wait for the
                            // next version rather than ask again for this one at once.
                            tracing::error!(version = list.version, error = %error, "the proxy sent an invalid config; keeping the last good ones");
                            version = Some(list.version);
                        }
                    }
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %error_chain(&error), "the proxy is unreachable; routing from the cached configs");
                }
                backoff.pause().await;
            }
        }
    }
}

/// How long a follower waits after failed requests before the next: soon after a blip,
/// and half a second at most (250 ms and its jitter), so that it catches up quickly
/// when the proxy is back.
const FOLLOW_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_millis(250));

/// The placement as this agent holds it: the listed agents and their instances at one
/// version, kept by applying the proxy's answers, whole or changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The version held; `None` before the first whole list.
    pub version: Option<i64>,
    /// Each listed agent's instances.
    pub agents: BTreeMap<String, Vec<InstanceCount>>,
}

impl Listing {
    /// Applies `list`: a whole list replaces what is held, changes apply to the version
    /// they were made from. Whether the instances held changed; `Err` when `list` holds
    /// changes from a version other than the one held (ask for a whole list then).
    ///
    /// # Errors
    /// [`StaleChanges`] as said.
    pub fn apply(&mut self, list: AgentList) -> Result<bool, StaleChanges> {
        let before = std::mem::take(&mut self.agents);
        let mut agents = match list.since {
            None => BTreeMap::new(),
            Some(since) if self.version == Some(since) => {
                let mut agents = before.clone();
                for gone in &list.gone {
                    agents.remove(gone);
                }
                agents
            }
            Some(since) => {
                self.agents = before;
                return Err(StaleChanges {
                    held: self.version,
                    since,
                });
            }
        };
        for entry in list.agents {
            agents.insert(entry.agent, entry.instances);
        }
        self.version = Some(list.version);
        self.agents = agents;
        Ok(self.agents != before)
    }

    /// Worker name → the agents other than `me` holding instances of it.
    fn holders(&self, me: &str) -> HashMap<String, Vec<String>> {
        let mut holders: HashMap<String, Vec<String>> = HashMap::new();
        for (agent, instances) in self.agents.iter().filter(|(agent, _)| *agent != me) {
            for instance in instances.iter().filter(|instance| instance.count > 0) {
                holders
                    .entry(instance.worker.clone())
                    .or_default()
                    .push(agent.clone());
            }
        }
        holders
    }
}

/// Changes made from a version other than the one held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the proxy sent the changes since version {since}, and version {held:?} is held")]
pub struct StaleChanges {
    /// The version held.
    pub held: Option<i64>,
    /// The version the changes start from.
    pub since: i64,
}

/// How long an agent waits on a proxy from before the placement's changes feed: one
/// heartbeat period, since such a proxy lets silent agents drop out of the list without
/// a new version, and they are seen gone when a wait times out.
pub const WHOLE_LIST_WAIT_MS: u64 = 1_000;

/// Keeps the router's view of where the other agents' instances are equal to the
/// proxy's, and `known` the agents it lists, forever: a wait on the placement feed (at
/// most `wait_ms`) answered with the changes since the version held, then the next; a
/// whole list at once when `known` wants one. Agents silent past the proxy's TTL leave
/// the list by a new version like any other change, so the waits can be long. A proxy
/// from before the changes feed refuses `delta` (400): then whole lists, waiting
/// [`WHOLE_LIST_WAIT_MS`], as agents did before.
pub async fn follow_placement(
    router: Router,
    client: ProxyClient,
    wait_ms: u64,
    known: Arc<KnownAgents>,
) {
    let mut listing = Listing::default();
    let mut failures = 0u32;
    let mut backoff = FOLLOW_BACKOFF;
    let mut delta = true;
    loop {
        let wait = if delta { wait_ms } else { WHOLE_LIST_WAIT_MS };
        let answer = tokio::select! {
            answer = client.agents(listing.version, wait, delta) => answer,
            // An envelope named an origin not listed yet: the list now, not at the
            // end of the wait.
            () = known.refresh_wanted() => client.agents(None, 0, false).await,
        };
        if delta
            && listing.version.is_some()
            && matches!(answer, Err(ProxyError::Status(status)) if status == awc::http::StatusCode::BAD_REQUEST)
        {
            tracing::warn!(
                "the proxy does not answer the placement's changes (it is older than this agent); following whole lists"
            );
            delta = false;
            continue;
        }
        match answer {
            Ok(list) => {
                failures = 0;
                backoff.reset();
                match listing.apply(list) {
                    Ok(changed) => {
                        // Every answer, so that the agents listed stay known.
                        known.listed(listing.agents.keys().map(String::as_str));
                        if changed {
                            router.set_all_remote_instances(listing.holders(router.me()));
                        }
                    }
                    Err(stale) => {
                        tracing::debug!(error = %stale, "asking for the whole placement");
                        listing.version = None;
                    }
                }
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::debug!(error = %error_chain(&error), "cannot follow where instances are; keeping the last view");
                }
                backoff.pause().await;
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

/// How long the heartbeat loop waits after the router's table changed before it looks
/// at the local instances: a burst of attaches within it makes one heartbeat, and a
/// change reaches the proxy at most this much later.
const SETTLE: Duration = Duration::from_millis(10);

/// This agent's instances now, sorted by worker so that two lists compare.
fn local_instances(router: &Router) -> Vec<InstanceCount> {
    let mut instances: Vec<InstanceCount> = router
        .local_counts()
        .into_iter()
        .map(|(worker, count)| InstanceCount {
            worker,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        })
        .collect();
    instances.sort_by(|a, b| a.worker.cmp(&b.worker));
    instances
}

/// Tells the proxy this agent's instances, their counters and the router's routing
/// counters (one request): every `every`, and at once when the instances change, so the
/// other agents learn of an attach or a detach through the placement feed without
/// waiting for the period. Ends when the agent starts draining, with the farewell: no
/// instances, `leaving` — other agents stop handing it lines at once, and the proxy
/// forgets it rather than raising an `agent_silent` alarm. One loop sends every heartbeat, so the proxy never gets an
/// older one after a newer one, nor any after the farewell.
pub async fn heartbeat(
    router: Router,
    registry: Option<Arc<Registry>>,
    client: ProxyClient,
    every: Duration,
    mut draining: Flag,
) {
    let mut period = tokio::time::interval(every);
    let mut changes = router.watch_changes();
    // The instances of the last heartbeat tried: one that failed is tried again at the
    // next period, not at every change, so a proxy that is down is not hammered.
    let mut told: Option<Vec<InstanceCount>> = None;
    loop {
        let instances = tokio::select! {
            biased;
            () = draining.raised() => break,
            _ = period.tick() => local_instances(&router),
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                tokio::time::sleep(SETTLE).await;
                changes.borrow_and_update();
                let instances = local_instances(&router);
                if told.as_ref() == Some(&instances) {
                    continue;
                }
                instances
            }
        };
        let heartbeat = Heartbeat {
            agent: router.me().to_owned(),
            instances,
            stats: registry
                .as_deref()
                .map(Registry::reports)
                .unwrap_or_default(),
            routing: stats::routing_report(router.route_counts()),
            leaving: false,
        };
        if let Err(error) = client.heartbeat(&heartbeat).await {
            tracing::debug!(error = %error_chain(&error), "heartbeat failed");
        }
        told = Some(heartbeat.instances);
    }
    let farewell = Heartbeat {
        agent: router.me().to_owned(),
        instances: Vec::new(),
        stats: Vec::new(),
        routing: BTreeMap::new(),
        leaving: true,
    };
    if let Err(error) = client.heartbeat(&farewell).await {
        tracing::warn!(error = %error_chain(&error), "could not tell the proxy this agent stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_wire::rest::AgentEntry;

    fn entry(agent: &str, worker: &str, count: u32) -> AgentEntry {
        AgentEntry {
            agent: agent.to_owned(),
            instances: vec![InstanceCount {
                worker: worker.to_owned(),
                count,
            }],
            first_seen_ms: 0,
            last_seen_ms: 0,
            age_ms: 0,
        }
    }

    fn list(version: i64, since: Option<i64>, agents: Vec<AgentEntry>, gone: &[&str]) -> AgentList {
        AgentList {
            version,
            ttl_ms: 10_000,
            agents,
            since,
            gone: gone.iter().map(|agent| (*agent).to_owned()).collect(),
        }
    }

    #[test]
    fn changes_apply_to_the_version_they_were_made_from_and_a_whole_list_replaces_all() {
        let mut listing = Listing::default();
        let whole = list(
            3,
            None,
            vec![
                entry("h:1", "add", 1),
                entry("h:2", "add", 1),
                entry("me:1", "add", 1),
            ],
            &[],
        );
        assert_eq!(listing.apply(whole), Ok(true));

        let changes = list(5, Some(3), vec![entry("h:2", "square", 2)], &["h:1"]);
        assert_eq!(listing.apply(changes), Ok(true));
        assert_eq!(listing.version, Some(5));
        assert_eq!(listing.agents.keys().collect::<Vec<_>>(), ["h:2", "me:1"]);
        let holders = listing.holders("me:1");
        assert_eq!(
            holders.get("square").map(Vec::as_slice),
            Some(&["h:2".to_owned()][..])
        );
        assert_eq!(
            holders.get("add"),
            None,
            "only other agents hold instances for me"
        );

        assert_eq!(
            listing.apply(list(5, Some(5), vec![], &[])),
            Ok(false),
            "nothing new"
        );
        let stale = list(9, Some(7), vec![entry("h:9", "add", 1)], &[]);
        assert_eq!(
            listing.apply(stale),
            Err(StaleChanges {
                held: Some(5),
                since: 7
            })
        );
        assert_eq!(
            listing.version,
            Some(5),
            "changes from another version change nothing"
        );
        assert_eq!(listing.agents.len(), 2);

        assert_eq!(
            listing.apply(list(9, None, vec![entry("h:9", "add", 1)], &[])),
            Ok(true)
        );
        assert_eq!(listing.agents.keys().collect::<Vec<_>>(), ["h:9"]);
    }

    #[actix_rt::test]
    async fn a_proxy_that_refuses_delta_is_followed_by_whole_lists() {
        // A proxy from before the changes feed: `delta` is an unknown parameter (400);
        // a wait past version 1 answers version 2, with a second agent.
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().route(
                "/agents",
                actix_web::web::get().to(|request: actix_web::HttpRequest| async move {
                    let query = request.query_string().to_owned();
                    let (version, agents) = if query.contains("delta") {
                        return actix_web::HttpResponse::BadRequest().finish();
                    } else if query.contains("after=1") {
                        (2, ["10.0.0.2:7701", "10.0.0.3:7701"].as_slice())
                    } else {
                        (1, ["10.0.0.2:7701"].as_slice())
                    };
                    actix_web::HttpResponse::Ok().json(list(
                        version,
                        None,
                        agents.iter().map(|agent| entry(agent, "add", 1)).collect(),
                        &[],
                    ))
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let address = server.addrs()[0];
        let server = server.run();
        let stop = server.handle();
        actix_rt::spawn(server);
        let known = Arc::new(KnownAgents::new("10.0.0.1:7701"));
        let follower = actix_rt::spawn(follow_placement(
            Router::unloaded("10.0.0.1:7701", None),
            ProxyClient::new(&address.to_string(), None, Duration::from_secs(5), None),
            25_000,
            known.clone(),
        ));

        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !known.knows("10.0.0.3:7701") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second agent was never learned"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        follower.abort();
        stop.stop(false).await;
    }
}
