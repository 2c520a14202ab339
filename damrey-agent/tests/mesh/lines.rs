//! Lines through worker processes: on one agent, across agents, and the answers to bad
//! requests.

use std::time::Duration;

use damrey_actors::Message;

use crate::support::{Agent, Proxy, TempDir, sqsum, sqsum_specs};

#[actix_rt::test]
async fn a_line_of_worker_processes_on_one_agent_answers_the_square_of_the_sum() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    for spec in sqsum_specs() {
        proxy.add(spec).await;
    }
    let agent = Agent::start(&proxy).await;
    agent.wait_configs(2).await;
    let _add = agent.worker("add", "add");
    let _square = agent.worker("square", "square");
    agent.wait_instances(2).await;

    let (status, reply) = agent.call("add", &sqsum(3, 4), 2_000).await;

    assert_eq!((status, reply), (200, Message::response("sqsum", ["49"])));
}

#[actix_rt::test]
async fn a_line_crossing_agents_answers_at_the_origin() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    for spec in sqsum_specs() {
        proxy.add(spec).await;
    }
    let (one, two) = (Agent::start(&proxy).await, Agent::start(&proxy).await);
    one.wait_configs(2).await;
    two.wait_configs(2).await;
    let _add = one.worker("add", "add");
    let _square = two.worker("square", "square");
    one.wait_instances(1).await;
    two.wait_instances(1).await;

    // Agent one learns where square lives from the proxy's agent list (heartbeats).
    let mut answer = (0, Message::timeout());
    for _ in 0..50 {
        answer = one.call("add", &sqsum(5, 6), 2_000).await;
        if answer.0 == 200 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(answer, (200, Message::response("sqsum", ["121"])));
    let (status, reply) = two.call("add", &sqsum(1, 2), 2_000).await;
    assert_eq!((status, reply), (200, Message::response("sqsum", ["9"])));
}

#[actix_rt::test]
async fn bad_requests_get_their_own_clear_answers_at_once() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    for spec in sqsum_specs() {
        proxy.add(spec).await;
    }
    let agent = Agent::start(&proxy).await;
    agent.wait_configs(2).await;
    let _add = agent.worker("add", "add");
    agent.wait_instances(1).await;

    let (status, reply) = agent.call("nobody", &sqsum(1, 2), 10_000).await;
    assert_eq!(
        (status, reply),
        (
            422,
            Message::error("sqsum", "no worker named \"nobody\" is configured")
        )
    );

    let (status, reply) = agent
        .call("add", &Message::request("cube", ["2"]), 10_000)
        .await;
    assert_eq!(
        (status, reply),
        (
            422,
            Message::error("cube", "worker add does not accept type \"cube\"")
        )
    );

    let (status, reply) = agent.call("square", &sqsum(1, 2), 10_000).await;
    assert_eq!(
        (status, reply),
        (
            422,
            Message::error("sqsum", "worker square has no live instance")
        )
    );

    let (status, body) = agent
        .call_raw("add", r#"["HELLO"]"#.to_owned(), 1_000)
        .await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("unknown tag `HELLO`"), "{body}");

    let (status, reply) = agent
        .call("add", &Message::request("sqsum", ["1", "x"]), 1_000)
        .await;
    assert_eq!(
        (status, reply),
        (422, Message::error("sqsum", "\"x\" is not an integer"))
    );
}
