//! An agent without configs: `/readyz`, attaches refused with 503 until it has them,
//! workers that wait for it, and the configs it keeps on disk across a restart.

use std::time::Duration;

use damrey_actors::Message;
use serde_json::json;

use crate::support::{
    Agent, CountingForwarder, Proxy, TempDir, eventually, sqsum, sqsum_mesh, sqsum_specs,
};

/// A proxy that has the sqsum configs and is down now, and an agent started after it
/// went down, so the agent never had configs.
async fn an_agent_that_never_met_its_proxy(dir: &TempDir) -> (Proxy, Agent) {
    let mut proxy = Proxy::with_workers(dir, sqsum_specs()).await;
    proxy.kill();
    let agent = Agent::start(&proxy).await;
    (proxy, agent)
}

/// Waits until the agent's cache file holds `workers` configs.
async fn wait_cached(agent: &Agent, workers: usize) {
    let path = agent.config_cache();
    eventually(
        Duration::from_secs(10),
        "the configs cached on disk",
        || {
            let cached = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
            let found = cached.is_some_and(|cached| {
                cached["workers"]
                    .as_array()
                    .is_some_and(|list| list.len() == workers)
            });
            async move { found.then_some(()) }
        },
    )
    .await;
}

#[actix_rt::test]
async fn readyz_is_503_until_the_agent_has_configs_and_200_after() {
    let dir = TempDir::new();
    let (mut proxy, agent) = an_agent_that_never_met_its_proxy(&dir).await;

    let (status, body) = agent.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert!(body["reason"].is_string(), "{body}");
    assert_eq!(agent.health().await["status"], "ok", "alive all the same");

    proxy.restart().await;
    let ready = eventually(Duration::from_secs(10), "the agent ready", || async {
        let (status, body) = agent.readyz().await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(ready, json!({"status": "ready", "configs": 2}));
}

#[actix_rt::test]
async fn an_agent_without_configs_refuses_attaches_with_503_not_404() {
    let dir = TempDir::new();
    let (_proxy, agent) = an_agent_that_never_met_its_proxy(&dir).await;

    let refusal = agent.attach_refusal("square").await;

    assert_eq!(
        refusal,
        (
            503,
            json!({"error": "the agent is not ready: it has no configs yet"})
        )
    );
}

#[actix_rt::test]
async fn a_worker_started_against_an_agent_without_configs_attaches_once_the_proxy_is_up() {
    let dir = TempDir::new();
    let (mut proxy, agent) = an_agent_that_never_met_its_proxy(&dir).await;
    // Counting connections tells that the worker was refused and tried again.
    let forwarder = CountingForwarder::start(&agent.address).await;
    let mut square = agent.worker_through(&forwarder.address, "square", "square");

    eventually(Duration::from_secs(10), "a second attach attempt", || {
        let tried = forwarder.connections() >= 2;
        async move { tried.then_some(()) }
    })
    .await;
    assert!(
        square.is_running(),
        "the worker gave up on a not-ready agent"
    );
    proxy.restart().await;

    agent.wait_instances(1).await;
    assert_eq!(
        agent
            .call("square", &Message::request("sqsum", ["5"]), 2_000)
            .await,
        (200, Message::response("sqsum", ["25"]))
    );
}

#[actix_rt::test]
async fn an_agent_restarted_while_the_proxy_is_down_routes_from_its_cached_configs() {
    let dir = TempDir::new();
    let (mut proxy, mut agent, _workers) = sqsum_mesh(&dir).await;
    assert_eq!(
        agent.call("add", &sqsum(3, 4), 2_000).await,
        (200, Message::response("sqsum", ["49"]))
    );
    wait_cached(&agent, 2).await;

    proxy.kill();
    agent.restart().await;

    assert_eq!(agent.readyz().await.0, 200);
    agent.wait_instances(2).await;
    assert_eq!(
        agent.call("add", &sqsum(1, 2), 2_000).await,
        (200, Message::response("sqsum", ["9"]))
    );
}

#[actix_rt::test]
async fn a_corrupt_config_cache_is_ignored_and_replaced_once_the_proxy_answers() {
    let dir = TempDir::new();
    let (mut proxy, mut agent, _workers) = sqsum_mesh(&dir).await;
    wait_cached(&agent, 2).await;
    proxy.kill();
    agent.process.kill();
    std::fs::write(
        agent.config_cache(),
        b"{\"version\": 3, \"workers\": [{\"na",
    )
    .unwrap();

    agent.restart().await;

    assert_eq!(agent.health().await["status"], "ok");
    assert_eq!(agent.readyz().await.0, 503);
    proxy.restart().await;
    wait_cached(&agent, 2).await;
    assert_eq!(agent.readyz().await.0, 200);
}

#[actix_rt::test]
async fn an_agent_without_configs_never_calls_a_worker_unconfigured_and_routes_once_it_has_them() {
    let dir = TempDir::new();
    let (mut proxy, agent) = an_agent_that_never_met_its_proxy(&dir).await;

    // Nothing is known: the call waits for configs until its deadline.
    let (status, reply) = agent.call("add", &sqsum(3, 4), 500).await;
    assert_eq!((status, reply), (504, Message::timeout()));

    // A call already waiting when the configs arrive is routed by them.
    let waiting = actix_rt::spawn({
        let agent = agent.handle();
        async move { agent.call("add", &sqsum(3, 4), 20_000).await }
    });
    proxy.restart().await;
    let _workers = [agent.worker("add", "add"), agent.worker("square", "square")];
    assert_eq!(
        waiting.await.unwrap(),
        (200, Message::response("sqsum", ["49"]))
    );
}

#[actix_rt::test]
async fn a_worker_configured_after_the_cache_was_written_waits_for_the_proxy_instead_of_being_refused()
 {
    let dir = TempDir::new();
    let (mut proxy, mut agent, _workers) = sqsum_mesh(&dir).await;
    wait_cached(&agent, 2).await;
    agent.process.kill();
    // Configured while the agent is down: its cache does not know this worker.
    proxy
        .add(json!({"name": "twice", "commands": [{"name": "sqsum", "worker": "square"}]}))
        .await;
    proxy.kill();
    agent.restart().await;

    let call = actix_rt::spawn({
        let agent = agent.handle();
        async move { agent.call("twice", &sqsum(3, 4), 20_000).await }
    });
    let _twice = agent.worker("add", "twice");
    proxy.restart().await;

    assert_eq!(
        call.await.unwrap(),
        (200, Message::response("sqsum", ["49"]))
    );
}
