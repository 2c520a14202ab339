//! Stopping on SIGTERM: a worker process finishes and delivers the step it is
//! processing; an agent refuses new work, drains its lines for `drain_ms`, answers what
//! is left `STOP`, and exits.

use std::time::{Duration, Instant};

use damrey_actors::Message;
use serde_json::json;

use crate::support::{Agent, AgentOptions, PATIENCE, Proxy, TempDir, client, eventually};

/// The `nap` worker's config, one step at a time.
fn nap_spec() -> serde_json::Value {
    json!({"name": "nap", "mpu": "1", "commands": [{"name": "nap"}]})
}

fn nap(ms: u64, tag: &str) -> Message {
    Message::request("nap", [ms.to_string(), tag.to_owned()])
}

#[actix_rt::test]
async fn a_worker_stopped_mid_step_delivers_that_step_and_exits_cleanly() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;

    for round in 0..3 {
        let mut worker = agent.worker("nap", "nap");
        agent.wait_instances(1).await;
        let call = actix_rt::spawn({
            let agent = agent.handle();
            let tag = round.to_string();
            async move { agent.call("nap", &nap(1_000, &tag), 10_000).await }
        });
        // The worker has the step (a 1 s nap): the signal comes mid-step.
        agent.wait_in_flight(1).await;

        worker.signal("TERM");

        assert_eq!(
            call.await.unwrap(),
            (200, Message::response("nap", ["1000", &round.to_string()])),
            "round {round}"
        );
        assert_eq!(worker.wait_exit().await, Some(0), "round {round}");
        agent.wait_instances(0).await;
    }
}

#[actix_rt::test]
async fn an_agent_stopped_with_a_call_outlasting_the_drain_answers_it_stop_and_exits() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let options = AgentOptions {
        drain_ms: Some(500),
        ..AgentOptions::default()
    };
    let mut agent = Agent::ready_with(&proxy, options).await;
    let _worker = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let call = actix_rt::spawn({
        let agent = agent.handle();
        async move { agent.call("nap", &nap(3_000, "long"), 10_000).await }
    });
    agent.wait_in_flight(1).await;

    agent.process.signal("TERM");

    assert_eq!(call.await.unwrap(), (503, Message::stop()));
    assert_eq!(agent.process.wait_exit().await, Some(0));
}

#[actix_rt::test]
async fn an_agent_stopped_mid_call_refuses_new_work_and_lets_the_call_finish() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let mut agent = Agent::ready(&proxy).await;
    let _worker = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let call = actix_rt::spawn({
        let agent = agent.handle();
        async move { agent.call("nap", &nap(1_500, "short"), 10_000).await }
    });
    agent.wait_in_flight(1).await;

    agent.process.signal("TERM");
    // The signal is handled a moment later: a call sent before that is admitted (and
    // waits behind the nap). An attach probe sees the drain begin without side effects.
    eventually(Duration::from_secs(10), "the agent drains", || async {
        (agent.attach_refusal("nap").await.0 == 503).then_some(())
    })
    .await;

    // Draining: new calls and attaches are refused; health and metrics still answer.
    let (status, body) = refused_call(&agent).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopping")),
        "{body}"
    );
    let attach = client()
        .get(format!("http://{}/attach/nap", agent.address))
        .send()
        .await
        .expect("the draining agent answers");
    assert_eq!(attach.status().as_u16(), 503);
    assert_eq!(agent.health().await["status"], "ok");
    let metrics = client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .expect("the draining agent answers");
    assert_eq!(metrics.status().as_u16(), 200);

    assert_eq!(
        call.await.unwrap(),
        (200, Message::response("nap", ["1500", "short"]))
    );
    assert_eq!(agent.process.wait_exit().await, Some(0));
}

#[actix_rt::test]
async fn a_line_handed_to_an_agent_that_stops_gets_stop_back_at_its_origin() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let origin = Agent::ready(&proxy).await;
    let options = AgentOptions {
        drain_ms: Some(300),
        ..AgentOptions::default()
    };
    let mut holder = Agent::ready_with(&proxy, options).await;
    let _worker = holder.worker("nap", "nap");
    holder.wait_instances(1).await;
    wait_until_routed(&origin).await;
    let call = actix_rt::spawn({
        let origin = origin.handle();
        async move { origin.call("nap", &nap(3_000, "handed"), 10_000).await }
    });
    holder.wait_in_flight(1).await;

    holder.process.signal("TERM");

    assert_eq!(call.await.unwrap(), (503, Message::stop()));
    assert_eq!(holder.process.wait_exit().await, Some(0));
    assert_eq!(origin.pending().await, 0);
}

/// Calls nap through `agent` until it answers: the agent learns where instances are
/// from the proxy's agent list, refreshed every second.
async fn wait_until_routed(agent: &Agent) {
    let what = format!("{} reaches nap", agent.address);
    eventually(PATIENCE, &what, || async {
        (agent.call("nap", &nap(0, "probe"), 2_000).await.0 == 200).then_some(())
    })
    .await;
}

/// A `/call` to a draining agent: its status and JSON body.
async fn refused_call(agent: &Agent) -> (u16, serde_json::Value) {
    let mut response = client()
        .post(format!("http://{}/call/nap?timeout_ms=1000", agent.address))
        .send_body(nap(0, "late").to_json())
        .await
        .expect("the draining agent answers");
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

#[actix_rt::test]
async fn an_idle_agent_with_workers_attached_exits_cleanly() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let mut agent = Agent::ready(&proxy).await;
    let _workers = agent.start_workers(&[("nap", "nap"), ("nap", "nap")]).await;

    let signalled = Instant::now();
    agent.process.signal("TERM");

    assert_eq!(agent.process.wait_exit().await, Some(0));
    println!(
        "an idle agent with two workers attached exited {:?} after SIGTERM",
        signalled.elapsed()
    );
}

#[actix_rt::test]
async fn a_step_cut_off_by_an_agent_restart_never_answers_a_step_of_the_next_session() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let mut agent = Agent::ready(&proxy).await;
    let _worker = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    // Its caller is cut off with the agent; only the step left running matters.
    let cut_off = actix_rt::spawn({
        let address = agent.address.clone();
        async move {
            let _ = client()
                .post(format!("http://{address}/call/nap?timeout_ms=10000"))
                .send_body(nap(3_000, "old").to_json())
                .await;
        }
    });
    agent.wait_in_flight(1).await;

    agent.restart().await;
    agent.wait_instances(1).await;
    // mpu 1: this step waits for the old one, whose result comes after the reconnect.
    let reply = agent.call("nap", &nap(100, "new"), 10_000).await;

    assert_eq!(reply, (200, Message::response("nap", ["100", "new"])));
    cut_off.abort();
}

#[actix_rt::test]
async fn the_steps_a_stopping_worker_never_started_run_on_another_instance() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let mut stopping = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    // Both go to the one instance: the first runs, the second waits for its mpu slot.
    let calls: Vec<_> = ["first", "queued"]
        .into_iter()
        .map(|tag| {
            let agent = agent.handle();
            actix_rt::spawn(async move { agent.call("nap", &nap(800, tag), 10_000).await })
        })
        .collect();
    agent.wait_in_flight(2).await;
    let _other = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    stopping.signal("TERM");

    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    assert_eq!(
        replies,
        [
            (200, Message::response("nap", ["800", "first"])),
            (200, Message::response("nap", ["800", "queued"])),
        ]
    );
    assert_eq!(stopping.wait_exit().await, Some(0));
}
