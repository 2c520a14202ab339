//! The agent's counting, read back from `GET /metrics`.

use damrey_actors::Message;

use crate::support::{Agent, Proxy, TempDir, client, sqsum, sqsum_specs};

/// The sum over instances of `worker` of the sample `name` in Prometheus text.
fn sample(text: &str, name: &str, worker: &str) -> u64 {
    let prefix = format!("{name}{{worker=\"{worker}\",");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| {
            let value = line.rsplit(' ').next().expect("a value");
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("not a count: {line}"))
        })
        .sum()
}

#[actix_rt::test]
async fn the_counters_equal_a_known_load_exactly() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, sqsum_specs()).await;
    let agent = Agent::ready(&proxy).await;
    let _add = agent.worker("add", "add");
    let _square = agent.worker("square", "square");
    agent.wait_instances(2).await;

    for i in 0..20 {
        let (status, _) = agent.call("add", &sqsum(i, 1), 2_000).await;
        assert_eq!(status, 200);
    }
    for _ in 0..3 {
        let bad = Message::request("sqsum", ["1", "x"]);
        assert_eq!(agent.call("add", &bad, 2_000).await.0, 422);
    }
    let mut response = client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .expect("the agent answers");
    let content_type = response.headers().get("content-type").cloned();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();

    assert!(content_type.is_some_and(|value| {
        value
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    }));
    let count = |name, worker| sample(&text, name, worker);
    assert_eq!(count("damrey_steps_received_total", "add"), 23, "{text}");
    assert_eq!(count("damrey_steps_processed_total", "add"), 23);
    assert_eq!(count("damrey_steps_responses_total", "add"), 20);
    assert_eq!(count("damrey_steps_errors_total", "add"), 3);
    assert_eq!(count("damrey_steps_timeouts_total", "add"), 0);
    assert_eq!(count("damrey_steps_received_total", "square"), 20);
    assert_eq!(count("damrey_steps_responses_total", "square"), 20);
    assert_eq!(count("damrey_steps_in_flight", "add"), 0);
    assert_eq!(count("damrey_step_duration_seconds_count", "add"), 23);
    assert_eq!(count("damrey_step_duration_seconds_count", "square"), 20);
}
