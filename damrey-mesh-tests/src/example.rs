//! The example's `run` and `stop` scripts driven from a test: the binaries built from
//! this tree ([`crate::binaries`]), ports the OS hands out (port 0, read back from the
//! `ports` file `run` writes), state in a fresh directory, and a `stop` when the test
//! ends, however it ends.

use std::process::{Command, Output};

use crate::binaries::{binary, workspace};
use crate::process::{TempDir, rust_log};

/// The example's scripts with this test's state directory; stopped on drop.
pub struct Example {
    state: TempDir,
}

/// The ports a running example bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The proxy's.
    pub proxy: u16,
    /// The agent's.
    pub agent: u16,
    /// The front door's (entry's HTTP).
    pub http: u16,
}

impl Example {
    /// An example whose state goes to a fresh directory named after `test`.
    pub fn new(test: &str) -> Example {
        let state = std::env::temp_dir().join(format!(
            "damrey-{test}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        Example {
            state: TempDir(state),
        }
    }

    /// Runs the script `name` (`run` or `stop`) and returns what it did.
    pub fn script(&self, name: &str) -> Output {
        let binaries = binary("damrey-proxy")
            .parent()
            .expect("binaries are in a directory")
            .to_owned();
        Command::new(workspace().join("damrey-example").join(name))
            .env("DAMREY_BIN_DIR", binaries)
            .env("DAMREY_RUN_DIR", &self.state.0)
            .env("DAMREY_PROXY_PORT", "0")
            .env("DAMREY_AGENT_PORT", "0")
            .env("DAMREY_HTTP_PORT", "0")
            .env("RUST_LOG", rust_log())
            .env_remove("DAMREY_TOKEN")
            .env_remove("DATABASE_URL")
            .output()
            .expect("the script runs")
    }

    /// The ports the last `run` bound, from the file it wrote.
    ///
    /// # Panics
    /// When `run` wrote no ports (it did not succeed).
    pub fn ports(&self) -> Ports {
        let written = std::fs::read_to_string(self.state.0.join("ports"))
            .unwrap_or_else(|e| panic!("run wrote no ports: {e}"));
        let port = |name: &str| {
            written
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} port in {written:?}"))
        };
        Ports {
            proxy: port("proxy"),
            agent: port("agent"),
            http: port("http"),
        }
    }

    /// The processes `run` recorded: pid and name.
    pub fn pids(&self) -> Vec<(u32, String)> {
        std::fs::read_to_string(self.state.0.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (pid, name) = line.split_once(' ')?;
                Some((pid.parse().ok()?, name.to_owned()))
            })
            .collect()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Whatever happened, leave nothing running.
        let _ = self.script("stop");
    }
}

/// A script's stdout and stderr, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
