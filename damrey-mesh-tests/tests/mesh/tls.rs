//! TLS everywhere in a mesh of real processes: the proxy over HTTPS, agents over HTTPS
//! and WSS, worker processes attaching over WSS, and mutual TLS between agents, with a
//! CA and certificates made by the test (rcgen), or by `damrey-example/dev-certs`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use damrey_actors::Message;
use damrey_service::tls::Identity;

use crate::support::{
    Authority, TLS_TOKEN, TempDir, binary, eventually, https_client, sqsum, sqsum_specs, tls_agent,
    tls_proxy, tls_worker,
};

/// Runs `add => square` across two agents of a mesh with TLS on every link: the
/// proxy's, the agents' and the CA's files as given; the line's reply.
async fn line_across_tls_agents(
    ca: &Path,
    proxy_identity: &Identity,
    agent_identities: [&Identity; 2],
) -> Message {
    let dir = TempDir::new();
    let client = https_client(ca, None);
    let (proxy, _proxy_process) = tls_proxy(&dir, proxy_identity, &client).await;
    for spec in sqsum_specs() {
        let response = client
            .post(format!("https://{proxy}/worker/add"))
            .bearer_auth(TLS_TOKEN)
            .send_json(&spec)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    let (states_one, states_two) = (TempDir::new(), TempDir::new());
    let (one, _one) = tls_agent(&proxy, agent_identities[0], ca, &states_one, &client).await;
    let (two, _two) = tls_agent(&proxy, agent_identities[1], ca, &states_two, &client).await;
    let _add = tls_worker(&one, "add", ca);
    let _square = tls_worker(&two, "square", ca);

    // add runs at one, square at two: the line crosses the mutual-TLS peer link.
    eventually(Duration::from_secs(20), "a line across agents", || async {
        let mut response = client
            .post(format!("https://{one}/call/add?timeout_ms=2000"))
            .bearer_auth(TLS_TOKEN)
            .send_body(sqsum(3, 4).to_json())
            .await
            .ok()?;
        let body = response.body().await.ok()?;
        (response.status().as_u16() == 200).then(|| Message::from_json_slice(&body).unwrap())
    })
    .await
}

#[actix_rt::test]
async fn a_line_crosses_two_agents_with_tls_and_mutual_tls_on_every_link() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");

    let reply = line_across_tls_agents(
        &mesh.ca(),
        &mesh.issue("proxy"),
        [&mesh.issue("agent-one"), &mesh.issue("agent-two")],
    )
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

#[actix_rt::test]
async fn the_dev_certs_script_makes_certificates_a_tls_mesh_runs_on() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("skipped: damrey-example/dev-certs needs openssl");
        return;
    }
    let dir = TempDir::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../damrey-example/dev-certs");
    let status = Command::new(script)
        .arg(&dir.0)
        .args(["proxy=127.0.0.1", "one=127.0.0.1", "two=127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("the script runs");
    assert!(status.success());
    let identity = |name: &str| Identity {
        cert: dir.0.join(format!("{name}.pem")),
        key: dir.0.join(format!("{name}.key")),
    };

    let reply = line_across_tls_agents(
        &dir.0.join("ca.pem"),
        &identity("proxy"),
        [&identity("one"), &identity("two")],
    )
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

#[actix_rt::test]
async fn a_peer_with_another_cas_certificate_or_none_is_refused() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let foreign = Authority::new(&dir.0, "foreign");
    let client = https_client(&mesh.ca(), None);
    let (proxy, _proxy_process) = tls_proxy(&dir, &mesh.issue("proxy"), &client).await;
    let state = TempDir::new();
    let (agent, _agent) =
        tls_agent(&proxy, &mesh.issue("agent"), &mesh.ca(), &state, &client).await;
    let peer_link = |client: awc::Client| {
        let url = format!("wss://{agent}/peer");
        async move {
            client
                .ws(url)
                .bearer_auth(TLS_TOKEN)
                .connect()
                .await
                .map(|_| ())
        }
    };

    let impostor = https_client(&mesh.ca(), Some(&foreign.issue("impostor")));
    let refused = peer_link(impostor).await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::SendRequest(_))),
        "the handshake fails: {refused:?}"
    );
    let anonymous = peer_link(https_client(&mesh.ca(), None)).await;
    assert!(
        matches!(&anonymous, Err(awc::error::WsClientError::InvalidResponseStatus(status)) if status.as_u16() == 403),
        "no client certificate: {anonymous:?}"
    );
    let member = peer_link(https_client(&mesh.ca(), Some(&mesh.issue("member")))).await;
    assert!(member.is_ok(), "{member:?}");
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
