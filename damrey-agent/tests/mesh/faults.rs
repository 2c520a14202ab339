//! Faults: worker processes killed mid-stream.

use std::time::Duration;

use damrey_actors::{Message, Tag};
use serde_json::json;

use crate::support::{Agent, AgentAddress, Proxy, TempDir, join_all};

#[actix_rt::test]
async fn a_worker_killed_mid_stream_has_its_steps_retried_on_the_other_instance() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    proxy
        .add(json!({"name": "nap", "commands": [{"name": "nap"}]}))
        .await;
    let agent = Agent::start(&proxy).await;
    agent.wait_configs(1).await;
    let mut doomed = agent.worker("nap", "nap");
    let _survivor = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    let calls = actix_rt::spawn({
        let address = agent.address.clone();
        async move {
            let agent = AgentAddress(address);
            join_all((0..40).map(move |i| {
                let agent = agent.clone();
                async move {
                    agent
                        .call(
                            "nap",
                            &Message::request("nap", ["300", &i.to_string()]),
                            10_000,
                        )
                        .await
                }
            }))
            .await
        }
    });
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    doomed.kill();
    let replies = calls.await.unwrap();

    assert_eq!(replies.len(), 40);
    for (i, (status, reply)) in replies.into_iter().enumerate() {
        assert_eq!(reply.tag, Tag::Response, "request {i}: {status} {reply}");
        assert_eq!(reply.args, ["300".to_owned(), i.to_string()]);
    }
    agent.wait_instances(1).await;
}
