//! Credentials against a real agent over raw sockets: refused before any body is read
//! or any upgrade is handled, so requests without a token cost the agent nothing; and
//! envelopes whose origin is no agent the proxy lists, never dialled.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_http::ws;
use damrey_actors::{Envelope, Message};
use damrey_wire::peer::PeerFrame;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::support::{
    Agent, AgentOptions, Proxy, TempDir, eventually, join_all, sqsum, sqsum_mesh,
};

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
    println!(
        "agent resident memory: {before} KiB before 200 token-less 1 MiB bodies, {after} KiB after"
    );
    // Buffering those bodies would take 200 MiB (before the fix: +285 MB); a generous
    // bound well below that (measured: +29 MB, the connections' own buffers).
    assert!(
        after < before + 100 * 1024,
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

#[actix_rt::test]
async fn an_envelope_whose_origin_is_no_listed_agent_is_refused_and_its_origin_never_dialled() {
    let dir = TempDir::new();
    let (_proxy, agent, _workers) = sqsum_mesh(&dir).await;
    // Stands where the injected origin points, counting who connects.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lure = listener.local_addr().unwrap().to_string();
    let dialled = Arc::new(AtomicUsize::new(0));
    let accepting = actix_rt::spawn({
        let dialled = dialled.clone();
        async move {
            while let Ok((_socket, _)) = listener.accept().await {
                dialled.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let (_, mut link) = awc::Client::new()
        .ws(format!("ws://{}/peer", agent.address))
        .connect()
        .await
        .expect("the agent takes peer links");
    let envelope = Envelope {
        id: Uuid::new_v4(),
        leg: 1,
        to: "add".to_owned(),
        origin: lure.clone(),
        remaining_ms: 5_000,
        hops: 0,
        message: sqsum(3, 4),
    };
    for seq in [1, 2] {
        let frame = PeerFrame::Forward {
            seq,
            envelope: envelope.clone(),
        };
        link.send(ws::Message::Text(
            serde_json::to_string(&frame).unwrap().into(),
        ))
        .await
        .unwrap();
    }

    eventually(ANSWER_WAIT, "both envelopes refused", || async {
        (refused_origins(&agent).await >= 2).then_some(())
    })
    .await;
    // The line never ran, so no reply can ever go to its origin: the agent still
    // works, and its one counted step is this call's.
    assert_eq!(
        agent.call("add", &sqsum(1, 2), 2_000).await,
        (200, Message::response("sqsum", ["9"]))
    );
    assert_eq!(
        agent.stats_sum("received").await,
        2,
        "add's and square's step"
    );
    assert_eq!(dialled.load(Ordering::SeqCst), 0, "the origin was dialled");
    let unacknowledged = actix_rt::time::timeout(Duration::from_millis(200), link.next()).await;
    assert!(
        unacknowledged.is_err(),
        "no ack for a refused envelope: {unacknowledged:?}"
    );
    accepting.abort();
}

/// `damrey_peer_origins_refused_total` in the agent's `/metrics`.
async fn refused_origins(agent: &Agent) -> u64 {
    let metrics = crate::support::client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .expect("agent answers")
        .body()
        .await
        .expect("a body");
    String::from_utf8_lossy(&metrics)
        .lines()
        .find_map(|line| line.strip_prefix("damrey_peer_origins_refused_total "))
        .map_or(0, |value| value.parse().expect("a count"))
}

/// Every role's token, as each process of a mesh with separate credentials holds them.
const ROLES: [(&str, &str); 4] = [
    ("DAMREY_ADMIN_TOKEN", "adm"),
    ("DAMREY_AGENT_TOKEN", "agt"),
    ("DAMREY_WORKER_TOKEN", "wrk"),
    ("DAMREY_READ_TOKEN", "rd"),
];

/// The status of `method path` at `address` with `token`.
async fn status_with(address: &str, method: &str, path: &str, token: &str) -> u16 {
    let request = crate::support::client()
        .request(
            method.parse().expect("a method"),
            format!("http://{address}{path}"),
        )
        .bearer_auth(token);
    let response = if method == "POST" {
        request.send_body(sqsum(1, 2).to_json()).await
    } else {
        request.send().await
    };
    response.expect("answers").status().as_u16()
}

#[actix_rt::test]
async fn with_separate_role_credentials_a_line_crosses_agents_and_each_role_opens_only_its_endpoints()
 {
    let dir = TempDir::new();
    let proxy = Proxy::start_with_roles(&dir, &ROLES[..], "adm").await;
    for spec in crate::support::sqsum_specs() {
        proxy.add(spec).await;
    }
    let options = AgentOptions {
        env: ROLES
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ..AgentOptions::default()
    };
    let one = Agent::ready_with(&proxy, options.clone()).await;
    let two = Agent::ready_with(&proxy, options).await;
    // A worker process attaches with the worker credential only.
    let mut impostor = one.worker_with("add", "add", Some("agt"), &[]);
    assert_ne!(
        impostor.wait_exit().await,
        Some(0),
        "an agent token attached a worker"
    );
    let _add = one.worker_with("add", "add", Some("wrk"), &[]);
    let _square = two.worker_with("square", "square", Some("wrk"), &[]);
    one.wait_instances(1).await;
    two.wait_instances(1).await;

    // The agents read configs, heartbeat and link to each other with the agent token.
    let admin = crate::support::AgentAddress {
        address: one.address.clone(),
        token: Some("adm".to_owned()),
    };
    let answer = eventually(Duration::from_secs(10), "a line across agents", || {
        let admin = admin.clone();
        async move {
            let answer = admin.call("add", &sqsum(3, 4), 2_000).await;
            (answer.0 == 200).then_some(answer.1)
        }
    })
    .await;
    assert_eq!(answer, Message::response("sqsum", ["49"]));

    let address = &one.address;
    for (method, path, token, status) in [
        ("GET", "/peer", "wrk", 403),
        ("GET", "/peer", "rd", 403),
        ("GET", "/attach/add", "agt", 403),
        ("GET", "/attach/add", "rd", 403),
        ("POST", "/call/add", "rd", 403),
        ("POST", "/call/add", "agt", 403),
        ("POST", "/call/add", "wrk", 200),
        ("GET", "/stats", "wrk", 403),
        ("GET", "/stats", "rd", 200),
    ] {
        assert_eq!(
            status_with(address, method, path, token).await,
            status,
            "{method} {path} with {token}"
        );
    }
    let proxy_address = &proxy.address;
    for (method, path, token, status) in [
        ("POST", "/worker/add", "wrk", 403),
        ("POST", "/worker/chg", "agt", 403),
        ("POST", "/agents/forget", "rd", 403),
        ("GET", "/workers/stats", "rd", 200),
        ("GET", "/alarms", "rd", 200),
    ] {
        assert_eq!(
            status_with(proxy_address, method, path, token).await,
            status,
            "proxy {method} {path} with {token}"
        );
    }
}

#[actix_rt::test]
async fn a_worker_credential_cannot_open_a_peer_link() {
    let dir = TempDir::new();
    let proxy = Proxy::start_with_roles(&dir, &ROLES[..], "adm").await;
    let agent = Agent::start_with(
        &proxy,
        AgentOptions {
            env: ROLES
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ..AgentOptions::default()
        },
    )
    .await;

    // `/%70eer` is routed to `/peer`: it must need what `/peer` needs.
    for path in ["/peer", "/%70eer"] {
        let Err(refusal) = awc::Client::new()
            .ws(format!("ws://{}{path}", agent.address))
            .bearer_auth("wrk")
            .connect()
            .await
        else {
            panic!("a worker token opened a peer link at {path}");
        };

        assert!(
            matches!(&refusal, awc::error::WsClientError::InvalidResponseStatus(status) if status.as_u16() == 403),
            "{path}: {refusal:?}"
        );
    }
}
