//! Postgres in a container: the store of a mesh's proxy, or on its own for a test suite
//! that needs a database server and has only Docker.

use std::thread::sleep;
use std::time::{Duration, Instant};

use testcontainers::{Container, GenericImage, RunnableImage};

use crate::docker::{self, Network, cli};
use crate::error::Error;

/// The superuser, its password and the database the container is made with.
const USER: &str = "damrey";
const PASSWORD: &str = "damrey";
const DATABASE: &str = "damrey";
const PORT: u16 = 5432;
/// How long a fresh Postgres may take to initialise and start.
const STARTUP: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

/// A Postgres server in a container, removed when dropped (or when this process ends):
/// superuser `damrey`, password `damrey`, database `damrey`.
pub struct Postgres {
    container: Container<'static, GenericImage>,
    name: String,
    url: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("container", &self.name)
            .field("url", &self.url)
            .finish()
    }
}

impl Postgres {
    /// Starts Postgres from `DAMREY_POSTGRES_IMAGE` (else `postgres:17`) with its port
    /// published on the host, and waits until it takes connections over TCP. Blocks.
    ///
    /// # Errors
    /// Docker is missing, the image is not on this machine, or Postgres did not start.
    pub fn start() -> Result<Postgres, Error> {
        Postgres::start_on(None, &docker::postgres_image())
    }

    /// Starts it on `network` (reachable there by its container name) or on Docker's
    /// default network. Blocks.
    pub(crate) fn start_on(network: Option<&Network>, image: &str) -> Result<Postgres, Error> {
        docker::require_image(
            image,
            true,
            "pull it, or make the stand-in with scripts/offline-images and set \
             DAMREY_POSTGRES_IMAGE=damrey-standin/postgres:15",
        )?;
        let name = format!("damrey-postgres-{}", uuid::Uuid::new_v4().simple());
        let image = docker::generic_image(image)
            .with_env_var("POSTGRES_USER", USER)
            .with_env_var("POSTGRES_PASSWORD", PASSWORD)
            .with_env_var("POSTGRES_DB", DATABASE)
            .with_exposed_port(PORT);
        let mut runnable = RunnableImage::from(image).with_container_name(&name);
        if let Some(network) = network {
            runnable = runnable.with_network(network.name());
        }
        let container = cli().run(runnable);
        docker::reap_container_on_exit(container.id());
        let port = container.get_host_port_ipv4(PORT);
        let postgres = Postgres {
            url: format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"),
            container,
            name,
        };
        postgres.wait_until_ready()?;
        Ok(postgres)
    }

    /// Waits until Postgres answers on TCP inside its container: the official image and
    /// the stand-in both initialise on a Unix socket only, so this is the real server.
    fn wait_until_ready(&self) -> Result<(), Error> {
        let started = Instant::now();
        let id = self.container.id();
        loop {
            let check = [
                "exec",
                id,
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-d",
                DATABASE,
            ];
            let last = match docker::docker(&check) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > STARTUP {
                return Err(Error::NotReady {
                    what: format!("Postgres ({})", self.name),
                    waited: STARTUP,
                    last,
                    logs: docker::logs_tail(id),
                });
            }
            sleep(POLL);
        }
    }

    /// Its URL from this host: `postgres://damrey:damrey@127.0.0.1:PORT/damrey`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its container's id.
    pub fn container_id(&self) -> &str {
        self.container.id()
    }

    /// Its URL from the containers on its network, by its container name.
    pub fn network_url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@{}:{PORT}/{DATABASE}",
            self.name
        )
    }
}
