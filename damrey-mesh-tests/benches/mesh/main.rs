//! The example line (entry => add => square, (a+b)^2) with every worker in its own
//! process, against NATS request/reply doing the same work through three service
//! processes and a local `nats-server`, in one run with one load generator.
//!
//! Interleaved rounds of: NATS; Damrey through a worker's outbox (the native client: this
//! bench attached to the agent as worker `client`); Damrey through the agent's HTTP entry
//! (`POST /call/entry`) — each at 64 and 256 in flight and at 1 (its p50), NATS and the
//! native client with a 64 KiB argument too — and `square` on a second agent. It prints
//! the medians of rounds 2..n (the first warms up): requests per second, p50, p99 and the
//! CPU time per request of every process of each system (`nats-server` and the three
//! services; the proxy, the agents and the worker processes), their ratios to NATS and
//! the goals of issue 16; whether a 1 MiB argument is carried; and the agent's memory
//! per outstanding request (the median of one agent of its own a round, `square` frozen
//! with SIGSTOP while they wait). Then, for context: the in-process line of
//! `damrey-actors` as the ceiling, where one request's time goes, the floor of one
//! request in flight (one bare HTTP round trip plus three bare WebSocket round trips to
//! another process, this bench binary run again as an echo server), and counting on
//! against off (on two fresh agents).
//!
//! Run it with `cargo bench -p damrey-mesh-tests --bench mesh` (it builds the release
//! binaries it starts); without `nats-server` on the `PATH` it says so and skips NATS.
//! `DAMREY_BENCH_SECONDS` (default 3, one run of one case), `DAMREY_BENCH_ROUNDS`
//! (default 3, at least 2) and `DAMREY_BENCH_OUTSTANDING` (default 10000, the requests
//! held for the memory figure) tune it.

/// The shared support under the one name this bench uses.
mod support {
    pub use damrey_mesh_tests::mesh::*;
    pub use damrey_mesh_tests::process::*;
}

#[path = "../raw_http.rs"]
mod raw_http;

mod nats;

use std::cell::RefCell;
use std::fmt::{self, Debug, Display};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::LocalBoxFuture;
use futures_util::{SinkExt, StreamExt};

use damrey_actors::prelude::{Actor, Context, Handler};
use damrey_actors::{Config, Message, Router, Worker, WorkerHandle, WorkerSpec};
use damrey_example::{Add, Entry, Square};
use damrey_mesh_tests::load::{Figures, drive, env_or, median, median_run, report};
use nats::Nats;
use raw_http::{connect, exchange};
use serde_json::json;
use support::{Agent, AgentOptions, Process, Proxy, TempDir};

/// The example line's workers, each started from its binary: `(worker, binary)`.
const LINE: &[(&str, &str)] = &[("entry", "entry"), ("add", "add"), ("square", "square")];

/// The loads of the comparison, as the goals name them.
const IN_FLIGHT: [usize; 2] = [64, 256];
/// The large argument of the comparison.
const LARGE: usize = 64 * 1024;
/// The argument every path must carry correctly.
const HUGE: usize = 1024 * 1024;
/// The deadline of every request the bench makes.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The median figures (by rate) of `rounds` runs.
async fn measure<F, Fut>(
    rounds: usize,
    in_flight: usize,
    seconds: f64,
    expected: &Message,
    call: F,
) -> Figures
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = Message> + 'static,
{
    drive(in_flight, seconds / 3.0, expected, call.clone()).await; // warm up
    let mut runs = Vec::new();
    for _ in 0..rounds {
        runs.push(drive(in_flight, seconds, expected, call.clone()).await);
    }
    median_run(runs)
}

/// A caller that puts `message` to `worker` through the agent's HTTP entry. Each caller
/// keeps one HTTP/1.1 keep-alive connection and speaks just enough HTTP, so that the
/// load generator costs little of the two cores the mesh runs on.
fn through(
    agent: &Agent,
    worker: &str,
    message: &Message,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Message>>> + Clone + use<> {
    post_to(
        &agent.address,
        &format!("/call/{worker}?timeout_ms=5000"),
        message,
    )
}

/// A caller that posts `message` to `path` at `address`, as [`through`] does.
fn post_to(
    address: &str,
    path: &str,
    message: &Message,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Message>>> + Clone + use<> {
    let address = address.to_owned();
    let body = message.to_json();
    let request: Rc<[u8]> = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into();
    move || {
        let (address, request) = (address.clone(), request.clone());
        Box::pin(async move {
            let mut stream = take_connection(&address).await;
            let reply = match exchange(&mut stream, &request).await {
                Some(reply) => reply,
                // An idle connection the agent closed (keep-alive timeout): a fresh one.
                None => {
                    stream = connect(&address).await;
                    exchange(&mut stream, &request)
                        .await
                        .expect("a fresh connection answers")
                }
            };
            give_back(&address, stream);
            reply
        })
    }
}

thread_local! {
    /// Idle keep-alive connections, by agent address.
    static CONNECTION: RefCell<Vec<(String, tokio::net::TcpStream)>> = const { RefCell::new(Vec::new()) };
}

async fn take_connection(address: &str) -> tokio::net::TcpStream {
    let idle = CONNECTION.with(|pool| {
        let mut pool = pool.borrow_mut();
        let at = pool.iter().position(|(a, _)| a == address)?;
        Some(pool.swap_remove(at).1)
    });
    match idle {
        Some(stream) => stream,
        None => connect(address).await,
    }
}

fn give_back(address: &str, stream: tokio::net::TcpStream) {
    CONNECTION.with(|pool| pool.borrow_mut().push((address.to_owned(), stream)));
}

fn forty_nine() -> Message {
    Message::response("sqsum", ["49"])
}

/// Set in the echo server's environment: this bench binary is the echo server.
const ECHO: &str = "DAMREY_BENCH_ECHO";

/// The echo server: `POST /echo` answers its body, `GET /ws` echoes text frames,
/// `GET /healthz` says it is up; one thread, as the agent runs. It binds a port of the
/// OS's choosing and says which on stderr, as the proxy and the agent do.
fn serve_echo() -> std::io::Result<()> {
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/echo",
                    web::post().to(|body: web::Bytes| async move { HttpResponse::Ok().body(body) }),
                )
                .route("/ws", web::get().to(echo_socket))
                .route("/healthz", web::get().to(HttpResponse::Ok))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))?;
        for address in server.addrs() {
            eprintln!("echo listening port={}", address.port());
        }
        server.run().await
    })
}

async fn echo_socket(
    request: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, mut session, mut stream) = actix_ws::handle(&request, body)?;
    actix_rt::spawn(async move {
        while let Some(Ok(actix_ws::Message::Text(text))) = stream.next().await {
            if session.text(text).await.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

/// The floor of a 3-step line at one request in flight: one bare HTTP round trip and
/// three bare WebSocket round trips to another process.
async fn floor(rounds: usize, seconds: f64) -> (Figures, Figures) {
    let mut command = Command::new(std::env::current_exe().expect("this bench"));
    command.env(ECHO, "1");
    let mut echo = Process::spawn("echo", &mut command);
    let port = echo.bound_port().await;
    let address = format!("127.0.0.1:{port}");
    support::wait_healthy(&address).await;
    let message = Message::request("sqsum", ["3", "4"]);
    let http = measure(
        rounds,
        1,
        seconds,
        &message,
        post_to(&address, "/echo", &message),
    )
    .await;
    let (_, socket) = awc::Client::new()
        .ws(format!("ws://{address}/ws"))
        .connect()
        .await
        .expect("the echo socket");
    let socket = Rc::new(tokio::sync::Mutex::new(socket));
    let text = message.to_json();
    let ws = measure(rounds, 1, seconds, &message, move || {
        let (socket, text) = (socket.clone(), text.clone());
        async move {
            let mut socket = socket.lock().await;
            socket
                .send(awc::ws::Message::Text(text.into()))
                .await
                .expect("sent");
            match socket.next().await {
                Some(Ok(awc::ws::Frame::Text(bytes))) => {
                    Message::from_json_slice(&bytes).expect("a message")
                }
                other => panic!("the echo answered {other:?}"),
            }
        }
    })
    .await;
    (http, ws)
}

/// A way to run the line: a row of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// NATS request/reply through three service processes.
    Nats,
    /// A worker's outbox: this bench, attached to agent one as worker `client`.
    Native,
    /// The HTTP entry of agent one, which has all three workers.
    Http,
    /// The HTTP entry of agent two, which has `entry` and `add`; `square` is on agent one.
    SecondAgent,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Nats => "NATS request/reply",
            Path::Native => "Damrey, worker outbox (native client)",
            Path::Http => "Damrey, agent HTTP /call",
            Path::SecondAgent => "Damrey HTTP, square on a second agent",
        }
    }
}

/// How a case loads its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// `sqsum 3 4`, this many requests in flight.
    InFlight(usize),
    /// `sqsum` with a 64 KiB first argument (`3` padded with spaces) and `4`, 64 in flight.
    Large,
}

impl Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::InFlight(n) => write!(f, "{n} in flight"),
            Load::Large => write!(f, "64 KiB argument, {} in flight", IN_FLIGHT[0]),
        }
    }
}

/// One cell of the comparison: a path under a load, run once per round.
struct Case {
    path: Path,
    load: Load,
    run: Box<dyn Fn(f64) -> LocalBoxFuture<'static, Figures>>,
}

impl Case {
    /// Drives `call` under `load` for the seconds of a round; every reply must be `expected`.
    fn new<F, Fut, R>(path: Path, load: Load, expected: R, call: F) -> Case
    where
        F: Fn() -> Fut + Clone + 'static,
        Fut: Future<Output = R> + 'static,
        R: PartialEq + Debug + Clone + 'static,
    {
        let in_flight = match load {
            Load::InFlight(n) => n,
            Load::Large => IN_FLIGHT[0],
        };
        Case {
            path,
            load,
            run: Box::new(move |seconds| {
                let (expected, call) = (expected.clone(), call.clone());
                Box::pin(async move { drive(in_flight, seconds, &expected, call).await })
            }),
        }
    }
}

/// A case's medians over the rounds after the first.
#[derive(Debug, Clone, Copy)]
struct Medians {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// CPU time of all the processes of the case's system, per reply.
    cpu_us: f64,
}

/// The CPU time `processes` have used so far.
fn cpu_time(processes: &[&Process]) -> Duration {
    processes.iter().map(|process| process.cpu_time()).sum()
}

/// Runs every case once a round, in turn, for `rounds` rounds, reading the CPU time of
/// its system's processes (`nats` or `damrey`) around each run; each case's medians of
/// rounds 2..n (the first warms up).
async fn compare(
    cases: &[Case],
    rounds: usize,
    seconds: f64,
    nats: &[&Process],
    damrey: &[&Process],
) -> Vec<Medians> {
    let mut samples: Vec<Vec<Medians>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        for (case, samples) in cases.iter().zip(&mut samples) {
            let processes = if case.path == Path::Nats {
                nats
            } else {
                damrey
            };
            let before = cpu_time(processes);
            let figures = (case.run)(seconds).await;
            let cpu = cpu_time(processes) - before;
            if round > 1 {
                samples.push(Medians {
                    rate: figures.rate,
                    p50_us: figures.p50.as_secs_f64() * 1e6,
                    p99_us: figures.p99.as_secs_f64() * 1e6,
                    cpu_us: cpu.as_secs_f64() * 1e6 / figures.replies as f64,
                });
            }
        }
        println!("round {round} of {rounds} done");
    }
    samples
        .iter()
        .map(|runs| {
            let of = |field: fn(&Medians) -> f64| {
                median(&mut runs.iter().map(field).collect::<Vec<_>>())
            };
            Medians {
                rate: of(|m| m.rate),
                p50_us: of(|m| m.p50_us),
                p99_us: of(|m| m.p99_us),
                cpu_us: of(|m| m.cpu_us),
            }
        })
        .collect()
}

/// The bench's own worker, `client`, which only sends requests: no line leads to it.
struct Caller;

impl Actor for Caller {
    type Context = Context<Self>;
}

impl Handler<Message> for Caller {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        Message::error(msg.kind, "the bench's client takes no steps")
    }
}

/// A caller that puts `message` to `entry` through `client`'s outbox (its link to the
/// agent), as the example's front door does.
fn outbox(
    client: &WorkerHandle,
    message: &Message,
) -> impl Fn() -> LocalBoxFuture<'static, Message> + Clone + use<> {
    let (client, message) = (client.clone(), message.clone());
    move || {
        let (client, message) = (client.clone(), message.clone());
        Box::pin(async move {
            client
                .request_at("entry", message, CALL_TIMEOUT)
                .await
                .message
        })
    }
}

/// `3` padded with spaces to `size` bytes: an argument the line reads as 3.
fn padded_three(size: usize) -> String {
    let mut three = " ".repeat(size - 1);
    three.push('3');
    three
}

/// "pass", or "FAIL" and the start of what came instead.
fn verdict(passed: bool, seen: impl Display) -> String {
    if passed {
        return "pass".to_owned();
    }
    let seen = seen.to_string();
    let cut: String = seen.chars().take(100).collect();
    format!("FAIL ({cut})")
}

/// Whether a 1 MiB argument crosses each path and the line answers 49, printed per
/// path; whether both of Damrey's did.
async fn check_huge(nats: Option<&Nats>, agent: &Agent, client: &WorkerHandle) -> bool {
    let huge = Message::request("sqsum", [padded_three(HUGE), "4".to_owned()]);
    let native = client
        .request_at("entry", huge.clone(), Duration::from_secs(30))
        .await
        .message;
    let native_passed = native == forty_nine();
    println!(
        "1 MiB argument, native:      {}",
        verdict(native_passed, &native)
    );
    let (status, body) = agent.call_raw("entry", huge.to_json(), 30_000).await;
    let http_passed =
        status == 200 && Message::from_json_slice(&body).is_ok_and(|reply| reply == forty_nine());
    println!(
        "1 MiB argument, HTTP /call:  {}",
        verdict(
            http_passed,
            format_args!("status {status}: {}", String::from_utf8_lossy(&body))
        )
    );
    if let Some(nats) = nats {
        let reply = nats
            .request(Bytes::from(format!("{} 4", padded_three(HUGE))))
            .await;
        println!(
            "1 MiB argument, NATS:        {}",
            verdict(
                reply.as_deref() == Ok(b"49".as_slice()),
                format_args!("{reply:?}")
            )
        );
    }
    native_passed && http_passed
}

/// The agent's memory per outstanding request, in KiB, measured on an agent of its own
/// (one that carried large arguments keeps their memory for reuse, which would hide
/// it): `count` requests put through a native client while `square` is frozen
/// (SIGSTOP), the agent's RSS read after a warm-up and once they all wait on `square`;
/// then `square` goes on (SIGCONT) and every reply must be 49.
async fn memory_per_outstanding(proxy: &Proxy, count: usize) -> f64 {
    // Pinged every 10 s rather than every second, the agent keeps a frozen `square`
    // attached for 30 s, time enough to measure the requests held for it.
    let agent = Agent::ready_with(
        proxy,
        AgentOptions {
            env: vec![("DAMREY_PING_MS".to_owned(), "10000".to_owned())],
            ..AgentOptions::default()
        },
    )
    .await;
    let workers = agent.start_workers(LINE).await;
    let client = Worker::new(Config::named("client"))
        .agent(agent.address.clone())
        .start(|| Caller)
        .await
        .expect("the bench attaches as worker client");
    agent.wait_instances(4).await;
    let square = &workers[2];
    // Warm: what every request needs is allocated before the first reading.
    drive(
        IN_FLIGHT[0],
        0.5,
        &forty_nine(),
        outbox(&client, &Message::request("sqsum", ["3", "4"])),
    )
    .await;
    let before = agent.process.rss_kib();
    square.signal("STOP");
    let replies: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            actix_rt::spawn(async move {
                let sqsum = Message::request("sqsum", ["3", "4"]);
                client
                    .request_at("entry", sqsum, Duration::from_secs(60))
                    .await
                    .message
            })
        })
        .collect();
    agent.wait_in_flight(count as u64).await;
    let during = agent.process.rss_kib();
    square.signal("CONT");
    for reply in replies {
        assert_eq!(
            reply.await.expect("a request's task"),
            forty_nine(),
            "an outstanding request's reply"
        );
    }
    println!(
        "agent RSS: {:.1} MiB before, {:.1} MiB with {count} requests outstanding",
        before as f64 / 1024.0,
        during as f64 / 1024.0
    );
    // The client's link would go on reconnecting to the stopped agent, beside what
    // this process measures next.
    client.stop().await;
    drop(workers);
    drop(agent);
    during.saturating_sub(before) as f64 / count as f64
}

/// `value` and its ratio to `base`, when there is one.
fn with_ratio(value: f64, base: Option<f64>, decimals: usize) -> String {
    match base {
        Some(base) => format!("{value:.decimals$} ({:.2}×)", value / base),
        None => format!("{value:.decimals$}"),
    }
}

/// The bound of a goal of issue 16.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// One goal of issue 16: what was measured (none without NATS) against its bound.
fn goal(what: &str, measured: Option<f64>, unit: &str, bound: Bound) {
    let (text, limit) = match bound {
        Bound::AtLeast(limit) => ("≥", limit),
        Bound::AtMost(limit) => ("≤", limit),
    };
    let (measured, state) = match measured {
        Some(value) => {
            let met = match bound {
                Bound::AtLeast(limit) => value >= limit,
                Bound::AtMost(limit) => value <= limit,
            };
            (
                format!("{value:.2}{unit}"),
                if met { "met" } else { "not met" },
            )
        }
        None => ("n/a".to_owned(), "no NATS"),
    };
    let bound = format!("{text} {limit}{unit}");
    println!("{what:<52} {measured:>10}   goal {bound:<9} {state}");
}

fn main() {
    if std::env::var_os(ECHO).is_some() {
        serve_echo().expect("the echo server");
        return;
    }
    if let Ok(service) = std::env::var(nats::SERVICE) {
        nats::serve(&service);
        return;
    }
    let seconds = env_or("DAMREY_BENCH_SECONDS", 3.0);
    let rounds = (env_or("DAMREY_BENCH_ROUNDS", 3.0) as usize).max(2);
    let outstanding = env_or("DAMREY_BENCH_OUTSTANDING", 10_000.0) as usize;
    actix_rt::System::new().block_on(async move {
        println!(
            "{rounds} interleaved rounds of {seconds} s per case, medians of rounds 2..{rounds}; every reply checked\n"
        );
        let nats = if nats::server_installed() {
            Some(Nats::start().await)
        } else {
            println!(
                "NOTE: nats-server is not on the PATH, so NATS is skipped and no ratio to it is \
                 printed (Debian: apt-get install nats-server)\n"
            );
            None
        };

        let dir = TempDir::new();
        let proxy = Proxy::start(&dir).await;
        for (name, next) in [("entry", "add"), ("add", "square"), ("square", "")] {
            proxy
                .add(json!({"name": name, "commands": [{"name": "sqsum", "worker": next}]}))
                .await;
        }
        proxy.add(json!({"name": "client", "commands": []})).await;
        let one = Agent::ready(&proxy).await;
        let one_workers = one
            .start_workers(LINE)
            .await;
        let client = Worker::new(Config::named("client"))
            .agent(one.address.clone())
            .start(|| Caller)
            .await
            .expect("the bench attaches as worker client");
        one.wait_instances(4).await;
        let two = Agent::ready(&proxy).await;
        let two_workers = two
            .start_workers(&[("entry", "entry"), ("add", "add")])
            .await;
        let sqsum = Message::request("sqsum", ["3", "4"]);
        // Agent two learns from the placement feed that `square` is on agent one.
        two.call_until_ok("entry", &sqsum).await;

        let huge_carried = check_huge(nats.as_ref(), &one, &client).await;
        println!();

        let large = Message::request("sqsum", [padded_three(LARGE), "4".to_owned()]);
        let nats_49 = Bytes::from_static(b"49");
        let mut cases = Vec::new();
        for load in [IN_FLIGHT[0], IN_FLIGHT[1], 1].map(Load::InFlight) {
            if let Some(nats) = &nats {
                let call = nats.caller(Bytes::from_static(b"3 4"));
                cases.push(Case::new(Path::Nats, load, nats_49.clone(), call));
            }
            let native = outbox(&client, &sqsum);
            cases.push(Case::new(Path::Native, load, forty_nine(), native));
            let http = through(&one, "entry", &sqsum);
            cases.push(Case::new(Path::Http, load, forty_nine(), http));
            if load != Load::InFlight(IN_FLIGHT[1]) {
                let split = through(&two, "entry", &sqsum);
                cases.push(Case::new(Path::SecondAgent, load, forty_nine(), split));
            }
        }
        if let Some(nats) = &nats {
            let call = nats.caller(Bytes::from(format!("{} 4", padded_three(LARGE))));
            cases.push(Case::new(Path::Nats, Load::Large, nats_49.clone(), call));
        }
        let native = outbox(&client, &large);
        cases.push(Case::new(Path::Native, Load::Large, forty_nine(), native));

        let nats_processes = nats.as_ref().map(Nats::processes).unwrap_or_default();
        let damrey_processes: Vec<&Process> = [&proxy.process, &one.process, &two.process]
            .into_iter()
            .chain(&one_workers)
            .chain(&two_workers)
            .collect();
        let medians = compare(&cases, rounds, seconds, &nats_processes, &damrey_processes).await;
        let result = |path: Path, load: Load| {
            cases
                .iter()
                .position(|case| case.path == path && case.load == load)
                .map(|at| medians[at])
        };

        println!(
            "\n{:<68} {:>9} {:>9} {:>9} {:>10}",
            "", "req/s", "p50 µs", "p99 µs", "CPU µs/req"
        );
        for (case, m) in cases.iter().zip(&medians) {
            println!(
                "{:<68} {:>9.0} {:>9.0} {:>9.0} {:>10.1}",
                format!("{}, {}", case.path.label(), case.load),
                m.rate,
                m.p50_us,
                m.p99_us,
                m.cpu_us
            );
        }

        let [low, high] = IN_FLIGHT.map(Load::InFlight);
        let nats_of = |load| result(Path::Nats, load);
        println!(
            "\n{:<40} {:>18} {:>18} {:>20} {:>22}",
            "path (ratio to NATS)",
            format!("{} in flight", IN_FLIGHT[0]),
            format!("{} in flight", IN_FLIGHT[1]),
            "p50 µs, 1 in flight",
            format!("CPU µs/req at {}", IN_FLIGHT[0])
        );
        for path in [Path::Nats, Path::Native, Path::Http] {
            let cell = |load, of: fn(&Medians) -> f64, decimals| {
                result(path, load).map_or_else(String::new, |m| {
                    with_ratio(of(&m), nats_of(load).map(|n| of(&n)), decimals)
                })
            };
            println!(
                "{:<40} {:>18} {:>18} {:>20} {:>22}",
                path.label(),
                cell(low, |m| m.rate, 0),
                cell(high, |m| m.rate, 0),
                cell(Load::InFlight(1), |m| m.p50_us, 0),
                cell(low, |m| m.cpu_us, 1)
            );
        }
        let (one_agent, second) = (
            result(Path::Http, low).expect("measured"),
            result(Path::SecondAgent, low).expect("measured"),
        );
        println!(
            "{:<40} {:>18} {:>18} {:>20} {:>22}",
            "square on a second agent (to one agent)",
            with_ratio(second.rate, Some(one_agent.rate), 0),
            "",
            format!(
                "{:.0}",
                result(Path::SecondAgent, Load::InFlight(1)).expect("measured").p50_us
            ),
            with_ratio(second.cpu_us, Some(one_agent.cpu_us), 1)
        );
        let native_large = result(Path::Native, Load::Large).expect("measured");
        let nats_large = nats_of(Load::Large);
        println!(
            "{:<40} {:>18} (native; NATS {})",
            "64 KiB argument, req/s",
            with_ratio(native_large.rate, nats_large.map(|m| m.rate), 0),
            nats_large.map_or("n/a".to_owned(), |m| format!("{:.0}", m.rate))
        );

        println!();
        // The agent's RSS moves by some hundreds of bytes a request from one agent to the
        // next (the allocator's pages, the buffers of the frozen worker's link): the
        // median of one fresh agent a round.
        let mut per_request = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            per_request.push(memory_per_outstanding(&proxy, outstanding).await);
        }
        let per_request = median(&mut per_request);

        println!("\ngoals of issue 16, measured in this run:");
        let to_nats = |path, load, of: fn(&Medians) -> f64| {
            Some(of(&result(path, load)?) / of(&nats_of(load)?))
        };
        let rate = |m: &Medians| m.rate;
        let split = second.rate / one_agent.rate;
        let cpu = |m: &Medians| m.cpu_us;
        use Bound::{AtLeast, AtMost};
        goal("native / NATS, 64 in flight", to_nats(Path::Native, low, rate), "×", AtLeast(2.0));
        goal("HTTP /call / NATS, 64 in flight", to_nats(Path::Http, low, rate), "×", AtLeast(1.0));
        goal("HTTP /call / NATS, 256 in flight", to_nats(Path::Http, high, rate), "×", AtLeast(1.0));
        goal("64 KiB argument, native / NATS", to_nats(Path::Native, Load::Large, rate), "×", AtLeast(1.5));
        goal("square on a second agent / one agent (HTTP, 64)", Some(split), "×", AtLeast(0.9));
        goal("CPU per request, native / NATS (64 in flight)", to_nats(Path::Native, low, cpu), "×", AtMost(0.5));
        goal("agent memory per outstanding request", Some(per_request), " KiB", AtMost(1.0));
        println!(
            "{:<52} {:>10}   goal {:<9} {}",
            "1 MiB argument carried, native and HTTP /call",
            if huge_carried { "yes" } else { "no" },
            "yes",
            if huge_carried { "met" } else { "not met" }
        );

        println!("\nfor context, medians (by rate) of {rounds} rounds of {seconds} s:");
        let one_agent_serial = result(Path::Http, Load::InFlight(1)).expect("measured");
        context(&proxy, &one, rounds, seconds, one_agent, one_agent_serial).await;
    });
}

/// The figures that put the comparison in context: the in-process line as the ceiling,
/// where one request's time goes, the floor of one request in flight, and counting on
/// against off. `http` and `http_serial` are agent one's HTTP medians at 64 and 1 in flight.
async fn context(
    proxy: &Proxy,
    one: &Agent,
    rounds: usize,
    seconds: f64,
    http: Medians,
    http_serial: Medians,
) {
    let ceiling = {
        let router = Router::new([
            WorkerSpec::new("entry").command("sqsum", "add"),
            WorkerSpec::new("add").command("sqsum", "square"),
            WorkerSpec::new("square").command("sqsum", ""),
        ])
        .expect("valid specs");
        let worker = |name| Worker::new(Config::named(name)).attach(&router);
        worker("entry").start(|| Entry).await.expect("entry");
        worker("add").start(|| Add).await.expect("add");
        worker("square").start(|| Square).await.expect("square");
        let call = move || {
            let router = router.clone();
            async move {
                router
                    .request("entry", Message::request("sqsum", ["3", "4"]), CALL_TIMEOUT)
                    .await
            }
        };
        measure(rounds, IN_FLIGHT[0], seconds, &forty_nine(), call).await
    };
    report("in-process line (ceiling), 64 in flight", &ceiling);

    let sqsum = Message::request("sqsum", ["3", "4"]);
    let nobody = Message::error("sqsum", "no worker named \"nobody\" is configured");
    let entry_only = measure(rounds, 1, seconds, &nobody, through(one, "nobody", &sqsum)).await;
    report(
        "  where it goes: HTTP entry alone, 1 in flight",
        &entry_only,
    );
    let seven = Message::request("sqsum", ["7"]);
    let one_hop = measure(
        rounds,
        1,
        seconds,
        &forty_nine(),
        through(one, "square", &seven),
    )
    .await;
    report("  where it goes: one worker step, 1 in flight", &one_hop);
    let (bare_http, bare_ws) = floor(rounds, seconds).await;
    report("  floor: bare HTTP round trip", &bare_http);
    report("  floor: bare WebSocket round trip", &bare_ws);
    let floor_p50 = bare_http.p50 + 3 * bare_ws.p50;

    // Counting on against counting off, alternating rounds, on two fresh agents (agent
    // one has carried large arguments and held thousands of requests by now).
    let counted = Agent::ready(proxy).await;
    let counted_workers = counted.start_workers(LINE).await;
    let uncounted = Agent::ready_with(
        proxy,
        AgentOptions {
            stats: Some(false),
            ..AgentOptions::default()
        },
    )
    .await;
    let uncounted_workers = uncounted.start_workers(LINE).await;
    let in_flight = IN_FLIGHT[0];
    let (counted_call, uncounted_call) = (
        through(&counted, "entry", &sqsum),
        through(&uncounted, "entry", &sqsum),
    );
    drive(
        in_flight,
        seconds / 3.0,
        &forty_nine(),
        uncounted_call.clone(),
    )
    .await;
    drive(
        in_flight,
        seconds / 3.0,
        &forty_nine(),
        counted_call.clone(),
    )
    .await;
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        on.push(
            drive(in_flight, seconds, &forty_nine(), counted_call.clone())
                .await
                .rate,
        );
        off.push(
            drive(in_flight, seconds, &forty_nine(), uncounted_call.clone())
                .await
                .rate,
        );
    }
    let (on, off) = (median(&mut on), median(&mut off));
    println!(
        "{:<44} {on:>9.0} req/s",
        format!("counting on, {in_flight} in flight")
    );
    println!(
        "{:<44} {off:>9.0} req/s",
        format!("counting off, {in_flight} in flight")
    );
    drop((counted_workers, uncounted_workers));

    println!();
    println!(
        "one agent (HTTP) / in-process ceiling: {:>5.1}%",
        100.0 * http.rate / ceiling.rate
    );
    println!("counting on / counting off:     {:>5.1}%", 100.0 * on / off);
    println!(
        "one agent (HTTP), 1 in flight p50 / floor ({:.0} µs): {:.2}",
        floor_p50.as_secs_f64() * 1e6,
        http_serial.p50_us / (floor_p50.as_secs_f64() * 1e6)
    );
}
