//! Starting and stopping the processes of a mesh (a proxy on SQLite, agents, worker
//! processes, with or without TLS), and talking to them over HTTP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use awc::Client;
use damrey_actors::Message;
use damrey_service::tls::{self, Identity};
use serde_json::Value;

use crate::binaries::binary;
use crate::process::{Process, TempDir, rust_log};
use crate::wait::{PATIENCE, eventually};

/// An HTTP client with a generous timeout.
pub fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).finish()
}

/// Waits until `GET http://address/healthz` answers 200.
pub async fn wait_healthy(address: &str) {
    let what = format!("{address} healthy");
    eventually(PATIENCE, &what, || async {
        let answer = client()
            .get(format!("http://{address}/healthz"))
            .send()
            .await;
        answer
            .is_ok_and(|response| response.status().is_success())
            .then_some(())
    })
    .await;
}

/// A TCP forwarder that counts the connections made through it.
pub struct CountingForwarder {
    /// `127.0.0.1:port` to connect to.
    pub address: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingForwarder {
    /// Forwards a port of the OS's choosing to `target`.
    pub async fn start(target: &str) -> CountingForwarder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, target) = (connections.clone(), target.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingForwarder {
            address,
            connections,
            accept,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CountingForwarder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A running proxy on an SQLite file in its own directory.
pub struct Proxy {
    /// `127.0.0.1:port`.
    pub address: String,
    /// The proxy's process.
    pub process: Process,
    /// The bound port, bound again on a restart.
    port: u16,
    dir: PathBuf,
    token: Option<String>,
    /// The token this handle's own requests carry: `token`, or a role's.
    client_token: Option<String>,
    env: Vec<(String, String)>,
    /// Worker configs added through this handle.
    configs: std::cell::Cell<u64>,
}

impl Proxy {
    /// A proxy on SQLite in `dir`, open to all.
    pub async fn start(dir: &TempDir) -> Proxy {
        Self::start_on(&dir.0, 0, None, Vec::new()).await
    }

    /// A proxy with extra `DAMREY_*` settings in its environment.
    pub async fn start_with_env(dir: &TempDir, env: &[(&str, &str)]) -> Proxy {
        let env = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Self::start_on(&dir.0, 0, None, env).await
    }

    /// A proxy with these worker configs registered.
    pub async fn with_workers(dir: &TempDir, specs: impl IntoIterator<Item = Value>) -> Proxy {
        let proxy = Self::start(dir).await;
        for spec in specs {
            proxy.add(spec).await;
        }
        proxy
    }

    /// A proxy that wants `token` from everyone.
    pub async fn start_with_token(dir: &TempDir, token: &str) -> Proxy {
        Self::start_on(&dir.0, 0, Some(token.to_owned()), Vec::new()).await
    }

    /// A proxy with role tokens in `env` (`DAMREY_ADMIN_TOKEN`...) and no shared one;
    /// this handle's requests carry `admin_token`.
    pub async fn start_with_roles(dir: &TempDir, env: &[(&str, &str)], admin_token: &str) -> Proxy {
        let mut proxy = Self::start_with_env(dir, env).await;
        proxy.client_token = Some(admin_token.to_owned());
        proxy
    }

    /// Starts a proxy on `port` (0: one the OS chooses) and waits until it is healthy.
    async fn start_on(
        dir: &Path,
        port: u16,
        token: Option<String>,
        env: Vec<(String, String)>,
    ) -> Proxy {
        let mut command = Command::new(binary("damrey-proxy"));
        command
            .args(["-p", &port.to_string(), "--host", "127.0.0.1"])
            .current_dir(dir)
            .env("RUST_LOG", rust_log())
            .env_remove("DATABASE_URL")
            .env_remove("DAMREY_TOKEN");
        if let Some(token) = &token {
            command.env("DAMREY_TOKEN", token);
        }
        command.envs(env.iter().map(|(key, value)| (key, value)));
        let mut process = Process::spawn("damrey-proxy", &mut command);
        let port = process.bound_port().await;
        let address = format!("127.0.0.1:{port}");
        wait_healthy(&address).await;
        Proxy {
            address,
            process,
            port,
            dir: dir.to_owned(),
            client_token: token.clone(),
            token,
            env,
            configs: std::cell::Cell::new(0),
        }
    }

    /// Kills the proxy.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the proxy again on the same port and database.
    pub async fn restart(&mut self) {
        self.process.kill();
        let configs = self.configs.get();
        *self = Self::start_on(
            &self.dir.clone(),
            self.port,
            self.token.clone(),
            self.env.clone(),
        )
        .await;
        self.configs.set(configs);
    }

    fn post(&self, path: &str) -> awc::ClientRequest {
        let request = client().post(format!("http://{}{path}", self.address));
        match &self.client_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Registers a worker config (the seed's JSON).
    pub async fn add(&self, spec: Value) {
        let response = self
            .post("/worker/add")
            .send_json(&spec)
            .await
            .expect("proxy answers");
        assert_eq!(response.status().as_u16(), 201, "adding {spec}");
        self.configs.set(self.configs.get() + 1);
    }

    /// Lists `agent` (with no instances) as an agent speaking to this proxy.
    pub async fn heartbeat_as(&self, agent: &str) {
        let response = self
            .post("/agents/heartbeat")
            .send_json(&serde_json::json!({ "agent": agent }))
            .await
            .expect("proxy answers");
        assert_eq!(response.status().as_u16(), 200, "heartbeat of {agent}");
    }

    /// `GET /agents`: the live agents and their instances.
    pub async fn agents(&self) -> Value {
        self.get_json("/agents").await
    }

    /// `GET path` as JSON, with the token when there is one.
    pub async fn get_json(&self, path: &str) -> Value {
        let mut request = client().get(format!("http://{}{path}", self.address));
        if let Some(token) = &self.client_token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("proxy answers")
            .json()
            .await
            .expect("json")
    }

    /// The instances the proxy lists for the agent at `agent`, `None` when not listed.
    pub async fn instances_of(&self, agent: &str) -> Option<Value> {
        let agents = self.agents().await;
        agents["agents"]
            .as_array()?
            .iter()
            .find(|entry| entry["agent"] == agent)
            .map(|entry| entry["instances"].clone())
    }

    /// Changes a worker config.
    pub async fn change(&self, spec: Value) {
        let response = self
            .post("/worker/chg")
            .send_json(&spec)
            .await
            .expect("proxy answers");
        assert_eq!(response.status().as_u16(), 200, "changing {spec}");
    }
}

/// How an agent is started.
#[derive(Clone, Default)]
pub struct AgentOptions {
    /// `-r`; 3 when `None`.
    pub retries: Option<u32>,
    /// `DAMREY_TOKEN`.
    pub token: Option<String>,
    /// `DAMREY_STATS`: whether steps are counted; on when `None`.
    pub stats: Option<bool>,
    /// `DAMREY_DRAIN_MS`: how long a stopping agent waits for its lines; 5000 when `None`.
    pub drain_ms: Option<u64>,
    /// `DAMREY_HEARTBEAT_MS`; the agent's default when `None`.
    pub heartbeat_ms: Option<u64>,
    /// `--state-dir`; a fresh directory of the agent's own when `None`, so that no
    /// agent ever reads a cache another test left for the same port.
    pub state_dir: Option<PathBuf>,
    /// More environment (`DAMREY_AGENT_TOKEN`...).
    pub env: Vec<(String, String)>,
    /// The soft limit of open files it starts with (through util-linux's `prlimit`,
    /// Linux only); the test's own when `None`.
    pub open_files: Option<u64>,
}

/// A running agent.
pub struct Agent {
    /// `127.0.0.1:port`, also what it advertises.
    pub address: String,
    /// The agent's process.
    pub process: Process,
    /// The bound port, bound again on a restart.
    port: u16,
    proxy: String,
    options: AgentOptions,
    /// The state directory made for this agent, kept across restarts.
    own_state: Option<TempDir>,
}

impl Agent {
    /// An agent of `proxy`, started with the default options.
    pub async fn start(proxy: &Proxy) -> Agent {
        Self::start_with(proxy, AgentOptions::default()).await
    }

    /// An agent of `proxy`, started with `options`.
    pub async fn start_with(proxy: &Proxy, options: AgentOptions) -> Agent {
        Self::start_on(&proxy.address, 0, options).await
    }

    /// An agent that has every config added through `proxy`.
    pub async fn ready(proxy: &Proxy) -> Agent {
        Self::ready_with(proxy, AgentOptions::default()).await
    }

    /// An agent started with `options` that has every config added through `proxy`.
    pub async fn ready_with(proxy: &Proxy, options: AgentOptions) -> Agent {
        let agent = Self::start_with(proxy, options).await;
        agent.wait_configs(proxy.configs.get()).await;
        agent
    }

    /// Starts an agent on `port` (0: one the OS chooses) and waits until it is healthy.
    /// It advertises `127.0.0.1:port` (the agent's default), so a restart on the same
    /// port is the same agent to the proxy and its peers.
    async fn start_on(proxy: &str, port: u16, mut options: AgentOptions) -> Agent {
        let own_state = options.state_dir.is_none().then(TempDir::new);
        let state_dir = options
            .state_dir
            .get_or_insert_with(|| own_state.as_ref().expect("made just above").0.clone())
            .clone();
        let (name, mut command) = match options.open_files {
            Some(soft) => {
                let mut prlimit = Command::new("prlimit");
                prlimit
                    .arg(format!("--nofile={soft}:"))
                    .arg("--")
                    .arg(binary("damrey-agent"));
                ("prlimit damrey-agent", prlimit)
            }
            None => ("damrey-agent", Command::new(binary("damrey-agent"))),
        };
        command
            .args(["-p", &port.to_string(), "-pr", proxy])
            .args(["--host", "127.0.0.1"])
            .args(["-r", &options.retries.unwrap_or(3).to_string()])
            .arg("--state-dir")
            .arg(&state_dir)
            .env("RUST_LOG", rust_log())
            .env_remove("DAMREY_ADVERTISE")
            .env_remove("DAMREY_TOKEN")
            .env_remove("DAMREY_STATE_DIR");
        if let Some(token) = &options.token {
            command.env("DAMREY_TOKEN", token);
        }
        if let Some(stats) = options.stats {
            command.env("DAMREY_STATS", stats.to_string());
        }
        if let Some(drain_ms) = options.drain_ms {
            command.env("DAMREY_DRAIN_MS", drain_ms.to_string());
        }
        if let Some(heartbeat_ms) = options.heartbeat_ms {
            command.env("DAMREY_HEARTBEAT_MS", heartbeat_ms.to_string());
        }
        command.envs(options.env.iter().map(|(key, value)| (key, value)));
        let mut process = Process::spawn(name, &mut command);
        let port = process.bound_port().await;
        let address = format!("127.0.0.1:{port}");
        wait_healthy(&address).await;
        Agent {
            address,
            process,
            port,
            proxy: proxy.to_owned(),
            options,
            own_state,
        }
    }

    /// Starts the agent again on the same port and state directory (after it was killed).
    pub async fn restart(&mut self) {
        self.process.kill();
        let own_state = self.own_state.take();
        *self = Self::start_on(&self.proxy.clone(), self.port, self.options.clone()).await;
        self.own_state = own_state;
    }

    /// The file where the agent keeps its last configs.
    pub fn config_cache(&self) -> PathBuf {
        damrey_agent::cache::ConfigCache::new(
            self.options.state_dir.as_ref().expect("set at start"),
            &self.address,
        )
        .path()
        .to_owned()
    }

    /// `GET /readyz`: the status and the JSON body.
    pub async fn readyz(&self) -> (u16, Value) {
        let mut response = client()
            .get(format!("http://{}/readyz", self.address))
            .send()
            .await
            .expect("agent answers");
        let body = response.json::<Value>().await.expect("json");
        (response.status().as_u16(), body)
    }

    /// `GET /attach/{worker}` without a WebSocket upgrade: the status and the JSON body
    /// of a refusal.
    pub async fn attach_refusal(&self, worker: &str) -> (u16, Value) {
        let mut response = client()
            .get(format!("http://{}/attach/{worker}", self.address))
            .send()
            .await
            .expect("agent answers");
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (response.status().as_u16(), body)
    }

    /// The agent's `/healthz` document.
    pub async fn health(&self) -> Value {
        client()
            .get(format!("http://{}/healthz", self.address))
            .send()
            .await
            .expect("agent answers")
            .json::<Value>()
            .await
            .expect("json")
    }

    /// Waits until the agent has `configs` worker configs.
    pub async fn wait_configs(&self, configs: u64) {
        let what = format!("agent {} has {configs} configs", self.address);
        eventually(PATIENCE, &what, || async {
            (self.health().await["configs"].as_u64() >= Some(configs)).then_some(())
        })
        .await;
    }

    /// Waits until `instances` worker instances are attached here.
    pub async fn wait_instances(&self, instances: u64) {
        let what = format!("agent {} has {instances} instances", self.address);
        eventually(PATIENCE, &what, || async {
            (self.health().await["instances"].as_u64() == Some(instances)).then_some(())
        })
        .await;
    }

    /// Starts worker processes (binary, name) and waits until they are all attached.
    pub async fn start_workers(&self, workers: &[(&str, &str)]) -> Vec<Process> {
        let before = self.health().await["instances"].as_u64().unwrap_or(0);
        let started = workers
            .iter()
            .map(|(binary, name)| self.worker(binary, name))
            .collect();
        self.wait_instances(before + workers.len() as u64).await;
        started
    }

    /// Starts worker binary `binary` attached here as `name`, with the agent's token.
    pub fn worker(&self, binary: &str, name: &str) -> Process {
        // entry also opens the example's front door: on a port of the OS's choosing.
        let flags: &[&str] = if binary == "entry" {
            &["--http", "127.0.0.1:0"]
        } else {
            &[]
        };
        self.worker_with(binary, name, self.options.token.as_deref(), flags)
    }

    /// Starts worker binary `binary` as `name` with a given token and extra flags.
    pub fn worker_with(
        &self,
        binary: &str,
        name: &str,
        token: Option<&str>,
        flags: &[&str],
    ) -> Process {
        self.worker_at(&self.address, binary, name, token, flags)
    }

    /// Starts worker binary `binary` as `name`, attaching through `address` (a
    /// forwarder in front of this agent).
    pub fn worker_through(&self, address: &str, binary: &str, name: &str) -> Process {
        self.worker_at(address, binary, name, self.options.token.as_deref(), &[])
    }

    fn worker_at(
        &self,
        address: &str,
        binary: &str,
        name: &str,
        token: Option<&str>,
        flags: &[&str],
    ) -> Process {
        let mut command = Command::new(crate::binaries::binary(binary));
        command
            .args(["--agent", address, "--name", name])
            .args(flags)
            .env_remove("DAMREY_TOKEN");
        if let Some(token) = token {
            command.env("DAMREY_TOKEN", token);
        }
        Process::spawn(binary, &mut command)
    }

    /// Calls `worker` until it answers 200 (the agent may not know yet where the
    /// line's instances are); panics after [`PATIENCE`] of other answers.
    pub async fn call_until_ok(&self, worker: &str, message: &Message) -> Message {
        let what = format!("{worker} answers 200 at {}", self.address);
        eventually(PATIENCE, &what, || async {
            let (status, reply) = self.call(worker, message, 2_000).await;
            (status == 200).then_some(reply)
        })
        .await
    }

    /// Steps delivered to attached instances and not answered yet (`GET /stats`).
    pub async fn in_flight(&self) -> u64 {
        self.stats_sum("in_flight").await
    }

    /// The agent's `GET /stats` document.
    pub async fn stats(&self) -> Value {
        let mut request = client().get(format!("http://{}/stats", self.address));
        if let Some(token) = &self.options.token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("agent answers")
            .json()
            .await
            .expect("json")
    }

    /// The sum of counter `field` over this agent's instances in `GET /stats`.
    pub async fn stats_sum(&self, field: &str) -> u64 {
        self.stats().await["instances"]
            .as_array()
            .expect("instances in /stats")
            .iter()
            .map(|instance| instance[field].as_u64().expect("a counter"))
            .sum()
    }

    /// Waits until `steps` steps are in flight on this agent's instances.
    pub async fn wait_in_flight(&self, steps: u64) {
        let what = format!("agent {} has {steps} steps in flight", self.address);
        eventually(PATIENCE, &what, || async {
            (self.in_flight().await == steps).then_some(())
        })
        .await;
    }

    /// Requests of this agent's waiting on other agents.
    pub async fn pending(&self) -> u64 {
        self.health().await["pending"]
            .as_u64()
            .expect("pending in /healthz")
    }

    /// A cloneable handle for calls from other tasks.
    pub fn handle(&self) -> AgentAddress {
        AgentAddress {
            address: self.address.clone(),
            token: self.options.token.clone(),
        }
    }

    /// `POST /call/{worker}`: the HTTP status and the reply.
    pub async fn call(&self, worker: &str, message: &Message, timeout_ms: u64) -> (u16, Message) {
        self.handle().call(worker, message, timeout_ms).await
    }

    /// `POST /call/{worker}` with any body: the HTTP status and the body.
    pub async fn call_raw(&self, worker: &str, body: String, timeout_ms: u64) -> (u16, Vec<u8>) {
        self.handle().call_raw(worker, body, timeout_ms).await
    }
}

/// An agent's address and token, for calls.
#[derive(Clone)]
pub struct AgentAddress {
    /// `host:port`.
    pub address: String,
    /// The token its requests carry.
    pub token: Option<String>,
}

impl AgentAddress {
    /// `POST /call/{worker}`: the HTTP status and the reply.
    pub async fn call(&self, worker: &str, message: &Message, timeout_ms: u64) -> (u16, Message) {
        let (status, body) = self.call_raw(worker, message.to_json(), timeout_ms).await;
        let reply = Message::from_json_slice(&body)
            .unwrap_or_else(|e| panic!("status {status}: {e}: {}", String::from_utf8_lossy(&body)));
        (status, reply)
    }

    /// `POST /call/{worker}` with any body: the HTTP status and the body.
    pub async fn call_raw(&self, worker: &str, body: String, timeout_ms: u64) -> (u16, Vec<u8>) {
        let url = format!(
            "http://{}/call/{worker}?timeout_ms={timeout_ms}",
            self.address
        );
        let mut request = client().post(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send_body(body).await.expect("agent answers");
        // Any answer a call can give: a reply as large as the largest request.
        let limit = damrey_actors::frame::MAX_FRAME * 2;
        let body = response.body().limit(limit).await.expect("body");
        (response.status().as_u16(), body.to_vec())
    }
}

/// The sqsum line `add => square` as the proxy stores it.
pub fn sqsum_specs() -> [Value; 2] {
    [
        serde_json::json!({"name": "add", "agent": "", "mpu": "", "commands": [{"name": "sqsum", "worker": "square"}]}),
        serde_json::json!({"name": "square", "agent": "", "mpu": "", "commands": [{"name": "sqsum", "worker": ""}]}),
    ]
}

/// A proxy with [`sqsum_specs`], an agent that has them, and the `add` and `square`
/// worker processes attached to it.
pub async fn sqsum_mesh(dir: &TempDir) -> (Proxy, Agent, Vec<Process>) {
    let proxy = Proxy::with_workers(dir, sqsum_specs()).await;
    let agent = Agent::ready(&proxy).await;
    let workers = agent
        .start_workers(&[("add", "add"), ("square", "square")])
        .await;
    (proxy, agent, workers)
}

/// Puts a known load through `add => square` at `agent`: 20 good requests (200) and 3
/// whose argument add refuses (422).
pub async fn known_load(agent: &Agent) {
    for i in 0..20 {
        assert_eq!(agent.call("add", &sqsum(i, 1), 2_000).await.0, 200);
    }
    for _ in 0..3 {
        let bad = Message::request("sqsum", ["1", "x"]);
        assert_eq!(agent.call("add", &bad, 2_000).await.0, 422);
    }
}

/// `["REQUEST","sqsum",a,b]`.
pub fn sqsum(a: i64, b: i64) -> Message {
    Message::request("sqsum", [a.to_string(), b.to_string()])
}

/// Spawns every future on the current arbiter and collects the results in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let handles: Vec<_> = futures.into_iter().map(actix_rt::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("test task panicked"));
    }
    results
}

/// Serves `handler` at `GET path` on a port of the OS's choosing, in the current
/// system, and returns its `host:port`: a stand-in peer or agent for a test.
pub fn serve_get<H, Args>(path: &'static str, handler: H) -> String
where
    H: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    H::Output: actix_web::Responder + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let address = listener.local_addr().expect("bound").to_string();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().route(path, actix_web::web::get().to(handler.clone()))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    actix_rt::spawn(server);
    address
}

/// The token of the TLS meshes.
pub const TLS_TOKEN: &str = "s3cret";

/// A CA and the certificates it signs, as PEM files in a directory.
pub struct Authority {
    dir: PathBuf,
    name: String,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Authority {
    /// A new CA named `name`, its certificate written to `dir`.
    pub fn new(dir: &Path, name: &str) -> Authority {
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
    pub fn ca(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for 127.0.0.1 named `holder`, signed by this CA; it names no agent.
    pub fn issue(&self, holder: &str) -> Identity {
        self.issue_names(holder, None)
    }

    /// A certificate for 127.0.0.1 named `holder`, signed by this CA, that names the agent
    /// advertised at `agent` (`host:port`), as `damrey certs DIR NAME=HOST:PORT` makes.
    pub fn issue_agent(&self, holder: &str, agent: &str) -> Identity {
        self.issue_names(holder, Some(agent))
    }

    fn issue_names(&self, holder: &str, agent: Option<&str>) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        if let Some(agent) = agent {
            params.subject_alt_names.push(rcgen::SanType::URI(
                tls::agent_uri(agent).as_str().try_into().unwrap(),
            ));
        }
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
pub fn https_client(ca: &Path, identity: Option<&Identity>) -> awc::Client {
    let config = Arc::new(tls::client_config(ca, identity).unwrap());
    tls::client(Duration::from_secs(30), Some(&config))
}

/// Waits until `GET https://address/healthz` answers 200 through `client`.
pub async fn wait_healthy_over_https(client: &awc::Client, address: &str) {
    eventually(PATIENCE, "healthy over HTTPS", || async {
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
        .env("DAMREY_TLS_TOKEN", TLS_TOKEN);
    if let Some(ca) = ca {
        command.env("DAMREY_TLS_CA", ca);
    }
}

/// A proxy serving HTTPS with `identity`, on SQLite in `dir`.
pub async fn tls_proxy(
    dir: &TempDir,
    identity: &Identity,
    client: &awc::Client,
) -> (String, Process) {
    let mut command = Command::new(binary("damrey-proxy"));
    command
        .args(["-p", "0", "--host", "127.0.0.1"])
        .current_dir(&dir.0)
        .env("RUST_LOG", rust_log())
        .env_remove("DATABASE_URL");
    tls_env(&mut command, identity, None);
    let mut process = Process::spawn("damrey-proxy", &mut command);
    let port = process.bound_port().await;
    let address = format!("127.0.0.1:{port}");
    wait_healthy_over_https(client, &address).await;
    (address, process)
}

/// An agent serving HTTPS and WSS with the identity `identity` makes for its address
/// (`127.0.0.1:port`), trusting `ca` for the proxy and its peers, which must present
/// certificates `ca` signed.
///
/// An agent's certificate names its address, port included, so the port is chosen
/// before the agent starts, not by the agent binding port 0: a port the OS just gave
/// out and took back. Another process may take it meanwhile; the agent then exits at
/// once and another port is tried.
pub async fn tls_agent(
    proxy: &str,
    identity: impl Fn(&str) -> Identity,
    ca: &Path,
    state: &TempDir,
    client: &awc::Client,
) -> (String, Process) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        // The agent advertises 127.0.0.1:port, the name its certificate carries.
        let address = format!("127.0.0.1:{port}");
        let mut command = Command::new(binary("damrey-agent"));
        command
            .args(["-p", &port.to_string(), "-pr", proxy])
            .args(["--host", "127.0.0.1", "--state-dir"])
            .arg(&state.0)
            .env("RUST_LOG", rust_log())
            .env_remove("DAMREY_ADVERTISE");
        tls_env(&mut command, &identity(&address), Some(ca));
        let mut process = Process::spawn("damrey-agent", &mut command);
        if process.bound_port_unless_exited().await.is_some() {
            wait_healthy_over_https(client, &address).await;
            return (address, process);
        }
    }
    panic!("the agent could not bind any of 5 free ports");
}

/// A worker process attaching over WSS, trusting `ca`.
pub fn tls_worker(agent: &str, name: &str, ca: &Path) -> Process {
    let mut command = Command::new(binary(name));
    command
        .args(["--agent", agent, "--name", name])
        .env("DAMREY_TLS_TOKEN", TLS_TOKEN)
        .env("DAMREY_TLS_CA", ca);
    Process::spawn(name, &mut command)
}
