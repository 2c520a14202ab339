//! What a newcomer does: `damrey-example/run`, requests (good, bad, out of time) to the
//! front door, `damrey-example/stop`; then no process of the example is left and its
//! ports are free. The scripts run the binaries built from this tree, on ports the OS
//! hands out, with their state in a fresh directory.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use damrey_mesh_tests::example::{Example, text};

/// One HTTP/1.1 exchange with the example's front door: the status and the body.
fn http(example: &Example, request: &str) -> (u16, String) {
    http_to(example.ports().http, request)
}

/// One HTTP/1.1 exchange with the service on `port`: the status and the body.
fn http_to(port: u16, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the service listens");
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
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
}

#[test]
fn run_answers_the_front_door_and_stop_leaves_nothing_behind() {
    let example = Example::new("newcomer");

    let run = example.script("run");
    assert!(run.status.success(), "run failed: {}", text(&run));
    assert!(text(&run).contains(&format!(
        "curl 'localhost:{}/sqsum?a=3&b=4'",
        example.ports().http
    )));
    let again = example.script("run");
    assert!(!again.status.success());
    assert!(
        text(&again).contains("the example is already running"),
        "{}",
        text(&again)
    );
    let pids: Vec<u32> = example.pids().into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(pids.len(), 5, "proxy, agent, add, square, entry");

    let sqsum = http(
        &example,
        "GET /sqsum?a=3&b=4 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(sqsum, (200, "49".to_owned()));
    let bad = http(
        &example,
        "GET /sqsum?a=3&b=x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(bad, (400, "\"x\" is not an integer".to_owned()));
    let body = r#"["REQUEST","sqsum","5","6"]"#;
    let json = http(
        &example,
        &format!(
            "POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(json, (200, r#"["RESPONSE","sqsum","121"]"#.to_owned()));
    let late = http(
        &example,
        "GET /sqsum?a=1&b=2&timeout_ms=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(late, (504, "TIMEOUT".to_owned()));

    let stop = example.script("stop");
    assert!(stop.status.success(), "stop failed: {}", text(&stop));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} is still running");
    }
    let ports = example.ports();
    for port in [ports.proxy, ports.agent, ports.http] {
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still taken"
        );
    }
}

#[test]
fn run_comes_up_again_after_the_user_registered_workers_of_their_own() {
    let example = Example::new("own-workers");
    let run = example.script("run");
    assert!(run.status.success(), "run failed: {}", text(&run));
    let body = r#"{"name":"upper","agent":"","mpu":"1","commands":[{"name":"shout","worker":""}]}"#;
    let (status, answer) = http_to(
        example.ports().proxy,
        &format!(
            "POST /worker/add HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status, 201, "{answer}");
    let stop = example.script("stop");
    assert!(stop.status.success(), "stop failed: {}", text(&stop));

    // The proxy's store now holds four configs; the agent is ready all the same.
    let again = example.script("run");

    assert!(again.status.success(), "run failed: {}", text(&again));
    let sqsum = http(
        &example,
        "GET /sqsum?a=1&b=2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(sqsum, (200, "9".to_owned()));
}
