//! Child processes: started with their output in a log file, signalled by pid, and
//! killed (SIGKILL, even when stopped) and reaped when dropped.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed and reaped when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`.
    ///
    /// # Errors
    /// The program cannot be started.
    pub fn spawn(name: &str, command: &mut Command, log: &Path) -> Result<Process, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("log {}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let child = command
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
        })
    }

    /// The pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `KILL`, `TERM`, `STOP` or `CONT`.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
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
