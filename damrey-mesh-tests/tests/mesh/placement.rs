//! Where instances are: an instance attaching to one agent is pushed to the others
//! through the proxy, not found at their next periodic heartbeat.

use std::time::Instant;

use damrey_actors::Message;
use serde_json::json;

use crate::support::{Agent, AgentOptions, PATIENCE, Proxy, TempDir, eventually};

/// How many instances attach one after the other; each is timed.
const ROUNDS: usize = 5;

#[actix_rt::test]
async fn an_instance_attaching_to_one_agent_is_soon_routable_from_another() {
    let dir = TempDir::new();
    // Agents stay listed between their minute-apart periodic heartbeats.
    let proxy = Proxy::start_with_env(&dir, &[("DAMREY_AGENT_TTL_MS", "600000")]).await;
    for round in 0..ROUNDS {
        proxy
            .add(json!({"name": format!("nap{round}"), "commands": [{"name": "nap"}]}))
            .await;
    }
    // A periodic heartbeat a minute apart: only a push tells agent one in time.
    let options = AgentOptions {
        heartbeat_ms: Some(60_000),
        ..AgentOptions::default()
    };
    let one = Agent::ready_with(&proxy, options.clone()).await;
    let two = Agent::ready_with(&proxy, options).await;

    let mut workers = Vec::new();
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        let name = format!("nap{round}");
        workers.push(two.worker("nap", &name));
        let attached = eventually(PATIENCE, "the instance attached", || async {
            let instances = two.health().await["instances"].as_u64();
            (instances == Some(round as u64 + 1)).then(Instant::now)
        })
        .await;
        let call = Message::request("nap", ["0", &round.to_string()]);
        let reply = eventually(
            PATIENCE,
            "agent one routing to the new instance",
            || async {
                let (status, reply) = one.call(&name, &call, 2_000).await;
                (status == 200).then_some(reply)
            },
        )
        .await;
        took.push(attached.elapsed());
        assert_eq!(reply, Message::response("nap", ["0", &round.to_string()]));
    }

    took.sort();
    println!(
        "attach on agent two to routable from agent one: median {:?} of {took:?}",
        took[ROUNDS / 2]
    );
}
