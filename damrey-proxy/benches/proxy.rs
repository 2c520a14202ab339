//! Requests per second for `GET /workers/get` with 100 workers stored, for
//! `POST /worker/chg`, for agents' heartbeats carrying the stats of 10 instances (an
//! agent sends one a second) and for `GET /workers/stats` over the samples they left
//! (one in flight), over loopback with 32 requests in flight otherwise, on SQLite and (when `DATABASE_URL` names
//! one) Postgres. Prints the median of several timed rounds.
//!
//! `cargo bench -p damrey-proxy` (set `DATABASE_URL=postgres://...` for Postgres too).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use damrey_proxy::{Application, Settings};
use damrey_wire::WorkerSpec;
use damrey_wire::report::{Heartbeat, InstanceCount, InstanceReport, Latency};
use futures_util::future::join_all;
use sqlx::{Connection, Executor};

const WORKERS: usize = 100;
const IN_FLIGHT: usize = 32;
const STATS_IN_FLIGHT: usize = 1;
const ROUNDS: usize = 5;
const ROUND: Duration = Duration::from_secs(2);

fn main() {
    actix_web::rt::System::new().block_on(run());
}

async fn run() {
    sqlx::any::install_default_drivers();
    println!(
        "damrey-proxy bench: {WORKERS} workers stored, {IN_FLIGHT} requests in flight, \
         median of {ROUNDS} rounds of {ROUND:?}"
    );
    let sqlite_dir = std::env::temp_dir().join(format!(
        "damrey-proxy-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&sqlite_dir).expect("temp dir");
    let sqlite_url = format!(
        "sqlite://{}?mode=rwc",
        sqlite_dir.join("bench.db").display()
    );
    bench_backend("sqlite", &sqlite_url).await;
    let _ = std::fs::remove_dir_all(&sqlite_dir);

    match std::env::var("DATABASE_URL") {
        Ok(admin_url) if admin_url.starts_with("postgres") => {
            let name = format!("damrey_proxy_bench_{}", uuid::Uuid::new_v4().simple());
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
            bench_backend("postgres", &url).await;
            let _ = admin
                .execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                .await;
        }
        _ => println!("postgres: skipped (set DATABASE_URL=postgres://... to include it)"),
    }
}

async fn bench_backend(label: &str, url: &str) {
    let settings = Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        database_url: Some(url.to_owned()),
        ..Settings::default()
    };
    let app = Application::build(settings)
        .await
        .expect("starting the proxy");
    let address = format!("http://127.0.0.1:{}", app.port());
    for i in 0..WORKERS {
        let spec = WorkerSpec::new(format!("worker-{i:03}"))
            .mpu(100)
            .command("test", "testWorker")
            .command_mpu(1);
        app.store()
            .add_worker(&spec)
            .await
            .expect("seeding workers");
    }
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();

    let get = measure(&client, IN_FLIGHT, |client, _| {
        let request = client.get(format!("{address}/workers/get"));
        async move { request.send().await.map(|r| r.status().as_u16()) }
    })
    .await;
    println!("{label:>8}  GET /workers/get   {get:>9.0} req/s");

    let chg = measure(&client, IN_FLIGHT, |client, n| {
        let body = format!(r#"{{"name":"worker-{:03}","agent":"","mpu":"{}","commands":[{{"name":"test","worker":"testWorker","mpu":"1"}}]}}"#, n % WORKERS, n % 1000);
        let request = client.post(format!("{address}/worker/chg")).insert_header(("content-type", "application/json"));
        async move { request.send_body(body).await.map(|r| r.status().as_u16()) }
    })
    .await;
    println!("{label:>8}  POST /worker/chg   {chg:>9.0} req/s");

    let heartbeat = measure(&client, IN_FLIGHT, |client, n| {
        let body = heartbeat(n % IN_FLIGHT, n);
        let request = client
            .post(format!("{address}/agents/heartbeat"))
            .insert_header(("content-type", "application/json"));
        async move { request.send_body(body).await.map(|r| r.status().as_u16()) }
    })
    .await;
    println!("{label:>8}  POST /agents/heartbeat, 10 instances {heartbeat:>9.0} req/s");

    // Read by dashboards and the alarm evaluator, one at a time.
    let stats = measure(&client, STATS_IN_FLIGHT, |client, _| {
        let request = client.get(format!("{address}/workers/stats"));
        async move {
            let mut response = request.send().await?;
            let _ = response.body().limit(16 << 20).await;
            Ok(response.status().as_u16())
        }
    })
    .await;
    println!("{label:>8}  GET /workers/stats, {STATS_IN_FLIGHT} in flight {stats:>9.0} req/s");
    handle.stop(true).await;
}

/// The heartbeat agent `agent` sends the `n`th time: 10 instances, counters growing.
fn heartbeat(agent: usize, n: usize) -> String {
    let count = n as u64;
    let stats = (0..10)
        .map(|i| InstanceReport {
            worker: format!("worker-{:03}", (agent * 10 + i) % WORKERS),
            instance: i as u64 + 1,
            received: count * 7,
            responses: count * 6,
            errors: count,
            timeouts: 0,
            stops: 0,
            retries: 0,
            restarts: 0,
            in_flight: 1,
            latency: Latency {
                sum_us: count * 700,
                counts: (0..17).map(|bucket| count * (bucket % 3)).collect(),
            },
            ejections: 0,
            ejected_ms: 0,
        })
        .collect::<Vec<_>>();
    let instances = stats
        .iter()
        .map(|report| InstanceCount {
            worker: report.worker.clone(),
            count: 1,
        })
        .collect();
    serde_json::to_string(&Heartbeat {
        agent: format!("10.0.{agent}.1:7701"),
        instances,
        stats,
        routing: Default::default(),
        leaving: false,
    })
    .expect("a heartbeat serializes")
}

/// Median requests/s over the rounds, after one warm-up round.
async fn measure<F, Fut>(client: &awc::Client, in_flight: usize, request: F) -> f64
where
    F: Fn(&awc::Client, usize) -> Fut,
    Fut: Future<Output = Result<u16, awc::error::SendRequestError>>,
{
    let mut rates = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        let done = Rc::new(Cell::new(0usize));
        let started = Instant::now();
        let loops = (0..in_flight).map(|lane| {
            let (done, request) = (done.clone(), &request);
            async move {
                let mut n = lane;
                while started.elapsed() < ROUND {
                    let status = request(client, n).await.expect("the proxy answers");
                    assert_eq!(status, 200, "unexpected status");
                    done.set(done.get() + 1);
                    n += in_flight;
                }
            }
        });
        join_all(loops).await;
        if round > 0 {
            rates.push(done.get() as f64 / started.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
