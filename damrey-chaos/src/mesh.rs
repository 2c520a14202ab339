//! The processes of one run: the proxy, one agent per host and the test workers; how
//! each is started, restarted with the same settings, and talked to over HTTP.
//!
//! The checker runs on one actix thread, so the mesh is shared as `Rc` with `RefCell`
//! fields, and no borrow is held across an await.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use awc::Client;
use damrey_actors::Message;
use serde_json::Value;

use crate::hosts::{Hosts, Mode};
use crate::plan::Plan;
use crate::procs::{HostCommand, Process};
use crate::record::{self, Record};

/// The binaries a run starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `damrey-proxy`.
    pub proxy: PathBuf,
    /// `damrey-agent`.
    pub agent: PathBuf,
    /// `chaos-worker`.
    pub worker: PathBuf,
}

impl Binaries {
    /// The proxy and agent next to `worker` (cargo puts every binary of the workspace in
    /// one directory). Fails when one is missing or older than its crate's sources, so
    /// a stale build is never tested.
    ///
    /// # Errors
    /// A binary is missing or stale.
    pub fn beside(worker: &Path) -> Result<Binaries, String> {
        let sibling = |name: &str| worker.with_file_name(name);
        let binaries = Binaries {
            proxy: sibling("damrey-proxy"),
            agent: sibling("damrey-agent"),
            worker: worker.to_owned(),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (binary, krate) in [
            (&binaries.proxy, "damrey-proxy"),
            (&binaries.agent, "damrey-agent"),
        ] {
            let built = std::fs::metadata(binary)
                .and_then(|meta| meta.modified())
                .map_err(|_| {
                    format!(
                        "{} is missing: build it (`cargo build -p {krate}`, or \
                         `cargo test --workspace`, which builds every binary)",
                        binary.display()
                    )
                })?;
            // The binary's own crate and every Damrey crate it is built from.
            let sources = [
                workspace.join(krate).join("src"),
                workspace.join("damrey-actors/src"),
                workspace.join("damrey-wire/src"),
                workspace.join("damrey-service/src"),
            ];
            if let Some(newer) = sources.iter().find_map(|dir| newer_than(dir, built)) {
                return Err(format!(
                    "{} is older than {}: rebuild it (`cargo build -p {krate}`)",
                    binary.display(),
                    newer.display()
                ));
            }
        }
        Ok(binaries)
    }
}

/// A file under `dir` modified after `time`, if any (absent sources are not checked).
fn newer_than(dir: &Path, time: std::time::SystemTime) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = newer_than(&path, time) {
                return Some(found);
            }
        } else if entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|modified| modified > time)
        {
            return Some(path);
        }
    }
    None
}

/// A port the OS says is free on `ip` now.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or(0)
}

/// An HTTP client for the control plane (health, configs, stats): short timeouts.
fn control() -> Client {
    Client::builder().timeout(Duration::from_secs(3)).finish()
}

/// `GET url` as JSON.
pub async fn get_json(url: &str) -> Result<Value, String> {
    let mut response = control().get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    response
        .json::<Value>()
        .limit(16 << 20)
        .await
        .map_err(|e| e.to_string())
}

/// Polls `GET url` until it answers 200, for up to `limit`.
pub async fn wait_healthy(url: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(response) = control().get(url).send().await
            && response.status().is_success()
        {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Waits (up to `limit`) until `GET /readyz` answers 200; an agent without `/readyz`
/// (404) is ready when healthy.
async fn wait_ready(address: &str, limit: Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        match control()
            .get(format!("http://{address}/readyz"))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() || response.status() == 404 => return,
            _ => actix_rt::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// The proxy: its port and store survive restarts.
pub struct ProxyProc {
    /// `ip:port`.
    pub address: String,
    dir: PathBuf,
    process: Option<Process>,
}

/// An agent: the same port and settings on every start.
pub struct AgentProc {
    /// `ip:port`, also what it advertises.
    pub address: String,
    host: Option<usize>,
    port: u16,
    ip: String,
    dir: PathBuf,
    process: Option<Process>,
}

/// One instance of a test worker; each start is a new incarnation with its own record file.
pub struct WorkerProc {
    /// The worker's name.
    pub name: String,
    /// Its agent.
    pub agent: usize,
    timeout_ms: u64,
    /// Its record files, one per incarnation.
    pub records: Vec<PathBuf>,
    process: Option<Process>,
}

/// Every process of a run.
pub struct Mesh {
    /// Where the agents run.
    pub hosts: Hosts,
    binaries: Binaries,
    /// The run's directory (logs, records, stores).
    pub dir: PathBuf,
    /// The proxy.
    pub proxy: RefCell<ProxyProc>,
    /// The agents.
    pub agents: Vec<RefCell<AgentProc>>,
    /// Every worker's instances (extra workers included, not started until a fault adds them).
    pub workers: Vec<Vec<RefCell<WorkerProc>>>,
}

impl Mesh {
    /// Builds the hosts and the process table of `plan` (nothing started yet).
    pub fn new(plan: &Plan, hosts: Hosts, binaries: Binaries, dir: PathBuf) -> Mesh {
        let sub = |name: &str| {
            let path = dir.join(name);
            std::fs::create_dir_all(&path).expect("the run directory is writable");
            path
        };
        let proxy = ProxyProc {
            address: format!("{}:{}", hosts.root_ip, free_port(&hosts.root_ip)),
            dir: sub("proxy"),
            process: None,
        };
        let agents = (0..plan.agents)
            .map(|i| {
                let (host, ip, port) = match hosts.mode {
                    Mode::Netns | Mode::Containers => (Some(i), hosts.ips[i].clone(), 7701),
                    Mode::Loopback => (None, "127.0.0.1".to_owned(), free_port("127.0.0.1")),
                };
                RefCell::new(AgentProc {
                    address: format!("{ip}:{port}"),
                    host,
                    port,
                    ip,
                    dir: sub(&format!("agent{i}")),
                    process: None,
                })
            })
            .collect();
        sub("records");
        sub("logs");
        let workers = plan
            .workers
            .iter()
            .map(|worker| {
                worker
                    .instances
                    .iter()
                    .map(|agent| {
                        RefCell::new(WorkerProc {
                            name: worker.name.clone(),
                            agent: *agent,
                            timeout_ms: worker.timeout_ms,
                            records: Vec::new(),
                            process: None,
                        })
                    })
                    .collect()
            })
            .collect();
        Mesh {
            hosts,
            binaries,
            dir,
            proxy: RefCell::new(proxy),
            agents,
            workers,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// The proxy's address.
    pub fn proxy_address(&self) -> String {
        self.proxy.borrow().address.clone()
    }

    /// Agent `i`'s address.
    pub fn agent_address(&self, i: usize) -> String {
        self.agents[i].borrow().address.clone()
    }

    /// Starts (or restarts) the proxy and waits until it is healthy; tries again while
    /// its port is taken.
    ///
    /// # Errors
    /// It never became healthy.
    pub async fn start_proxy(&self) -> Result<(), String> {
        for _ in 0..5 {
            let (address, dir) = {
                let proxy = self.proxy.borrow();
                (proxy.address.clone(), proxy.dir.clone())
            };
            let (host, port) = address.split_once(':').expect("ip:port");
            let mut command = HostCommand::local(&self.binaries.proxy);
            command
                .command
                .args(["-p", port, "--host", host])
                .current_dir(&dir);
            let process = Process::spawn("damrey-proxy", &mut command, &self.log("proxy"))?;
            self.proxy.borrow_mut().process = Some(process);
            // Healthy, and ours: a process that exited lost its port to another.
            if wait_healthy(
                &format!("http://{address}/healthz"),
                Duration::from_secs(10),
            )
            .await
                && !self
                    .proxy
                    .borrow_mut()
                    .process
                    .as_mut()
                    .is_none_or(Process::exited)
            {
                return Ok(());
            }
            let mut proxy = self.proxy.borrow_mut();
            if let Some(mut process) = proxy.process.take() {
                process.kill();
            }
        }
        Err("the proxy never became healthy".to_owned())
    }

    /// Signals the proxy.
    pub fn signal_proxy(&self, signal: &str) {
        if let Some(process) = &self.proxy.borrow().process {
            process.signal(signal);
        }
    }

    /// Waits for the proxy to exit (after SIGTERM), killing it after `limit`.
    pub async fn stop_proxy(&self, limit: Duration) {
        let process = self.proxy.borrow_mut().process.take();
        if let Some(mut process) = process {
            process.wait_exit(limit).await;
        }
    }

    /// Starts (or restarts) agent `i` with the same port and settings and waits until
    /// it is healthy (and ready, for up to `ready_within`, when it serves `/readyz`);
    /// tries again (`attempts` times) while the port is taken.
    ///
    /// # Errors
    /// It never became healthy.
    pub async fn start_agent(
        &self,
        i: usize,
        retries: u32,
        attempts: usize,
        ready_within: Duration,
    ) -> Result<(), String> {
        for _ in 0..attempts {
            let (mut command, address) = {
                let agent = self.agents[i].borrow();
                let mut command = self
                    .hosts
                    .command(agent.host, &self.binaries.agent, &agent.dir);
                command
                    .command
                    .args(["-p", &agent.port.to_string(), "-a", &agent.address])
                    .args(["-pr", &self.proxy_address(), "-r", &retries.to_string()])
                    .args(["--host", self.hosts.bind_ip(&agent.ip)]);
                (command, agent.address.clone())
            };
            let process = Process::spawn(
                "damrey-agent",
                &mut command,
                &self.log(&format!("agent{i}")),
            )?;
            self.agents[i].borrow_mut().process = Some(process);
            if wait_healthy(
                &format!("http://{address}/healthz"),
                Duration::from_secs(10),
            )
            .await
                && !self.agents[i]
                    .borrow_mut()
                    .process
                    .as_mut()
                    .is_none_or(Process::exited)
            {
                wait_ready(&address, ready_within).await;
                return Ok(());
            }
            if let Some(mut process) = self.agents[i].borrow_mut().process.take() {
                process.kill();
            }
            actix_rt::time::sleep(Duration::from_millis(300)).await;
        }
        Err(format!("agent {i} never became healthy"))
    }

    /// Signals agent `i`.
    pub fn signal_agent(&self, i: usize, signal: &str) {
        if let Some(process) = &self.agents[i].borrow().process {
            process.signal(signal);
        }
    }

    /// Waits for agent `i` to exit (after SIGTERM), killing it after `limit`.
    pub async fn stop_agent(&self, i: usize, limit: Duration) {
        let process = self.agents[i].borrow_mut().process.take();
        if let Some(mut process) = process {
            process.wait_exit(limit).await;
        }
    }

    /// Starts (or restarts) instance `instance` of worker `worker` and waits until it
    /// has attached (its record file says so), starting it again while it exits first
    /// (its agent down or without configs). Returns whether it attached within `limit`.
    pub async fn start_worker(&self, worker: usize, instance: usize, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            let (mut command, record, name) = {
                let mut proc = self.workers[worker][instance].borrow_mut();
                let record = self.dir.join("records").join(format!(
                    "{}-{instance}-{}.log",
                    proc.name,
                    proc.records.len()
                ));
                proc.records.push(record.clone());
                let agent = self.agents[proc.agent].borrow();
                let mut command = self
                    .hosts
                    .command(agent.host, &self.binaries.worker, &self.dir);
                let address = self.hosts.local_address(&agent.address, agent.port);
                command
                    .command
                    .args(["--agent", &address, "--name", &proc.name])
                    .args(["--timeout-ms", &proc.timeout_ms.to_string()])
                    .arg("--record")
                    .arg(&record);
                (command, record, format!("{}-{instance}", proc.name))
            };
            let process = match Process::spawn(&name, &mut command, &self.log(&name)) {
                Ok(process) => process,
                Err(error) => {
                    tracing::warn!(%error, "worker start");
                    return false;
                }
            };
            self.workers[worker][instance].borrow_mut().process = Some(process);
            loop {
                if record::read(&record)
                    .iter()
                    .any(|r| matches!(r, Record::Attached { .. }))
                {
                    return true;
                }
                let exited = self.workers[worker][instance]
                    .borrow_mut()
                    .process
                    .as_mut()
                    .is_none_or(Process::exited);
                if exited || started.elapsed() >= limit {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Signals a worker instance.
    pub fn signal_worker(&self, worker: usize, instance: usize, signal: &str) {
        if let Some(process) = &self.workers[worker][instance].borrow().process {
            process.signal(signal);
        }
    }

    /// How many worker instances run with agent `agent` as theirs (started, not stopped).
    pub fn running_on(&self, agent: usize) -> usize {
        self.workers
            .iter()
            .flatten()
            .filter(|worker| {
                let worker = worker.borrow();
                worker.agent == agent && worker.process.is_some()
            })
            .count()
    }

    /// The incarnation (record file index) a worker instance runs now.
    pub fn worker_incarnation(&self, worker: usize, instance: usize) -> usize {
        self.workers[worker][instance]
            .borrow()
            .records
            .len()
            .saturating_sub(1)
    }

    /// Waits for a worker instance to exit, killing it after `limit`.
    pub async fn stop_worker(&self, worker: usize, instance: usize, limit: Duration) {
        let process = self.workers[worker][instance].borrow_mut().process.take();
        if let Some(mut process) = process {
            process.wait_exit(limit).await;
        }
    }

    /// `POST /worker/{verb}` on the proxy: the status.
    pub async fn post_worker(&self, verb: &str, body: &Value) -> Result<u16, String> {
        let url = format!("http://{}/worker/{verb}", self.proxy_address());
        let response = control()
            .post(url)
            .send_json(body)
            .await
            .map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }

    /// Agent `i`'s `/healthz` document.
    pub async fn agent_health(&self, i: usize) -> Option<Value> {
        get_json(&format!("http://{}/healthz", self.agent_address(i)))
            .await
            .ok()
    }

    /// Agent `i`'s `/stats` document.
    pub async fn agent_stats(&self, i: usize) -> Option<Value> {
        get_json(&format!("http://{}/stats", self.agent_address(i)))
            .await
            .ok()
    }

    /// Every record file of every worker instance, with the worker index, instance and
    /// incarnation.
    pub fn record_files(&self) -> Vec<(usize, usize, usize, PathBuf)> {
        let mut files = Vec::new();
        for (worker, instances) in self.workers.iter().enumerate() {
            for (instance, proc) in instances.iter().enumerate() {
                for (incarnation, path) in proc.borrow().records.iter().enumerate() {
                    files.push((worker, instance, incarnation, path.clone()));
                }
            }
        }
        files
    }

    /// Kills every process at once.
    pub fn kill_all(&self) {
        for instances in &self.workers {
            for proc in instances {
                if let Some(mut process) = proc.borrow_mut().process.take() {
                    process.kill();
                }
            }
        }
        for agent in &self.agents {
            if let Some(mut process) = agent.borrow_mut().process.take() {
                process.kill();
            }
        }
        if let Some(mut process) = self.proxy.borrow_mut().process.take() {
            process.kill();
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// What a call to an agent came to.
#[derive(Debug, Clone)]
pub enum CallResult {
    /// The agent answered with a status and a body that is a message.
    Reply(u16, Message),
    /// The agent answered something that is not a message.
    NotAMessage(u16, String),
    /// The connection could not be opened: the request never entered the mesh.
    NotDelivered(String),
    /// The connection broke or the client gave up after the request was sent.
    Lost(String),
}

/// `POST /call/{worker}?timeout_ms=N` on a fresh connection, with a client timeout
/// far past the deadline (the checker never gives up first).
pub async fn call(agent: &str, worker: &str, message: &Message, deadline: Duration) -> CallResult {
    let url = format!(
        "http://{agent}/call/{worker}?timeout_ms={}",
        deadline.as_millis()
    );
    let client = Client::builder()
        .timeout(deadline + Duration::from_secs(30))
        .finish();
    let sent = client
        .post(url)
        .force_close()
        .insert_header(("content-type", "application/json"))
        .send_body(message.to_json())
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(awc::error::SendRequestError::Connect(error)) => {
            return CallResult::NotDelivered(error.to_string());
        }
        Err(error) => return CallResult::Lost(error.to_string()),
    };
    let status = response.status().as_u16();
    match response.body().limit(1 << 20).await {
        Ok(body) => match Message::from_json_slice(&body) {
            Ok(message) => CallResult::Reply(status, message),
            Err(_) => CallResult::NotAMessage(status, String::from_utf8_lossy(&body).into_owned()),
        },
        Err(error) => CallResult::Lost(error.to_string()),
    }
}
