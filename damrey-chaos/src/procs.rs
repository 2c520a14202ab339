//! Child processes: started with their output in a log file, signalled by pid, and
//! killed (SIGKILL, even when stopped) and reaped when dropped. A process in a
//! container of its own (container mode) is its `docker run` client: it is signalled
//! with `docker kill --signal`, frozen with `docker pause`, and killed with
//! `docker rm --force`.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A command to run on a host: the program itself, or the `docker run` that starts it
/// in a container of its own (named, to be signalled, paused and removed).
pub struct HostCommand {
    /// What to spawn; arguments appended to it reach the program.
    pub command: Command,
    /// The container that runs the program, in container mode.
    pub container: Option<String>,
}

impl HostCommand {
    /// `program`, run here.
    pub fn local(program: &Path) -> HostCommand {
        HostCommand {
            command: Command::new(program),
            container: None,
        }
    }
}

/// A child process killed and reaped when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
    /// The container it runs in, if any.
    container: Option<String>,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// The program cannot be started.
    pub fn spawn(name: &str, command: &mut HostCommand, log: &Path) -> Result<Process, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("log {}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .env_remove("DAMREY_TOKEN")
            .env_remove("DATABASE_URL")
            .env(
                "RUST_LOG",
                std::env::var("DAMREY_CHAOS_LOG").unwrap_or("warn".into()),
            )
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Process {
            name: name.to_owned(),
            child: Some(child),
            container: command.container.clone(),
        })
    }

    /// The pid (of the `docker run` client, for a process in a container).
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `KILL`, `TERM`, `STOP`, `CONT`, `USR1` or `USR2`.
    pub fn signal(&self, signal: &str) {
        if let Some(container) = &self.container {
            let args = match signal {
                "STOP" => vec!["pause", container],
                "CONT" => vec!["unpause", container],
                _ => vec!["kill", "--signal", signal, container],
            };
            let status = Command::new("docker")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|status| status.success()) {
                tracing::debug!(name = %self.name, signal, "signal not delivered");
            }
        } else if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .stderr(Stdio::null())
                .status();
            if !status.is_ok_and(|status| status.success()) {
                tracing::debug!(name = %self.name, signal, "signal not delivered");
            }
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits up to `limit` for the process to exit; kills it if it has not.
    /// Returns whether it exited by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if self.exited() {
                return true;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// Kills the process at once (even when stopped) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(container) = &self.container {
                // Also when paused; the client then exits with its container.
                let _ = Command::new("docker")
                    .args(["rm", "--force", container])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether process `pid` runs (a zombie does not).
pub fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The prefix of a run's directory; the checker's pid follows it.
pub const RUN_DIR_PREFIX: &str = "damrey-chaos-";

/// Kills the processes and removes the directories that runs of a checker that died
/// (killed before it could clean up) left behind: every process of a run works in
/// that run's directory, which is named after the checker's pid.
pub fn reap_leftovers() {
    let temp = std::env::temp_dir();
    let dead_run = |path: &Path| {
        let name = path.strip_prefix(&temp).ok()?.components().next()?;
        let name = name.as_os_str().to_str()?;
        let pid = name.strip_prefix(RUN_DIR_PREFIX)?.split('-').next()?;
        (!pid.is_empty() && !alive(pid)).then(|| temp.join(name))
    };
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if dead_run(&cwd).is_some()
            && let Some(pid) = entry.file_name().to_str()
        {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
        if let Some(dir) = dead_run(&entry.path()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
