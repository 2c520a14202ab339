//! TLS everywhere in a mesh of real processes: the proxy over HTTPS, agents over HTTPS
//! and WSS, worker processes attaching over WSS, and mutual TLS between agents, each
//! agent identified by the `damrey-agent://HOST:PORT` its certificate names; with a CA
//! and certificates made by the test (rcgen), or by `damrey certs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use actix_http::ws;
use damrey_actors::{Envelope, Message};
use damrey_service::tls::Identity;
use damrey_wire::peer::PeerFrame;
use futures_util::{SinkExt, StreamExt};
use uuid::Uuid;

use crate::support::{
    Authority, Process, TLS_TOKEN, TempDir, binary, eventually, https_client, sqsum, sqsum_specs,
    tls_agent, tls_proxy, tls_worker,
};

/// A proxy over HTTPS with `identity` and `add => square` configured; its address and
/// process.
async fn tls_proxy_with_sqsum(
    dir: &TempDir,
    identity: &Identity,
    client: &awc::Client,
) -> (String, Process) {
    let (proxy, process) = tls_proxy(dir, identity, client).await;
    for spec in sqsum_specs() {
        let response = client
            .post(format!("https://{proxy}/worker/add"))
            .bearer_auth(TLS_TOKEN)
            .send_json(&spec)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    (proxy, process)
}

/// A proxy over HTTPS with `add => square` configured and one agent, both with
/// certificates of `mesh`; what a test keeps while they run.
struct ProxyAndAgent {
    /// The agent's address.
    agent: String,
    _processes: [Process; 2],
    _state: TempDir,
}

async fn proxy_and_agent(dir: &TempDir, mesh: &Authority) -> ProxyAndAgent {
    let client = https_client(&mesh.ca(), None);
    let (proxy, proxy_process) = tls_proxy_with_sqsum(dir, &mesh.issue("proxy"), &client).await;
    let state = TempDir::new();
    let identity = |address: &str| mesh.issue_agent("agent", address);
    let (agent, agent_process) = tls_agent(&proxy, identity, &mesh.ca(), &state, &client).await;
    ProxyAndAgent {
        agent,
        _processes: [proxy_process, agent_process],
        _state: state,
    }
}

/// `POST https://agent/call/add` of `sqsum(3, 4)` through `client`: the status and the
/// reply, or `None` when the agent did not answer with a message.
async fn call_sqsum(client: &awc::Client, agent: &str) -> Option<(u16, Message)> {
    let mut response = client
        .post(format!("https://{agent}/call/add?timeout_ms=2000"))
        .bearer_auth(TLS_TOKEN)
        .send_body(sqsum(3, 4).to_json())
        .await
        .ok()?;
    let body = response.body().await.ok()?;
    Some((
        response.status().as_u16(),
        Message::from_json_slice(&body).ok()?,
    ))
}

/// Runs `add => square` across two agents of a mesh with TLS on every link: the
/// proxy's identity and the CA's file as given, each agent's identity made by `issue`
/// for its address; the line's reply.
async fn line_across_tls_agents(
    ca: &Path,
    proxy_identity: &Identity,
    issue: impl Fn(&str, &str) -> Identity,
) -> Message {
    let dir = TempDir::new();
    let client = https_client(ca, None);
    let (proxy, _proxy_process) = tls_proxy_with_sqsum(&dir, proxy_identity, &client).await;
    let (states_one, states_two) = (TempDir::new(), TempDir::new());
    let one_identity = |address: &str| issue("agent-one", address);
    let two_identity = |address: &str| issue("agent-two", address);
    let (one, _one) = tls_agent(&proxy, one_identity, ca, &states_one, &client).await;
    let (two, _two) = tls_agent(&proxy, two_identity, ca, &states_two, &client).await;
    let _add = tls_worker(&one, "add", ca);
    let _square = tls_worker(&two, "square", ca);

    // add runs at one, square at two: the line crosses the mutual-TLS peer link.
    eventually(Duration::from_secs(20), "a line across agents", || async {
        call_sqsum(&client, &one)
            .await
            .and_then(|(status, reply)| (status == 200).then_some(reply))
    })
    .await
}

#[actix_rt::test]
async fn a_line_crosses_two_agents_with_tls_and_mutual_tls_on_every_link() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");

    let reply = line_across_tls_agents(&mesh.ca(), &mesh.issue("proxy"), |holder, address| {
        mesh.issue_agent(holder, address)
    })
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

#[actix_rt::test]
async fn a_line_across_three_agents_keeps_its_origin_under_mutual_tls() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let client = https_client(&mesh.ca(), None);
    let (proxy, _proxy_process) = tls_proxy_with_sqsum(&dir, &mesh.issue("proxy"), &client).await;
    let states = [TempDir::new(), TempDir::new(), TempDir::new()];
    let mut agents = Vec::new();
    for (name, state) in ["a", "b", "c"].into_iter().zip(&states) {
        let issue = |address: &str| mesh.issue_agent(name, address);
        agents.push(tls_agent(&proxy, issue, &mesh.ca(), state, &client).await);
    }
    let (a, b, c) = (&agents[0].0, &agents[1].0, &agents[2].0);
    let _add = tls_worker(b, "add", &mesh.ca());
    let _square = tls_worker(c, "square", &mesh.ca());

    // The line starts at a, runs add at b, and b hands it to c with origin a: c takes it
    // from b, an authenticated agent, for a, a listed one, and replies to a directly.
    let reply = eventually(
        Duration::from_secs(20),
        "a line across three agents",
        || async {
            call_sqsum(&client, a)
                .await
                .and_then(|(status, reply)| (status == 200).then_some(reply))
        },
    )
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

/// Runs `damrey certs dir HOLDERS...`.
fn damrey_certs(dir: &Path, holders: &[&str]) {
    let output = Command::new(binary("damrey"))
        .arg("certs")
        .arg(dir)
        .args(holders)
        .output()
        .expect("damrey runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[actix_rt::test]
async fn damrey_certs_makes_certificates_a_tls_mesh_runs_on() {
    let dir = TempDir::new();
    damrey_certs(&dir.0, &["proxy=127.0.0.1"]);
    let identity = |name: &str| Identity {
        cert: dir.0.join(format!("{name}.pem")),
        key: dir.0.join(format!("{name}.key")),
    };

    // Each agent's certificate is made when its port is known, with the CA of the
    // first run.
    let reply = line_across_tls_agents(
        &dir.0.join("ca.pem"),
        &identity("proxy"),
        |name, address| {
            damrey_certs(&dir.0, &[&format!("{name}={address}")]);
            identity(name)
        },
    )
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

#[actix_rt::test]
async fn an_agent_refuses_a_peer_whose_certificate_names_another_agent_of_its_host() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let client = https_client(&mesh.ca(), None);
    let (proxy, _proxy_process) = tls_proxy_with_sqsum(&dir, &mesh.issue("proxy"), &client).await;
    let (states_one, states_two) = (TempDir::new(), TempDir::new());
    let (one, _one) = tls_agent(
        &proxy,
        |address| mesh.issue_agent("one", address),
        &mesh.ca(),
        &states_one,
        &client,
    )
    .await;
    // A certificate for two's host, 127.0.0.1, but for an agent on another port.
    let elsewhere = "127.0.0.1:1";
    let (two, _two) = tls_agent(
        &proxy,
        |_| mesh.issue_agent("two", elsewhere),
        &mesh.ca(),
        &states_two,
        &client,
    )
    .await;
    let _add = tls_worker(&one, "add", &mesh.ca());
    let _square = tls_worker(&two, "square", &mesh.ca());

    let refusal = format!(
        "the agent at {two} presented a certificate for damrey-agent://{elsewhere}, not \
         damrey-agent://{two}"
    );
    // square runs at two only: one must hand the line over, and will not.
    let (status, reply) = eventually(Duration::from_secs(20), "the hand-off refused", || async {
        call_sqsum(&client, &one)
            .await
            .filter(|(_, reply)| reply.to_string().contains(&refusal))
    })
    .await;

    assert_eq!(status, 502, "{reply}");
    assert!(
        reply
            .to_string()
            .starts_with(&format!("ERROR sqsum agent {two} could not be reached")),
        "{reply}"
    );
}

/// Whether `/peer` at `agent` opens with `client`.
async fn peer_link(client: awc::Client, agent: &str) -> Result<(), awc::error::WsClientError> {
    client
        .ws(format!("wss://{agent}/peer"))
        .bearer_auth(TLS_TOKEN)
        .connect()
        .await
        .map(|_| ())
}

#[actix_rt::test]
async fn a_peer_is_refused_with_another_cas_certificate_with_none_or_with_one_naming_no_agent() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let foreign = Authority::new(&dir.0, "foreign");
    let mesh_run = proxy_and_agent(&dir, &mesh).await;
    let agent = mesh_run.agent.clone();

    let impostor = https_client(&mesh.ca(), Some(&foreign.issue_agent("x", "127.0.0.1:9")));
    let refused = peer_link(impostor, &agent).await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::SendRequest(_))),
        "the handshake fails: {refused:?}"
    );
    let anonymous = peer_link(https_client(&mesh.ca(), None), &agent).await;
    assert!(
        matches!(&anonymous, Err(awc::error::WsClientError::InvalidResponseStatus(status)) if status.as_u16() == 403),
        "no client certificate: {anonymous:?}"
    );
    // An older certificate of the mesh's CA, which names no agent.
    let older = https_client(&mesh.ca(), Some(&mesh.issue("older")));
    let mut answer = older
        .get(format!("https://{agent}/peer"))
        .bearer_auth(TLS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 403);
    let body = String::from_utf8(answer.body().await.unwrap().to_vec()).unwrap();
    assert!(
        body.contains(
            "names none or several: remake the mesh's certificates with `damrey certs DIR NAME=HOST:PORT`"
        ),
        "{body}"
    );
    let member = https_client(&mesh.ca(), Some(&mesh.issue_agent("member", "127.0.0.1:9")));
    let accepted = peer_link(member, &agent).await;
    assert!(accepted.is_ok(), "{accepted:?}");
}

#[actix_rt::test]
async fn an_authenticated_peer_is_taken_as_origin_and_no_other_unlisted_agent_is() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let mesh_run = proxy_and_agent(&dir, &mesh).await;
    let agent = mesh_run.agent.clone();
    // An agent the proxy never listed, proven by its certificate.
    let (me, stranger) = ("127.0.0.1:9", "127.0.0.1:10");
    let peer = https_client(&mesh.ca(), Some(&mesh.issue_agent("peer", me)));
    let (_, mut link) = peer
        .ws(format!("wss://{agent}/peer"))
        .bearer_auth(TLS_TOKEN)
        .connect()
        .await
        .expect("the link opens");
    let forward = |seq, origin: &str| PeerFrame::Forward {
        seq,
        envelope: Envelope {
            id: Uuid::new_v4(),
            leg: 1,
            to: "add".to_owned(),
            origin: origin.to_owned(),
            remaining_ms: 5_000,
            hops: 0,
            message: sqsum(3, 4),
        },
    };

    for frame in [forward(1, stranger), forward(2, me)] {
        let text = serde_json::to_string(&frame).unwrap();
        link.send(ws::Message::Text(text.into())).await.unwrap();
    }

    let acked = actix_rt::time::timeout(Duration::from_secs(10), async {
        loop {
            match link.next().await {
                Some(Ok(ws::Frame::Text(text))) => {
                    break serde_json::from_slice::<PeerFrame>(&text).unwrap();
                }
                Some(Ok(_)) => {}
                other => panic!("the link ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an ack");
    assert!(
        matches!(&acked, PeerFrame::Ack { seqs } if seqs == &[2]),
        "only the envelope from its own origin is taken: {acked:?}"
    );
}

#[actix_rt::test]
async fn an_agent_with_half_of_tls_set_refuses_to_start_and_says_what_is_missing() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let identity = mesh.issue("agent");

    let output = Command::new(binary("damrey-agent"))
        .args(["-p", "0", "--host", "127.0.0.1", "--state-dir"])
        .arg(&dir.0)
        .env("DAMREY_TLS_CERT", &identity.cert)
        .env("DAMREY_TLS_KEY", &identity.key)
        .env_remove("DAMREY_TLS_CA")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TLS is half set"), "{stderr}");
    assert!(stderr.contains("plain text"), "{stderr}");
}

#[actix_rt::test]
async fn a_worker_that_does_not_trust_the_agents_certificate_says_the_handshake_failed() {
    let dir = TempDir::new();
    let (mesh, other) = (
        Authority::new(&dir.0, "mesh"),
        Authority::new(&dir.0, "other"),
    );
    let mesh_run = proxy_and_agent(&dir, &mesh).await;

    let output = Command::new(binary("add"))
        .args(["--agent", &mesh_run.agent, "--name", "add"])
        .env("DAMREY_TLS_TOKEN", TLS_TOKEN)
        .env("DAMREY_TLS_CA", other.ca())
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the TLS handshake with the agent failed"),
        "{stderr}"
    );
}
