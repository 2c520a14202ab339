//! Credentials against a real agent over raw sockets: refused before any body is read
//! or any upgrade is handled, so requests without a token cost the agent nothing.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Agent, AgentOptions, Proxy, TempDir, join_all};

/// The body size the `/call` limit allows (1 MiB).
const MIB: usize = 1 << 20;

/// How long a test waits for an answer the agent should give once the headers are in:
/// a bound on "never answered", not a speed.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

async fn agent_with_token(dir: &TempDir) -> (Proxy, Agent) {
    let proxy = Proxy::start_with_token(dir, "s3cret").await;
    let agent = Agent::start_with(
        &proxy,
        AgentOptions {
            token: Some("s3cret".to_owned()),
            ..AgentOptions::default()
        },
    )
    .await;
    (proxy, agent)
}

/// Sends `head` (the request line and headers, without the blank line) and the first
/// `sent` bytes of a body; then, holding the rest back, reads the answer: its status and
/// JSON body.
async fn answer_to_a_held_body(address: &str, head: &str, sent: usize) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).await.expect("agent listens");
    stream
        .write_all(format!("{head}\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .expect("headers written");
    if sent > 0 {
        // The agent may answer and stop reading before all of it is in.
        let _ = stream.write_all(&vec![b'x'; sent]).await;
    }
    let answer = tokio::time::timeout(ANSWER_WAIT, read_answer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("no answer within {ANSWER_WAIT:?} to {head:?}"));
    drop(stream);
    answer
}

/// Reads one HTTP/1.1 answer with a `content-length`: its status and JSON body.
async fn read_answer(stream: &mut TcpStream) -> (u16, Value) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().expect("a length"));
            if received.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("a status");
                let body = serde_json::from_slice(&received[end + 4..end + 4 + length])
                    .unwrap_or_else(|e| {
                        panic!("{e}: {}", String::from_utf8_lossy(&received[end + 4..]))
                    });
                return (status, body);
            }
        }
        let read = stream
            .read(&mut chunk)
            .await
            .expect("the answer is readable");
        assert!(
            read > 0,
            "connection closed before a whole answer: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..read]);
    }
}

/// The agent's resident memory in KiB (`VmRSS` in `/proc/PID/status`).
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn unauthorized() -> Value {
    serde_json::json!({"error": "missing or wrong bearer token; send Authorization: Bearer <token>"})
}

#[actix_rt::test]
async fn a_tokenless_call_holding_back_most_of_a_large_body_gets_401_at_once() {
    let dir = TempDir::new();
    let (_proxy, agent) = agent_with_token(&dir).await;
    let head = format!(
        "POST /call/add HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {MIB}"
    );

    for sent in [0, 64 * 1024] {
        let answer = answer_to_a_held_body(&agent.address, &head, sent).await;
        assert_eq!(answer, (401, unauthorized()), "after {sent} body bytes");
    }
}

#[actix_rt::test]
async fn a_tokenless_call_asking_for_a_websocket_upgrade_gets_401_at_once() {
    let dir = TempDir::new();
    let (_proxy, agent) = agent_with_token(&dir).await;
    let upgrade = "connection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
                   sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==";

    for path in ["POST /call/add", "GET /attach/add", "GET /peer"] {
        let head = format!("{path} HTTP/1.1\r\n{upgrade}");
        let answer = answer_to_a_held_body(&agent.address, &head, 0).await;
        assert_eq!(answer, (401, unauthorized()), "{path}");
    }
}

#[actix_rt::test]
async fn many_tokenless_large_bodies_leave_the_agents_memory_flat() {
    let dir = TempDir::new();
    let (_proxy, agent) = agent_with_token(&dir).await;
    let before = resident_kib(agent.process.pid());
    let head = format!(
        "POST /call/add HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {MIB}"
    );

    let answers = join_all((0..200).map(|_| {
        let (address, head) = (agent.address.clone(), head.clone());
        async move { answer_to_a_held_body(&address, &head, MIB - 1).await }
    }))
    .await;

    assert!(
        answers
            .iter()
            .all(|answer| *answer == (401, unauthorized()))
    );
    let after = resident_kib(agent.process.pid());
    // Buffering those bodies would take 200 MiB; a generous bound far below that.
    assert!(
        after < before + 48 * 1024,
        "resident memory went from {before} KiB to {after} KiB"
    );
}

#[actix_rt::test]
async fn the_bearer_scheme_is_taken_in_any_case() {
    let dir = TempDir::new();
    let (_proxy, agent) = agent_with_token(&dir).await;

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = crate::support::client()
            .get(format!("http://{}/stats", agent.address))
            .insert_header(("authorization", format!("{scheme} s3cret")))
            .send()
            .await
            .expect("agent answers");
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
}
