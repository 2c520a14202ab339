//! Stopping on SIGTERM: a worker process finishes and delivers the step it is
//! processing; an agent refuses new work, drains its lines for `drain_ms`, answers what
//! is left `STOP`, and exits.

use std::time::{Duration, Instant};

use damrey_actors::Message;
use serde_json::json;

use crate::support::{Agent, Proxy, TempDir, client};

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
        let started = Instant::now();
        let call = actix_rt::spawn({
            let agent = agent.handle();
            let tag = round.to_string();
            async move { agent.call("nap", &nap(1_000, &tag), 10_000).await }
        });
        agent.wait_in_flight(1).await;
        // Well into the step: the worker has it, whatever the machine's load.
        let into_step = Duration::from_millis(300);
        actix_rt::time::sleep(into_step.saturating_sub(started.elapsed())).await;

        worker.signal("TERM");

        assert_eq!(
            call.await.unwrap(),
            (200, Message::response("nap", ["1000", &round.to_string()])),
            "round {round}"
        );
        assert_eq!(worker.wait_exit(), Some(0), "round {round}");
        agent.wait_instances(0).await;
    }
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
