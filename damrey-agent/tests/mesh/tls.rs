//! TLS everywhere in a mesh of real processes: the proxy over HTTPS, agents over HTTPS
//! and WSS, worker processes attaching over WSS, and mutual TLS between agents, with a
//! CA and certificates made by the test (rcgen).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::Message;
use damrey_actors::tls::{self, Identity};

use crate::support::{Process, TempDir, eventually, free_port, sibling, sqsum, sqsum_specs};

const TOKEN: &str = "s3cret";

/// A CA and the certificates it signs, as PEM files in a directory.
struct Authority {
    dir: PathBuf,
    name: String,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("damrey test CA {name}"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Authority {
            dir: dir.to_owned(),
            name: name.to_owned(),
            key,
            cert,
        }
    }

    /// The CA certificate's file.
    fn ca(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for 127.0.0.1 named `holder`, signed by this CA.
    fn issue(&self, holder: &str) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, holder);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let identity = Identity {
            cert: self.dir.join(format!("{}-{holder}.pem", self.name)),
            key: self.dir.join(format!("{}-{holder}.key", self.name)),
        };
        std::fs::write(&identity.cert, cert.pem()).unwrap();
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        identity
    }
}

/// An HTTPS client trusting `ca`, presenting `identity` when asked.
fn https_client(ca: &Path, identity: Option<&Identity>) -> awc::Client {
    let config = Arc::new(tls::client_config(ca, identity).unwrap());
    tls::client(Duration::from_secs(30), Some(&config))
}

async fn wait_healthy_over_https(client: &awc::Client, address: &str) {
    eventually(Duration::from_secs(20), "healthy over HTTPS", || async {
        let answer = client
            .get(format!("https://{address}/healthz"))
            .send()
            .await;
        answer
            .is_ok_and(|response| response.status().is_success())
            .then_some(())
    })
    .await;
}

fn tls_env(command: &mut Command, identity: &Identity, ca: Option<&Path>) {
    command
        .env("DAMREY_TLS_CERT", &identity.cert)
        .env("DAMREY_TLS_KEY", &identity.key)
        .env("DAMREY_TOKEN", TOKEN);
    if let Some(ca) = ca {
        command.env("DAMREY_TLS_CA", ca);
    }
}

/// A proxy serving HTTPS with `identity`, on SQLite in `dir`.
async fn proxy(dir: &TempDir, identity: &Identity, client: &awc::Client) -> (String, Process) {
    let port = free_port();
    let mut command = Command::new(sibling("damrey-proxy"));
    command
        .args(["-p", &port.to_string(), "--host", "127.0.0.1"])
        .current_dir(&dir.0)
        .env_remove("DATABASE_URL");
    tls_env(&mut command, identity, None);
    let process = Process::spawn("damrey-proxy", &mut command);
    let address = format!("127.0.0.1:{port}");
    wait_healthy_over_https(client, &address).await;
    (address, process)
}

/// An agent serving HTTPS and WSS with `identity`, trusting `ca` for the proxy and its
/// peers, which must present certificates `ca` signed.
async fn agent(
    proxy: &str,
    identity: &Identity,
    ca: &Path,
    state: &TempDir,
    client: &awc::Client,
) -> (String, Process) {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_damrey-agent"));
    command
        .args(["-p", &port.to_string(), "-a", &address, "-pr", proxy])
        .args(["--host", "127.0.0.1", "--state-dir"])
        .arg(&state.0);
    tls_env(&mut command, identity, Some(ca));
    let process = Process::spawn("damrey-agent", &mut command);
    wait_healthy_over_https(client, &address).await;
    (address, process)
}

/// A worker process attaching over WSS, trusting `ca`.
fn worker(agent: &str, binary: &str, ca: &Path) -> Process {
    let mut command = Command::new(sibling(binary));
    command
        .args(["--agent", agent, "--name", binary])
        .env("DAMREY_TOKEN", TOKEN)
        .env("DAMREY_TLS_CA", ca);
    Process::spawn(binary, &mut command)
}

#[actix_rt::test]
async fn a_line_crosses_two_agents_with_tls_and_mutual_tls_on_every_link() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let client = https_client(&mesh.ca(), None);
    let (proxy, _proxy_process) = proxy(&dir, &mesh.issue("proxy"), &client).await;
    for spec in sqsum_specs() {
        let response = client
            .post(format!("https://{proxy}/worker/add"))
            .bearer_auth(TOKEN)
            .send_json(&spec)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    let (states_one, states_two) = (TempDir::new(), TempDir::new());
    let (one, _one) = agent(
        &proxy,
        &mesh.issue("agent-one"),
        &mesh.ca(),
        &states_one,
        &client,
    )
    .await;
    let (two, _two) = agent(
        &proxy,
        &mesh.issue("agent-two"),
        &mesh.ca(),
        &states_two,
        &client,
    )
    .await;
    let _add = worker(&one, "add", &mesh.ca());
    let _square = worker(&two, "square", &mesh.ca());

    // add runs at one, square at two: the line crosses the mutual-TLS peer link.
    let reply = eventually(Duration::from_secs(20), "a line across agents", || async {
        let mut response = client
            .post(format!("https://{one}/call/add?timeout_ms=2000"))
            .bearer_auth(TOKEN)
            .send_body(sqsum(3, 4).to_json())
            .await
            .ok()?;
        let body = response.body().await.ok()?;
        (response.status().as_u16() == 200).then(|| Message::from_json_slice(&body).unwrap())
    })
    .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}

#[actix_rt::test]
async fn a_peer_with_another_cas_certificate_or_none_is_refused() {
    let dir = TempDir::new();
    let mesh = Authority::new(&dir.0, "mesh");
    let foreign = Authority::new(&dir.0, "foreign");
    let client = https_client(&mesh.ca(), None);
    let (proxy, _proxy_process) = proxy(&dir, &mesh.issue("proxy"), &client).await;
    let state = TempDir::new();
    let (agent, _agent) = agent(&proxy, &mesh.issue("agent"), &mesh.ca(), &state, &client).await;
    let peer_link = |client: awc::Client| {
        let url = format!("wss://{agent}/peer");
        async move {
            client
                .ws(url)
                .bearer_auth(TOKEN)
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
