//! What a newcomer does: `damrey-example/run`, requests (good, bad, out of time) to the
//! front door, `damrey-example/stop`; then no process of the example is left and its
//! ports are free. The scripts run the binaries `cargo test --workspace` built, on
//! ports the OS hands out, with their state in a fresh directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example's scripts with this test's ports and state directory.
struct Example {
    ports: [u16; 3],
    state: TempDir,
}

impl Example {
    fn new() -> Example {
        let state = std::env::temp_dir().join(format!("damrey-newcomer-{}", std::process::id()));
        Example {
            ports: [free_port(), free_port(), free_port()],
            state: TempDir(state),
        }
    }

    fn script(&self, name: &str) -> Output {
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

    fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.state.0.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// One HTTP/1.1 exchange with the front door: the status and the body.
    fn http(&self, request: &str) -> (u16, String) {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.ports[2])).expect("the front door listens");
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer[9..12].parse().expect("a status line");
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Whatever happened, leave nothing running.
        let _ = self.script("stop");
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn run_answers_the_front_door_and_stop_leaves_nothing_behind() {
    let example = Example::new();

    let run = example.script("run");
    assert!(run.status.success(), "run failed: {}", text(&run));
    assert!(text(&run).contains(&format!(
        "curl 'localhost:{}/sqsum?a=3&b=4'",
        example.ports[2]
    )));
    let again = example.script("run");
    assert!(!again.status.success());
    assert!(
        text(&again).contains("the example is already running"),
        "{}",
        text(&again)
    );
    let pids = example.pids();
    assert_eq!(pids.len(), 5, "proxy, agent, add, square, entry");

    let sqsum = example.http("GET /sqsum?a=3&b=4 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(sqsum, (200, "49".to_owned()));
    let bad = example.http("GET /sqsum?a=3&b=x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(bad, (400, "\"x\" is not an integer".to_owned()));
    let body = r#"["REQUEST","sqsum","5","6"]"#;
    let json = example.http(&format!(
        "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    assert_eq!(json, (200, r#"["RESPONSE","sqsum","121"]"#.to_owned()));
    let late = example
        .http("GET /sqsum?a=1&b=2&timeout_ms=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    assert_eq!(late, (504, "TIMEOUT".to_owned()));

    let stop = example.script("stop");
    assert!(stop.status.success(), "stop failed: {}", text(&stop));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} is still running");
    }
    for port in example.ports {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
}
