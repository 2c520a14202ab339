//! The docker command line: its client, whether Docker is here, the images' names, the
//! private network of a mesh, and the reaper that removes what a test process leaves
//! behind.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use testcontainers::GenericImage;
use testcontainers::clients::Cli;

use crate::error::Error;

/// With this set to `1`, a test that needs Docker fails instead of skipping when Docker
/// is absent (`.ci/run` sets it).
pub const REQUIRE_DOCKER_VAR: &str = "DAMREY_REQUIRE_DOCKER";
/// The image every Damrey container runs, `damrey:local` when unset.
pub const DAMREY_IMAGE_VAR: &str = "DAMREY_IMAGE";
/// The Postgres image, `postgres:17` when unset (scripts/offline-images makes a
/// stand-in for machines without a registry).
pub const POSTGRES_IMAGE_VAR: &str = "DAMREY_POSTGRES_IMAGE";

/// The image every Damrey container runs: `DAMREY_IMAGE`, or `damrey:local`, the tag
/// docker-compose.yml and scripts/offline-images give it.
pub(crate) fn damrey_image() -> String {
    env_or(DAMREY_IMAGE_VAR, "damrey:local")
}

/// The Postgres image: `DAMREY_POSTGRES_IMAGE`, or `postgres:17` as in docker-compose.yml.
pub(crate) fn postgres_image() -> String {
    env_or(POSTGRES_IMAGE_VAR, "postgres:17")
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Whether a Docker Engine answers the docker command line here.
///
/// # Errors
/// The docker command is missing or the engine does not answer; the error says which.
pub fn docker_available() -> Result<(), Error> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map(drop)
}

/// For a test that needs Docker: `true` when Docker is here; `false`, after printing
/// why the test is skipped, when it is not and `DAMREY_REQUIRE_DOCKER` is not `1`.
///
/// # Panics
/// Docker is absent and `DAMREY_REQUIRE_DOCKER=1`.
pub fn docker_or_skip(test: &str) -> bool {
    match docker_available() {
        Ok(()) => true,
        Err(e) if std::env::var(REQUIRE_DOCKER_VAR).is_ok_and(|v| v == "1") => {
            panic!("{REQUIRE_DOCKER_VAR}=1 but Docker is not usable: {e}")
        }
        Err(e) => {
            println!("skipped {test}: Docker is not usable here ({e})");
            false
        }
    }
}

/// The docker command line client every container of this crate is started with; it
/// lives as long as the process, so containers can be kept in statics.
pub(crate) fn cli() -> &'static Cli {
    static CLI: OnceLock<Cli> = OnceLock::new();
    CLI.get_or_init(Cli::default)
}

/// Runs `docker ARGS` and returns its trimmed stdout.
pub(crate) fn docker(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::DockerMissing {
            args: args.join(" "),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(Error::Docker {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Checks that `image` is on this machine, pulling it first when `pull` says so (a
/// registry's image) and it is missing.
pub(crate) fn require_image(image: &str, pull: bool, hint: &'static str) -> Result<(), Error> {
    let present = || docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_ok();
    if present() || (pull && docker(&["pull", "-q", image]).is_ok() && present()) {
        Ok(())
    } else {
        Err(Error::ImageMissing {
            image: image.to_owned(),
            hint,
        })
    }
}

/// `image` (`name:tag`, the tag `latest` when left out) as testcontainers' image.
pub(crate) fn generic_image(image: &str) -> GenericImage {
    let (name, tag) = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    };
    GenericImage::new(name, tag)
}

/// The last lines of a container's logs, for an error that says why it is not ready.
pub(crate) fn logs_tail(container: &str) -> String {
    let output = Command::new("docker")
        .args(["logs", "--tail", "20", container])
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) => format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => format!("(no logs: {e})"),
    }
}

/// A user-defined network that is removed, with whatever is still attached to it, when
/// dropped or when this process ends.
#[derive(Debug)]
pub(crate) struct Network {
    name: String,
}

impl Network {
    /// Creates the network `name`.
    pub(crate) fn create(name: String) -> Result<Network, Error> {
        docker(&["network", "create", &name])?;
        reap_on_exit(&format!(
            "docker network inspect --format '{{{{range .Containers}}}}{{{{.Name}}}} {{{{end}}}}' {name} \
             | xargs -r docker rm -f -v; docker network rm {name}"
        ));
        Ok(Network { name })
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(&["network", "rm", &self.name]);
    }
}

/// Reaps container `id` when this process ends, if nothing removed it before.
pub(crate) fn reap_container_on_exit(id: &str) {
    reap_on_exit(&format!("docker rm -f -v {id}"));
}

/// Runs `cleanup` (a shell command; failing quietly when there is nothing left to
/// remove) once this process has ended, from a process of its own group, so that a
/// Ctrl-C to the tests does not take it down too.
fn reap_on_exit(cleanup: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {{ {cleanup}; }} >/dev/null 2>&1",
        pid = std::process::id()
    );
    // Without a reaper, Drop still removes everything; only an abort would leak.
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}
