//! A worker process made with `damrey_actors::process::run` (the example's `square`), run
//! as a user runs it: flags and environment, what it says and its exit code when it
//! cannot attach, and a clean exit on SIGTERM. The proxy and agent it talks to are
//! processes too.

use std::process::{Command, Output};

use damrey_mesh_tests::binaries::binary;
use damrey_mesh_tests::mesh::{Agent, Proxy};
use damrey_mesh_tests::process::{Process, TempDir};
use damrey_mesh_tests::wait::{PATIENCE, eventually};
use serde_json::json;

/// A proxy storing `specs` and an agent that has them, once the agent is ready.
async fn agent_with(dir: &TempDir, specs: Vec<serde_json::Value>) -> (Proxy, Agent) {
    let proxy = Proxy::with_workers(dir, specs).await;
    let agent = Agent::ready(&proxy).await;
    eventually(PATIENCE, "the agent ready", || async {
        (agent.readyz().await.0 == 200).then_some(())
    })
    .await;
    (proxy, agent)
}

/// Runs `square ARGS` to its end (it is expected to fail at once).
async fn square(args: &[&str], agent: Option<&str>) -> Output {
    let mut command = Command::new(binary("square"));
    command.args(args).env_remove("DAMREY_TOKEN");
    match agent {
        Some(agent) => command.env("DAMREY_AGENT", agent),
        None => command.env_remove("DAMREY_AGENT"),
    };
    actix_web::rt::task::spawn_blocking(move || command.output().expect("square runs"))
        .await
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[actix_web::test]
async fn a_worker_with_no_agent_at_its_address_says_so_and_exits_4() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();

    let output = square(&["--agent", &closed], None).await;

    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("no agent answers at {closed}")),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("\x1b["), "no colours in a pipe");
}

#[actix_web::test]
async fn a_worker_the_agent_has_no_config_for_is_told_to_register_it_and_exits_3() {
    let dir = TempDir::new();
    let (_proxy, agent) = agent_with(&dir, Vec::new()).await;

    // The agent's address from the environment, as docker-compose would pass it.
    let output = square(&[], Some(&agent.address)).await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("register it with the proxy"),
        "{}",
        stderr(&output)
    );
}

#[actix_web::test]
async fn bad_flags_exit_2_with_usage() {
    let output = square(&["--retries", "many"], None).await;

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--retries"), "{}", stderr(&output));
}

#[actix_web::test]
async fn sigterm_makes_an_attached_worker_leave_and_exit_0() {
    let dir = TempDir::new();
    let square_spec = json!({"name": "square", "commands": [{"name": "sqsum", "worker": ""}]});
    let (_proxy, agent) = agent_with(&dir, vec![square_spec]).await;
    let mut command = Command::new(binary("square"));
    command
        .args(["--agent", &agent.address])
        .env_remove("DAMREY_TOKEN");
    let mut square = Process::spawn("square", &mut command);
    // Attached once the agent routes to it.
    let call = format!("http://{}/call/square", agent.address);
    let client = awc::Client::default();
    eventually(PATIENCE, "square attached", || async {
        let mut answer = client
            .post(&call)
            .send_body(r#"["REQUEST","sqsum","7"]"#)
            .await
            .unwrap();
        if !answer.status().is_success() {
            return None;
        }
        assert_eq!(answer.body().await.unwrap(), r#"["RESPONSE","sqsum","49"]"#);
        Some(())
    })
    .await;

    square.signal("TERM");

    assert_eq!(square.wait_exit().await, Some(0));
}
