//! A mesh in containers: Postgres, a proxy on it, and agents, on a private network.

use std::time::{Duration, Instant};

use damrey_actors::{Message, WorkerSpec};
use testcontainers::{Container, GenericImage, RunnableImage};

use crate::docker::{self, Network, cli};
use crate::error::Error;
use crate::postgres::Postgres;

/// The port the proxy listens on inside its container (DESIGN.md §1).
pub const PROXY_PORT: u16 = 7700;
/// The port each agent listens on inside its container.
pub const AGENT_PORT: u16 = 7701;
/// How long a container may take to become ready before `start` gives up and says why.
const STARTUP: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// What to start: see [`Mesh::builder`].
#[derive(Debug, Clone)]
pub struct MeshBuilder {
    agents: usize,
    configs: Vec<WorkerSpec>,
    image: String,
    postgres_image: String,
    token: Option<String>,
}

/// A running mesh: Postgres, a proxy and agents, each its own container on a private
/// network, with the proxy's and agents' ports published on this host. Dropping it
/// removes the containers and the network.
#[derive(Debug)]
pub struct Mesh {
    // Fields drop in order: the agents first, the network last.
    agents: Vec<Container<'static, GenericImage>>,
    proxy: Container<'static, GenericImage>,
    postgres: Postgres,
    network: Network,
    proxy_address: String,
    agent_addresses: Vec<String>,
    token: Option<String>,
}

impl Mesh {
    /// One agent, no configs, the images `DAMREY_IMAGE` (else `damrey:local`) and
    /// `DAMREY_POSTGRES_IMAGE` (else `postgres:17`), no token.
    pub fn builder() -> MeshBuilder {
        MeshBuilder {
            agents: 1,
            configs: Vec::new(),
            image: docker::damrey_image(),
            postgres_image: docker::postgres_image(),
            token: None,
        }
    }

    /// The proxy's `127.0.0.1:port` on this host.
    pub fn proxy(&self) -> &str {
        &self.proxy_address
    }

    /// Agent `index`'s `127.0.0.1:port` on this host: attach workers here and call lines
    /// through it.
    ///
    /// # Panics
    /// There is no agent `index`.
    pub fn agent(&self, index: usize) -> &str {
        &self.agent_addresses[index]
    }

    /// How many agents run.
    pub fn agent_count(&self) -> usize {
        self.agent_addresses.len()
    }

    /// The token every part wants, when the mesh was started with one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The private network the containers share.
    pub fn network(&self) -> &str {
        self.network.name()
    }

    /// The containers' ids: Postgres, the proxy, then the agents in order (to stop,
    /// pause or kill one with the docker command line).
    pub fn container_ids(&self) -> Vec<String> {
        [self.postgres.container_id(), self.proxy.id()]
            .into_iter()
            .chain(self.agents.iter().map(|agent| agent.id()))
            .map(str::to_owned)
            .collect()
    }

    /// Registers `spec` with the proxy (`POST /worker/add`).
    ///
    /// # Errors
    /// The proxy refused it or could not be reached.
    pub async fn register(&self, spec: &WorkerSpec) -> Result<(), Error> {
        let body = serde_json::to_string(spec).expect("a worker spec serializes");
        let mut request = http_client()
            .post(format!("http://{}/worker/add", self.proxy_address))
            .insert_header(("content-type", "application/json"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send_body(body).await.map_err(|e| Error::Http {
            what: format!("registering {}", spec.name),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        if status == 201 {
            return Ok(());
        }
        let body = response.body().await.unwrap_or_default();
        Err(Error::Register {
            worker: spec.name.clone(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Puts `message` to `worker` through agent `agent` (`POST /call/{worker}`) and
    /// returns the line's terminal reply: `RESPONSE`, `ERROR`, `STOP` or `TIMEOUT`.
    ///
    /// # Errors
    /// The agent could not be reached, or answered something that is not a message.
    pub async fn call(
        &self,
        agent: usize,
        worker: &str,
        message: Message,
        timeout: Duration,
    ) -> Result<Message, Error> {
        let what = format!("calling {worker} through agent {agent}");
        let url = format!(
            "http://{}/call/{worker}?timeout_ms={}",
            self.agent(agent),
            timeout.as_millis()
        );
        let mut request = awc::Client::builder()
            .timeout(timeout + Duration::from_secs(5))
            .finish()
            .post(url)
            .insert_header(("content-type", "application/json"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let body = serde_json::to_string(&message).expect("a message serializes");
        let mut response = request.send_body(body).await.map_err(|e| Error::Http {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response.body().await.map_err(|e| Error::Http {
            what: what.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_slice(&body).map_err(|e| Error::Http {
            what,
            reason: format!(
                "status {status}, not a message ({e}): {}",
                String::from_utf8_lossy(&body)
            ),
        })
    }
}

impl MeshBuilder {
    /// How many agents to start (at least one).
    pub fn agents(mut self, agents: usize) -> Self {
        self.agents = agents.max(1);
        self
    }

    /// A worker config to register before the agents are waited for.
    pub fn config(mut self, spec: WorkerSpec) -> Self {
        self.configs.push(spec);
        self
    }

    /// Worker configs to register.
    pub fn configs(mut self, specs: impl IntoIterator<Item = WorkerSpec>) -> Self {
        self.configs.extend(specs);
        self
    }

    /// The Damrey image to run instead of `DAMREY_IMAGE` / `damrey:local`.
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// The Postgres image to run instead of `DAMREY_POSTGRES_IMAGE` / `postgres:17`.
    pub fn postgres_image(mut self, image: impl Into<String>) -> Self {
        self.postgres_image = image.into();
        self
    }

    /// A token every part then wants (`DAMREY_TOKEN`); [`Mesh`]'s calls send it.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Starts Postgres, the proxy and the agents, waits until the proxy is ready,
    /// registers the configs, and waits until every agent is ready (it has them).
    ///
    /// # Errors
    /// Docker is missing, an image is not on this machine, a container did not become
    /// ready (the error carries its last log lines), or a config was refused.
    pub async fn start(self) -> Result<Mesh, Error> {
        let configs = self.configs.clone();
        let mesh = actix_rt::task::spawn_blocking(move || self.run_containers())
            .await
            .map_err(|e| Error::Join(e.to_string()))??;
        wait_until_ready("the proxy", &mesh.proxy_address, mesh.proxy.id(), None).await?;
        for spec in &configs {
            mesh.register(spec).await?;
        }
        for (index, agent) in mesh.agents.iter().enumerate() {
            let what = format!("agent {index}");
            let wanted = Some(configs.len());
            wait_until_ready(&what, &mesh.agent_addresses[index], agent.id(), wanted).await?;
        }
        Ok(mesh)
    }

    /// Creates the network and runs the containers (blocking docker commands).
    fn run_containers(self) -> Result<Mesh, Error> {
        docker::require_image(
            &self.image,
            false,
            "build it: docker build -t damrey:local . (or scripts/offline-images without a registry)",
        )?;
        let prefix = format!(
            "damrey-mesh-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let network = Network::create(prefix.clone())?;
        let postgres = Postgres::start_on(Some(&network), &self.postgres_image)?;
        let proxy_name = format!("{prefix}-proxy");
        let mut proxy_env = vec![("DATABASE_URL".to_owned(), postgres.network_url())];
        proxy_env.extend(
            self.token
                .iter()
                .map(|t| ("DAMREY_TOKEN".to_owned(), t.clone())),
        );
        let proxy = self.run(
            &network,
            &proxy_name,
            PROXY_PORT,
            &proxy_env,
            vec![
                "damrey-proxy".into(),
                "-p".into(),
                PROXY_PORT.to_string(),
                "--host".into(),
                "0.0.0.0".into(),
            ],
        );
        let token_env: Vec<_> = self
            .token
            .iter()
            .map(|t| ("DAMREY_TOKEN".to_owned(), t.clone()))
            .collect();
        let agents: Vec<_> = (0..self.agents)
            .map(|index| {
                let name = format!("{prefix}-agent{index}");
                // Other agents reach it by its name on the network; workers on this host
                // attach through the published port.
                let args = vec![
                    "damrey-agent".into(),
                    "-p".into(),
                    AGENT_PORT.to_string(),
                    "-a".into(),
                    format!("{name}:{AGENT_PORT}"),
                    "-pr".into(),
                    format!("{proxy_name}:{PROXY_PORT}"),
                    "-r".into(),
                    "3".into(),
                    "--host".into(),
                    "0.0.0.0".into(),
                ];
                self.run(&network, &name, AGENT_PORT, &token_env, args)
            })
            .collect();
        Ok(Mesh {
            proxy_address: format!("127.0.0.1:{}", proxy.get_host_port_ipv4(PROXY_PORT)),
            agent_addresses: agents
                .iter()
                .map(|agent| format!("127.0.0.1:{}", agent.get_host_port_ipv4(AGENT_PORT)))
                .collect(),
            agents,
            proxy,
            postgres,
            network,
            token: self.token,
        })
    }

    /// Runs one Damrey container on `network` as `name`, `port` published.
    fn run(
        &self,
        network: &Network,
        name: &str,
        port: u16,
        env: &[(String, String)],
        args: Vec<String>,
    ) -> Container<'static, GenericImage> {
        let image = env
            .iter()
            .fold(docker::generic_image(&self.image), |image, (key, value)| {
                image.with_env_var(key, value)
            })
            .with_exposed_port(port);
        let container = cli().run(
            RunnableImage::from((image, args))
                .with_network(network.name())
                .with_container_name(name),
        );
        docker::reap_container_on_exit(container.id());
        container
    }
}

/// Waits until `GET http://address/readyz` answers 200 and, for an agent, says it has
/// all `configs` (an agent may be ready with the configs from before they were
/// registered; they reach it through the proxy's change feed).
async fn wait_until_ready(
    what: &str,
    address: &str,
    container: &str,
    configs: Option<usize>,
) -> Result<(), Error> {
    let started = Instant::now();
    let client = http_client();
    loop {
        let last = match client.get(format!("http://{address}/readyz")).send().await {
            Ok(mut response) if response.status().is_success() => {
                let body = response.body().await.unwrap_or_default();
                let ready: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                match configs {
                    None => return Ok(()),
                    Some(wanted) if ready["configs"].as_u64() == Some(wanted as u64) => {
                        return Ok(());
                    }
                    Some(wanted) => format!(
                        "/readyz answered {}, waiting for {wanted} configs",
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            Ok(response) => format!("/readyz answered {}", response.status()),
            Err(e) => format!("/readyz: {e}"),
        };
        if started.elapsed() > STARTUP {
            return Err(Error::NotReady {
                what: what.to_owned(),
                waited: STARTUP,
                last,
                logs: docker::logs_tail(container),
            });
        }
        actix_rt::time::sleep(POLL).await;
    }
}

/// A client for the proxy's and agents' REST calls (awc's client is per thread).
fn http_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish()
}
