//! The example's `run` and `stop` scripts driven from a test: the binaries `cargo test
//! --workspace` built, ports the OS hands out, state in a fresh directory, and a `stop`
//! when the test ends, however it ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory, removed at the end.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example's scripts with this test's ports and state directory; stopped on drop.
pub struct Example {
    /// The proxy's, the agent's and the front door's ports.
    pub ports: [u16; 3],
    state: TempDir,
}

impl Example {
    /// An example whose state goes to a directory named after `test`.
    pub fn new(test: &str) -> Example {
        let state = std::env::temp_dir().join(format!("damrey-{test}-{}", std::process::id()));
        Example {
            ports: [free_port(), free_port(), free_port()],
            state: TempDir(state),
        }
    }

    /// Runs the script `name` (`run` or `stop`) and returns what it did.
    pub fn script(&self, name: &str) -> Output {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR"));
        let binaries = Path::new(env!("CARGO_BIN_EXE_entry")).parent().unwrap();
        for needed in ["damrey-proxy", "damrey-agent", "add", "square"] {
            assert!(
                binaries.join(needed).exists(),
                "{needed} is missing: run `cargo test --workspace`, which builds every binary"
            );
        }
        Command::new(scripts.join(name))
            .env("DAMREY_BIN_DIR", binaries)
            .env("DAMREY_RUN_DIR", &self.state.0)
            .env("DAMREY_PROXY_PORT", self.ports[0].to_string())
            .env("DAMREY_AGENT_PORT", self.ports[1].to_string())
            .env("DAMREY_HTTP_PORT", self.ports[2].to_string())
            .env_remove("DAMREY_TOKEN")
            .env_remove("DATABASE_URL")
            .output()
            .expect("the script runs")
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
