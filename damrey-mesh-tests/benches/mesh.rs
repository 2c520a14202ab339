//! The 3-worker line (entry => add => square, (a+b)^2) with every worker in its own
//! process, driven through the agent's HTTP entry (`POST /call/entry`): requests per
//! second, p50 and p99 with 64 requests in flight, p50 with one in flight; then with
//! `square` on a second agent; and, in the same run, the in-process line of
//! `damrey-actors` as the ceiling, and the floor of one request in flight: one bare HTTP
//! round trip plus three bare WebSocket round trips to another process (this bench
//! binary run again as an echo server), the least a line through one agent can take.
//!
//! Run it with `cargo bench -p damrey-mesh-tests --bench mesh` (it builds the release
//! binaries it starts).
//! `DAMREY_BENCH_SECONDS` (default 3), `DAMREY_BENCH_ROUNDS` (default 3) and
//! `DAMREY_BENCH_IN_FLIGHT` (default 64, the through-agent loads) tune it.

/// The shared support under the one name this bench uses.
mod support {
    pub use damrey_mesh_tests::mesh::*;
    pub use damrey_mesh_tests::process::*;
}

use damrey_mesh_tests::load::{Figures, drive, env_or, report};

#[path = "raw_http.rs"]
mod raw_http;

use std::cell::RefCell;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::{SinkExt, StreamExt};

use damrey_actors::{Config, Message, Router, Worker, WorkerSpec};
use damrey_example::{Add, Entry, Square};
use raw_http::{connect, exchange};
use serde_json::json;
use support::{Agent, AgentOptions, Process, Proxy, TempDir};

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
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    runs.swap_remove(runs.len() / 2)
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

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
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

fn main() {
    if std::env::var_os(ECHO).is_some() {
        serve_echo().expect("the echo server");
        return;
    }
    let seconds = env_or("DAMREY_BENCH_SECONDS", 3.0);
    let rounds = env_or("DAMREY_BENCH_ROUNDS", 3.0) as usize;
    let in_flight = env_or("DAMREY_BENCH_IN_FLIGHT", 64.0) as usize;
    actix_rt::System::new().block_on(async move {
        println!("medians of {rounds} rounds of {seconds} s; (3+4)^2 checked on every reply\n");

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
                        .request(
                            "entry",
                            Message::request("sqsum", ["3", "4"]),
                            Duration::from_secs(5),
                        )
                        .await
                }
            };
            measure(rounds, 64, seconds, &forty_nine(), call).await
        };
        report("in-process line (ceiling), 64 in flight", &ceiling);

        let dir = TempDir::new();
        let proxy = Proxy::start(&dir).await;
        for (name, next) in [("entry", "add"), ("add", "square"), ("square", "")] {
            proxy
                .add(json!({"name": name, "commands": [{"name": "sqsum", "worker": next}]}))
                .await;
        }
        let one = Agent::start(&proxy).await;
        one.wait_configs(3).await;
        let _entry = one.worker("entry", "entry");
        let _add = one.worker("add", "add");
        let mut square = one.worker("square", "square");
        one.wait_instances(3).await;

        let sqsum = Message::request("sqsum", ["3", "4"]);
        let single = measure(
            rounds,
            in_flight,
            seconds,
            &forty_nine(),
            through(&one, "entry", &sqsum),
        )
        .await;
        report(&format!("one agent, {in_flight} in flight"), &single);
        let serial = measure(
            rounds,
            1,
            seconds,
            &forty_nine(),
            through(&one, "entry", &sqsum),
        )
        .await;
        report("one agent, 1 in flight", &serial);
        let nobody = Message::error("sqsum", "no worker named \"nobody\" is configured");
        let entry_only =
            measure(rounds, 1, seconds, &nobody, through(&one, "nobody", &sqsum)).await;
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
            through(&one, "square", &seven),
        )
        .await;
        report("  where it goes: one worker step, 1 in flight", &one_hop);
        let (bare_http, bare_ws) = floor(rounds, seconds).await;
        report("  floor: bare HTTP round trip", &bare_http);
        report("  floor: bare WebSocket round trip", &bare_ws);
        let floor_p50 = bare_http.p50 + 3 * bare_ws.p50;

        // Counting on (agent one) against counting off, alternating rounds.
        let uncounted = Agent::ready_with(
            &proxy,
            AgentOptions {
                stats: Some(false),
                ..AgentOptions::default()
            },
        )
        .await;
        let uncounted_workers = uncounted
            .start_workers(&[("entry", "entry"), ("add", "add"), ("square", "square")])
            .await;
        let (counted_call, uncounted_call) = (
            through(&one, "entry", &sqsum),
            through(&uncounted, "entry", &sqsum),
        );
        drive(
            in_flight,
            seconds / 3.0,
            &forty_nine(),
            uncounted_call.clone(),
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
        drop(uncounted_workers);
        drop(uncounted);

        let two = Agent::start(&proxy).await;
        two.wait_configs(3).await;
        let _square_there = two.worker("square", "square");
        two.wait_instances(1).await;
        square.kill();
        one.wait_instances(2).await;
        // Agent one learns where square lives from its next heartbeat.
        for _ in 0..100 {
            if one
                .call("entry", &Message::request("sqsum", ["3", "4"]), 2_000)
                .await
                .0
                == 200
            {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let split = measure(
            rounds,
            in_flight,
            seconds,
            &forty_nine(),
            through(&one, "entry", &sqsum),
        )
        .await;
        report(
            &format!("square on a second agent, {in_flight} in flight"),
            &split,
        );

        println!();
        println!(
            "one agent / in-process ceiling: {:>5.1}%",
            100.0 * single.rate / ceiling.rate
        );
        println!(
            "two agents / one agent:         {:>5.1}%",
            100.0 * split.rate / single.rate
        );
        println!("counting on / counting off:     {:>5.1}%", 100.0 * on / off);
        println!(
            "one agent, 1 in flight p50 / floor ({:.0} µs): {:.2}",
            floor_p50.as_secs_f64() * 1e6,
            serial.p50.as_secs_f64() / floor_p50.as_secs_f64()
        );
    });
}
