//! The crate used exactly as a user's integration test uses it: a mesh in containers,
//! the test's own worker attached in-process, lines called through the agents.

use std::time::Duration;

use damrey_actors::prelude::*;
use damrey_testcontainers::{Mesh, docker_or_skip};

/// The user's worker: squares its argument.
struct Square;
impl Actor for Square {
    type Context = Context<Self>;
}
impl Handler<Message> for Square {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        let n: i64 = msg.args[0].parse().unwrap();
        Message::response(msg.kind, [(n * n).to_string()])
    }
}

/// The user's other worker: sums its arguments, and the line goes on to `square`.
struct Add;
impl Actor for Add {
    type Context = Context<Self>;
}
impl Handler<Message> for Add {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        let sum: i64 = msg.args.iter().map(|a| a.parse::<i64>().unwrap()).sum();
        Message::response(msg.kind, [sum.to_string()])
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

#[actix::test]
async fn an_in_process_worker_answers_a_line_called_through_its_agent() {
    if !docker_or_skip("an_in_process_worker_answers_a_line_called_through_its_agent") {
        return;
    }
    let mesh = Mesh::builder()
        .config(WorkerSpec::new("square").command("sq", ""))
        .start()
        .await
        .unwrap();
    let square = Worker::new(Config::named("square"))
        .agent(mesh.agent(0))
        .start(|| Square)
        .await
        .unwrap();

    let reply = mesh
        .call(0, "square", Message::request("sq", ["7"]), DEADLINE)
        .await;

    assert_eq!(reply.unwrap(), Message::response("sq", ["49"]));
    let unknown = mesh
        .call(0, "square", Message::request("cube", ["7"]), DEADLINE)
        .await;
    assert_eq!(
        unknown.unwrap(),
        Message::error("cube", "worker square does not accept type \"cube\"")
    );
    square.stop().await;
}

#[actix::test]
async fn a_line_crosses_agents_in_their_own_containers() {
    if !docker_or_skip("a_line_crosses_agents_in_their_own_containers") {
        return;
    }
    let mesh = Mesh::builder()
        .agents(2)
        .token("s3cret")
        .configs([
            WorkerSpec::new("add").command("sqsum", "square"),
            WorkerSpec::new("square").command("sqsum", ""),
        ])
        .start()
        .await
        .unwrap();
    // `add` on agent 0 and `square` on agent 1: agent 0 hands the line to agent 1 over
    // the private network, by the name agent 1 advertises there.
    let add = Worker::new(Config::named("add"))
        .agent(mesh.agent(0))
        .token(mesh.token().map(str::to_owned))
        .start(|| Add)
        .await
        .unwrap();
    let square = Worker::new(Config::named("square"))
        .agent(mesh.agent(1))
        .token(mesh.token().map(str::to_owned))
        .start(|| Square)
        .await
        .unwrap();

    // Called through either agent, the line runs add on agent 0 and square on agent 1.
    for agent in 0..mesh.agent_count() {
        let reply = mesh
            .call(
                agent,
                "add",
                Message::request("sqsum", ["3", "4"]),
                DEADLINE,
            )
            .await;
        assert_eq!(
            reply.unwrap(),
            Message::response("sqsum", ["49"]),
            "through agent {agent}"
        );
    }
    add.stop().await;
    square.stop().await;
}
