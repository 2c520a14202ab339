//! A worker process made with `damrey_actors::process::run` (the example's `square`), run
//! as a user runs it: flags and environment, what it says and its exit code when it
//! cannot attach, and a clean exit on SIGTERM. The proxy and agent it talks to are
//! started in this test from their libraries.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use damrey_actors::WorkerSpec;
use in_process::agent_with;

mod in_process;

const SQUARE: &str = env!("CARGO_BIN_EXE_square");

/// Runs `square ARGS` to its end (it is expected to fail at once).
async fn square(args: &[&str], agent: Option<&str>) -> Output {
    let mut command = Command::new(SQUARE);
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
    let agent = agent_with(&[]).await;

    // The agent's address from the environment, as docker-compose would pass it.
    let output = square(&[], Some(&agent)).await;

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
    let agent = agent_with(&[WorkerSpec::new("square").command("sqsum", "")]).await;
    let mut child: Child = Command::new(SQUARE)
        .args(["--agent", &agent])
        .env_remove("DAMREY_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once the agent routes to it.
    let call = format!("http://{agent}/call/square");
    let client = awc::Client::default();
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        let mut answer = client
            .post(&call)
            .send_body(r#"["REQUEST","sqsum","7"]"#)
            .await
            .unwrap();
        if answer.status().is_success() {
            assert_eq!(answer.body().await.unwrap(), r#"["RESPONSE","sqsum","49"]"#);
            break;
        }
        assert!(Instant::now() < give_up, "square never attached");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = actix_web::rt::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();

    assert_eq!(status.code(), Some(0));
}
