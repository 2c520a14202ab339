//! A child process of a test: killed and reaped when its handle drops, its stderr read
//! by a thread that finds the port it bound (and shows the output with
//! `DAMREY_TEST_LOGS` set), its memory and CPU time read from `/proc`; and a directory
//! removed when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::wait::{PATIENCE, eventually};

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Process {
    name: String,
    child: Child,
    /// The port of the first "listening" line on the child's stderr.
    bound: Receiver<u16>,
}

impl Process {
    /// Starts `command`; its stdout is dropped, its stderr is scanned for the line
    /// saying which port it bound and shown only when `DAMREY_TEST_LOGS` is set.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(name: &str, command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tell, bound) = channel();
        let show = std::env::var_os("DAMREY_TEST_LOGS").is_some();
        std::thread::spawn(move || {
            let mut tell = Some(tell);
            // Read to the end, so that the child never blocks on a full pipe.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if show {
                    eprintln!("{line}");
                }
                if let Some(port) = tell.as_ref().and_then(|_| listening_port(&line)) {
                    let _ = tell.take().expect("checked above").send(port);
                }
            }
        });
        Process {
            name: name.to_owned(),
            child,
            bound,
        }
    }

    /// The port the process says it bound: the `port` field of its first log line
    /// saying `listening` (the proxy's and the agent's, docs/proxy.md and docs/agent.md).
    ///
    /// # Panics
    /// When the process exits or says nothing of the kind within [`PATIENCE`].
    pub async fn bound_port(&mut self) -> u16 {
        let port = self.bound_port_unless_exited().await;
        port.unwrap_or_else(|| panic!("{} exited before binding", self.name))
    }

    /// The port the process says it bound, as [`Process::bound_port`], or `None` when it
    /// exited first (a port taken, say).
    ///
    /// # Panics
    /// When the process runs on without saying it within [`PATIENCE`].
    pub async fn bound_port_unless_exited(&mut self) -> Option<u16> {
        let what = format!("{} says which port it bound", self.name);
        eventually(PATIENCE, &what, || {
            let mut port = self.bound.try_recv().ok().map(Some);
            if port.is_none() && !self.is_running() {
                // The reader passes the line on when it reads it; give it the time to
                // reach the end of the dead process's output.
                port = Some(self.bound.recv_timeout(Duration::from_secs(2)).ok());
            }
            std::future::ready(port)
        })
        .await
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`, `TERM`).
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Sends `SIGSTOP` and waits until every thread of the process is stopped, so that
    /// what the test does next happens while it is frozen.
    ///
    /// # Panics
    /// When `kill` fails, or the process is not stopped within [`PATIENCE`].
    pub async fn freeze(&self) {
        self.signal("STOP");
        let tasks = format!("/proc/{}/task", self.pid());
        let what = format!("{} stopped", self.name);
        eventually(PATIENCE, &what, || {
            let stopped = std::fs::read_dir(&tasks).ok().is_some_and(|threads| {
                threads.flatten().all(|thread| {
                    std::fs::read_to_string(thread.path().join("stat")).is_ok_and(|stat| {
                        // `pid (name) state ...`: the name may hold spaces, not `) `.
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            });
            std::future::ready(stopped.then_some(()))
        })
        .await;
    }

    /// Waits for the process to exit by itself; its exit code.
    ///
    /// # Panics
    /// When it is still running after [`PATIENCE`].
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let what = format!("{} exits", self.name);
        eventually(PATIENCE, &what, || {
            std::future::ready(match self.child.try_wait() {
                Ok(Some(status)) => Some(status.code()),
                _ => None,
            })
        })
        .await
    }

    /// The process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory in KiB (`VmRSS` of `/proc/PID/status`).
    ///
    /// # Panics
    /// When the status cannot be read.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("no status of {}: {e}", self.name));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in the status of {}", self.name))
    }

    /// The CPU time the process has used so far, in user and in system mode, over all
    /// its threads (`utime` + `stime` of `/proc/PID/stat`).
    ///
    /// # Panics
    /// When the stat cannot be read.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .unwrap_or_else(|e| panic!("no stat of {}: {e}", self.name));
        // The fields after the command's name, which is in parentheses and may hold spaces:
        // the state is field 3, utime field 14 and stime field 15.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: u64 = after_name
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|field| field.parse::<u64>().expect("utime and stime are counts"))
            .sum();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    /// Whether the process has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The unit of the CPU times in `/proc/PID/stat` (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The `port` of a log line saying `listening`, in the text (`port=7700`) or the JSON
/// (`"port":7700`) format, or of `nats-server`'s line (`Listening for client
/// connections on 127.0.0.1:4222`).
fn listening_port(line: &str) -> Option<u16> {
    if let Some((_, address)) = line.split_once("Listening for client connections on ") {
        return address.trim().rsplit_once(':')?.1.parse().ok();
    }
    if !line.contains("listening") {
        return None;
    }
    let (_, rest) = line
        .split_once(" port=")
        .or_else(|| line.split_once("\"port\":"))?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// The `RUST_LOG` for a proxy, an agent or the example's `entry`: the caller's filter (or
/// `info`) with the startup modules at `info`, so that the line saying which port the
/// process bound ([`Process::bound_port`], or the `run` script's) is written whatever
/// the caller's filter.
pub fn rust_log() -> String {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    format!("{base},damrey_proxy::startup=info,damrey_agent::startup=info,entry=info")
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system's temporary directory.
    ///
    /// # Panics
    /// When it cannot be made.
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("damrey-mesh-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn the_port_is_read_from_a_listening_line_in_any_format() {
        let text = "2026-01-01T00:00:00Z  INFO damrey_agent::startup: agent listening port=41234 https=false";
        let json = r#"{"fields":{"message":"damrey-proxy listening","port":7700,"https":false}}"#;

        assert_eq!(listening_port(text), Some(41234));
        assert_eq!(listening_port(json), Some(7700));
        assert_eq!(listening_port("worker attached port=1"), None);
        let nats = "[81] 2026/11/29 03:53:03.354957 [INF] Listening for client connections on 127.0.0.1:46739";
        assert_eq!(listening_port(nats), Some(46739));
    }
}
