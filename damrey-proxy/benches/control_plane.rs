//! The control plane under N simulated agents: one release `damrey-proxy` process and
//! its store, and in this process N agents doing what a real agent does
//! (damrey-agent's `proxy_client`): a heartbeat every second carrying 10 instances'
//! counters and histograms, a long poll of the placement feed
//! (`GET /agents?after=V&wait_ms=25000&delta=true`, answered the changes since V, as
//! `follow_placement` waits) and a long poll of the config feed (`GET /workers/get?after=V`). Once a
//! second one agent changes its instance list (an attach or a detach somewhere in the
//! mesh), which moves the placement version and wakes every waiting agent.
//!
//! Reported per store and N, over the measured seconds after a warm-up: heartbeat
//! latency p50/p99, how late heartbeats left (p99 and worst: the simulator could not
//! keep its schedule because earlier requests were still out), the bytes of `/agents`
//! answers per second, how long a placement change took to reach the agents (p50/p99,
//! from the changing heartbeat's start to each agent's answer holding it), the cores
//! used by the proxy and by the Postgres backends serving its database (from
//! `/proc/PID/stat`; SQLite runs inside the proxy), and the simulator's own cores, so
//! that it is seen not to be the bottleneck. The last lines fit cost ~ N^k between the
//! smallest and largest N.
//!
//! `cargo bench -p damrey-proxy --bench control_plane` (SQLite, and Postgres when
//! `DATABASE_URL=postgres://...` names a server it can create databases on);
//! `CP_AGENTS=100,300,1000` and `CP_SECONDS=15` choose the sizes and the measured time,
//! `CP_STORES=sqlite,postgres` the stores;
//! `CP_PROXY_BIN=path` runs another build of the proxy (an older commit's, for a
//! before/after table made in one go; with `CP_PLACEMENT=whole` for a proxy from before
//! the placement's changes feed, whose agents took the whole list each second).
//! The machine's other load shows in the figures: compare runs made in one go.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use damrey_wire::report::{Heartbeat, InstanceCount, InstanceReport, Latency};
use sqlx::{Connection, Executor, Row};

const INSTANCES: usize = 10;
const WORKERS: usize = 10;
const WARM_UP: Duration = Duration::from_secs(4);
/// The longest the agents are given to be listed before measuring anyway.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    actix_web::rt::System::new().block_on(run());
}

/// What the simulated agents saw.
#[derive(Default)]
struct Record {
    measuring: bool,
    heartbeat_ms: Vec<f64>,
    late_ms: Vec<f64>,
    agents_bytes: u64,
    failures: u64,
    /// Placement changes: the version a changing heartbeat made, and when it left.
    changes: BTreeMap<i64, Instant>,
    /// Placement answers that moved an agent's version: from, to, and when.
    sightings: Vec<(i64, i64, Instant)>,
}

struct Figures {
    agents: usize,
    heartbeat_p50: f64,
    heartbeat_p99: f64,
    late_p99: f64,
    late_max: f64,
    agents_bytes_per_s: f64,
    propagation_p50: f64,
    propagation_p99: f64,
    proxy_cores: f64,
    postgres_cores: f64,
    simulator_cores: f64,
    failures: u64,
}

async fn run() {
    sqlx::any::install_default_drivers();
    let sizes: Vec<usize> = std::env::var("CP_AGENTS")
        .unwrap_or_else(|_| "100,300,1000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("CP_AGENTS is a list of numbers"))
        .collect();
    let seconds: u64 = std::env::var("CP_SECONDS")
        .ok()
        .map_or(15, |s| s.parse().expect("CP_SECONDS is a number"));
    println!(
        "control plane: {INSTANCES} instances per agent, heartbeat every 1 s, one placement \
         change a second, {WARM_UP:?} warm-up, {seconds} s measured"
    );
    let mut all = Vec::new();
    let stores = std::env::var("CP_STORES").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    for store in ["sqlite", "postgres"]
        .into_iter()
        .filter(|store| stores.split(',').any(|chosen| chosen.trim() == *store))
    {
        let mut rows = Vec::new();
        for &agents in &sizes {
            let Some(mut database) = Database::create(store).await else {
                println!("postgres: skipped (set DATABASE_URL=postgres://... to include it)");
                break;
            };
            let figures = measure(&mut database, agents, Duration::from_secs(seconds)).await;
            database.drop().await;
            print_row(store, &figures);
            rows.push(figures);
        }
        if rows.len() > 1 {
            print_fit(store, &rows);
        }
        all.push((store, rows));
    }
    println!(
        "\n| store | agents | heartbeat p50 / p99 ms | late p99 / max ms | /agents bytes/s | change reaches agents p50 / p99 ms | proxy cores | Postgres cores | simulator cores |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (store, rows) in &all {
        for f in rows {
            println!(
                "| {store} | {} | {:.1} / {:.1} | {:.0} / {:.0} | {:.0} | {:.0} / {:.0} | {:.2} | {:.2} | {:.2} |",
                f.agents,
                f.heartbeat_p50,
                f.heartbeat_p99,
                f.late_p99,
                f.late_max,
                f.agents_bytes_per_s,
                f.propagation_p50,
                f.propagation_p99,
                f.proxy_cores,
                f.postgres_cores,
                f.simulator_cores
            );
        }
    }
}

fn print_row(store: &str, f: &Figures) {
    println!(
        "{store:>8} {:>5} agents: heartbeat p50 {:.1} ms p99 {:.1} ms; late p99 {:.0} ms max {:.0} ms; \
         /agents {:.0} B/s; change reaches agents p50 {:.0} ms p99 {:.0} ms; proxy {:.2} cores, \
         postgres {:.2}, simulator {:.2}; {} failed requests",
        f.agents,
        f.heartbeat_p50,
        f.heartbeat_p99,
        f.late_p99,
        f.late_max,
        f.agents_bytes_per_s,
        f.propagation_p50,
        f.propagation_p99,
        f.proxy_cores,
        f.postgres_cores,
        f.simulator_cores,
        f.failures
    );
}

/// Cost ~ N^k between the smallest and the largest N: k = 1 is linear.
fn print_fit(store: &str, rows: &[Figures]) {
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let ratio = (last.agents as f64 / first.agents as f64).ln();
    let k = |a: f64, b: f64| {
        if a > 0.0 && b > 0.0 {
            format!("{:.2}", (b / a).ln() / ratio)
        } else {
            "n/a".to_owned()
        }
    };
    println!(
        "{store:>8} growth N^k from {} to {} agents: proxy+store cores k={}, /agents bytes k={}, heartbeat p99 k={}",
        first.agents,
        last.agents,
        k(
            first.proxy_cores + first.postgres_cores,
            last.proxy_cores + last.postgres_cores
        ),
        k(first.agents_bytes_per_s, last.agents_bytes_per_s),
        k(first.heartbeat_p99, last.heartbeat_p99),
    );
}

/// A fresh database for one run.
struct Database {
    url: String,
    /// Postgres: the admin connection and the database's name, to find its backends
    /// and to drop it.
    admin: Option<(sqlx::AnyConnection, String)>,
    dir: Option<std::path::PathBuf>,
}

impl Database {
    async fn create(store: &str) -> Option<Database> {
        if store == "sqlite" {
            let dir = std::env::temp_dir()
                .join(format!("damrey-cp-bench-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.join("cp.db").display());
            return Some(Database {
                url,
                admin: None,
                dir: Some(dir),
            });
        }
        let admin_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))?;
        let name = format!("damrey_cp_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .expect("DATABASE_URL reachable");
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create bench db");
        let (base, query) = admin_url
            .split_once('?')
            .map_or((admin_url.as_str(), None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(base, _)| base);
        let url = format!(
            "{base}/{name}{}",
            query.map(|q| format!("?{q}")).unwrap_or_default()
        );
        Some(Database {
            url,
            admin: Some((admin, name)),
            dir: None,
        })
    }

    /// The CPU ticks of the Postgres backends connected to this database.
    async fn backend_ticks(&mut self) -> u64 {
        let Some((admin, name)) = &mut self.admin else {
            return 0;
        };
        let rows = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(name.as_str())
            .fetch_all(admin)
            .await
            .expect("pg_stat_activity");
        rows.iter()
            .map(|row| row.get::<i32, _>("pid"))
            .map(|pid| ticks(&format!("/proc/{pid}/stat")))
            .sum()
    }

    async fn drop(self) {
        if let Some((mut admin, name)) = self.admin {
            let _ = admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                .await;
        }
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// utime + stime of a process, in clock ticks (0 when it is gone).
fn ticks(stat: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return 0;
    };
    // Fields after the command, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; here 0 is field 3.
    field(11) + field(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn measure(database: &mut Database, agents: usize, measured: Duration) -> Figures {
    let port = free_port();
    let dir = std::env::temp_dir();
    let proxy = Proxy(
        Command::new(
            std::env::var("CP_PROXY_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_damrey-proxy").to_owned()),
        )
        .args(["-p", &port.to_string(), "--host", "127.0.0.1"])
        .args(["--database-url", &database.url])
        .current_dir(&dir)
        .env_remove("DAMREY_TOKEN")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting damrey-proxy"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(40))
        .finish();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(client.get(format!("{base}/healthz")).send().await, Ok(r) if r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the proxy never became healthy");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    for w in 0..WORKERS {
        let body = format!(
            r#"{{"name":"w{w}","agent":"","mpu":"1","commands":[{{"name":"test","worker":"testWorker","mpu":"1"}}]}}"#
        );
        let status = client
            .post(format!("{base}/worker/add"))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .expect("worker add")
            .status();
        assert_eq!(status.as_u16(), 201, "adding worker w{w}");
    }

    let record = Rc::new(RefCell::new(Record::default()));
    let stop = Rc::new(Cell::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for agent in 0..agents {
        // Spread the agents' heartbeats over the second, as independent machines are.
        let phase = Duration::from_micros((agent as u64 * 1_000_000) / agents as u64);
        tasks.push(actix_web::rt::spawn(heartbeats(
            client.clone(),
            base.clone(),
            agent,
            agents,
            started + phase,
            record.clone(),
            stop.clone(),
        )));
        tasks.push(actix_web::rt::spawn(follow_placement(
            client.clone(),
            base.clone(),
            record.clone(),
            stop.clone(),
        )));
        tasks.push(actix_web::rt::spawn(follow_configs(
            client.clone(),
            base.clone(),
            stop.clone(),
        )));
    }
    // A cold start of N agents within one second is its own storm: measure the steady
    // state, from WARM_UP after every agent is listed.
    let joined = loop {
        if listed(&client, &base).await >= agents || Instant::now() > started + JOIN_LIMIT {
            break started.elapsed();
        }
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "  {agents} agents listed {:.1} s after they started",
        joined.as_secs_f64()
    );
    actix_web::rt::time::sleep(WARM_UP).await;
    let pid = proxy.0.id();
    let proxy_before = ticks(&format!("/proc/{pid}/stat"));
    let postgres_before = database.backend_ticks().await;
    let self_before = ticks("/proc/self/stat");
    let from = Instant::now();
    record.borrow_mut().measuring = true;
    actix_web::rt::time::sleep(measured).await;
    record.borrow_mut().measuring = false;
    let elapsed = from.elapsed().as_secs_f64();
    let proxy_after = ticks(&format!("/proc/{pid}/stat"));
    let postgres_after = database.backend_ticks().await;
    let self_after = ticks("/proc/self/stat");
    stop.set(true);
    drop(proxy);
    for task in tasks {
        task.abort();
    }
    let cores =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / TICKS_PER_SECOND / elapsed;
    let mut record = record.take();
    let mut propagation_ms: Vec<f64> = Vec::new();
    for (before, seen, at) in &record.sightings {
        propagation_ms.extend(
            record
                .changes
                .range(before + 1..=*seen)
                .map(|(_, left)| at.saturating_duration_since(*left).as_secs_f64() * 1e3),
        );
    }
    Figures {
        agents,
        heartbeat_p50: quantile(&mut record.heartbeat_ms, 0.5),
        heartbeat_p99: quantile(&mut record.heartbeat_ms, 0.99),
        late_p99: quantile(&mut record.late_ms, 0.99),
        late_max: quantile(&mut record.late_ms, 1.0),
        agents_bytes_per_s: record.agents_bytes as f64 / elapsed,
        propagation_p50: quantile(&mut propagation_ms, 0.5),
        propagation_p99: quantile(&mut propagation_ms, 0.99),
        proxy_cores: cores(proxy_before, proxy_after),
        postgres_cores: cores(postgres_before, postgres_after),
        simulator_cores: cores(self_before, self_after),
        failures: record.failures,
    }
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index]
}

fn report(worker: usize, instance: usize, tick: u64) -> InstanceReport {
    let mut counts = vec![0; 17];
    counts[4] = tick * 8;
    counts[6] = tick * 2;
    InstanceReport {
        worker: format!("w{worker}"),
        instance: instance as u64 + 1,
        received: tick * 10,
        responses: tick * 9,
        errors: tick,
        timeouts: 0,
        stops: 0,
        retries: 0,
        restarts: 0,
        in_flight: 1,
        latency: Latency {
            sum_us: tick * 4_000,
            counts,
        },
        ejections: 0,
        ejected_ms: 0,
    }
}

/// One agent's heartbeat loop: every second from `first`; the agent whose turn it is
/// this second changes its instance list (drops or takes back its last worker).
async fn heartbeats(
    client: awc::Client,
    base: String,
    agent: usize,
    agents: usize,
    first: Instant,
    record: Rc<RefCell<Record>>,
    stop: Rc<Cell<bool>>,
) {
    let address = format!("10.{}.{}.1:7701", agent / 250, agent % 250);
    let mut tick = 0u64;
    let mut detached = false;
    while !stop.get() {
        let scheduled = first + Duration::from_secs(tick);
        actix_web::rt::time::sleep_until(scheduled.into()).await;
        let left = Instant::now();
        // One change a second across the mesh, taken by the agents in turn.
        let changes = tick > 0 && tick as usize % agents == agent;
        if changes {
            detached = !detached;
        }
        let workers = if detached { INSTANCES - 1 } else { INSTANCES };
        let heartbeat = Heartbeat {
            agent: address.clone(),
            instances: (0..workers)
                .map(|w| InstanceCount {
                    worker: format!("w{}", w % WORKERS),
                    count: 1,
                })
                .collect(),
            stats: (0..workers).map(|w| report(w % WORKERS, w, tick)).collect(),
            routing: Default::default(),
            leaving: false,
        };
        let reply = client
            .post(format!("{base}/agents/heartbeat"))
            .send_json(&heartbeat)
            .await;
        let took = left.elapsed();
        match reply {
            Ok(mut reply) if reply.status().is_success() => {
                let _ = reply.body().await;
                let mut record = record.borrow_mut();
                if record.measuring {
                    record.heartbeat_ms.push(took.as_secs_f64() * 1e3);
                    record
                        .late_ms
                        .push(left.saturating_duration_since(scheduled).as_secs_f64() * 1e3);
                }
            }
            _ => record.borrow_mut().failures += 1,
        }
        if changes {
            // The version this change made: the next the placement feed shows.
            if let Ok(mut list) = client.get(format!("{base}/agents")).send().await
                && let Ok(body) = list.json::<serde_json::Value>().limit(64 << 20).await
                && let Some(version) = body["version"].as_i64()
            {
                record.borrow_mut().changes.entry(version).or_insert(left);
            }
        }
        tick += 1;
    }
}

/// One agent following the placement feed as `follow_placement` does.
async fn follow_placement(
    client: awc::Client,
    base: String,
    record: Rc<RefCell<Record>>,
    stop: Rc<Cell<bool>>,
) {
    let mut version: Option<i64> = None;
    while !stop.get() {
        let path = match version {
            Some(v) if whole_lists() => format!("{base}/agents?after={v}&wait_ms=1000"),
            Some(v) => format!("{base}/agents?after={v}&wait_ms=25000&delta=true"),
            None => format!("{base}/agents"),
        };
        let answer = match client.get(path).send().await {
            Ok(mut answer) => answer.body().limit(64 << 20).await.ok(),
            Err(_) => None,
        };
        let Some(body) = answer else {
            record.borrow_mut().failures += 1;
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let now = Instant::now();
        // A real agent parses its one list; the simulator, parsing N of them a second
        // on one core, reads only the version (the answer's first field).
        let seen = version_of(&body);
        let mut record = record.borrow_mut();
        if record.measuring {
            record.agents_bytes += body.len() as u64;
        }
        if let (Some(before), Some(seen)) = (version, seen)
            && seen > before
            && record.measuring
        {
            record.sightings.push((before, seen, now));
        }
        version = seen.or(version);
    }
}

/// How many agents the proxy lists now.
async fn listed(client: &awc::Client, base: &str) -> usize {
    let Ok(mut answer) = client.get(format!("{base}/agents")).send().await else {
        return 0;
    };
    let Ok(body) = answer.body().limit(64 << 20).await else {
        return 0;
    };
    body.windows(b"\"agent\":".len())
        .filter(|window| *window == b"\"agent\":")
        .count()
}

/// Whether the agents follow the placement as agents before the changes feed did
/// (`CP_PLACEMENT=whole`: the whole list at every wake-up, waits of one heartbeat
/// period, for a proxy from before it); by default they wait 25 s for the changes.
fn whole_lists() -> bool {
    std::env::var("CP_PLACEMENT").is_ok_and(|mode| mode == "whole")
}

/// The `version` at the start of a JSON answer, without parsing the rest.
fn version_of(body: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"version\":";
    let head = &body[..body.len().min(64)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: String = head[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .map(|b| char::from(*b))
        .collect();
    digits.parse().ok()
}

/// One agent following the config feed.
async fn follow_configs(client: awc::Client, base: String, stop: Rc<Cell<bool>>) {
    let mut version: Option<i64> = None;
    while !stop.get() {
        let path = match version {
            Some(v) => format!("{base}/workers/get?after={v}&wait_ms=25000"),
            None => format!("{base}/workers/get"),
        };
        match client.get(path).send().await {
            Ok(mut answer) => {
                if let Ok(body) = answer.json::<serde_json::Value>().limit(64 << 20).await {
                    version = body["version"].as_i64().or(version);
                }
            }
            Err(_) => actix_web::rt::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
