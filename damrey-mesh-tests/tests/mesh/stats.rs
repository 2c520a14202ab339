//! The agent's counting, read back from `GET /metrics`, and from the proxy's
//! `GET /workers/stats` for what no instance counts.

use actix::{Actor, Context, Handler};
use damrey_actors::{Config, Message, Worker};
use serde_json::json;

use crate::support::{Agent, PATIENCE, Proxy, TempDir, client, eventually, known_load, sqsum_mesh};

/// The sum over instances of `worker` of the sample `name` in Prometheus text.
fn sample(text: &str, name: &str, worker: &str) -> u64 {
    let prefix = format!("{name}{{worker=\"{worker}\",");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| {
            let value = line.rsplit(' ').next().expect("a value");
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("not a count: {line}"))
        })
        .sum()
}

#[actix_rt::test]
async fn the_counters_equal_a_known_load_exactly() {
    let dir = TempDir::new();
    let (_proxy, agent, _workers) = sqsum_mesh(&dir).await;

    known_load(&agent).await;
    let response = client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .expect("the agent answers");
    let content_type = response.headers().get("content-type").cloned();
    let text = metrics(&agent).await;

    assert!(content_type.is_some_and(|value| {
        value
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    }));
    assert!(
        !text.contains(",instance=\""),
        "no `instance` label, which Prometheus sets to the target: {text}"
    );
    let head = client()
        .head(format!("http://{}/metrics", agent.address))
        .insert_header(("x-request-id", "scrape-1"))
        .send()
        .await
        .expect("the agent answers HEAD");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()
            .get("x-request-id")
            .map(|id| id.to_str().unwrap()),
        Some("scrape-1"),
        "the request id is echoed"
    );
    let count = |name, worker| sample(&text, name, worker);
    assert_eq!(count("damrey_steps_received_total", "add"), 23, "{text}");
    assert_eq!(count("damrey_steps_processed_total", "add"), 23);
    assert_eq!(count("damrey_steps_responses_total", "add"), 20);
    assert_eq!(count("damrey_steps_errors_total", "add"), 3);
    assert_eq!(count("damrey_steps_timeouts_total", "add"), 0);
    assert_eq!(count("damrey_steps_received_total", "square"), 20);
    assert_eq!(count("damrey_steps_responses_total", "square"), 20);
    assert_eq!(count("damrey_steps_in_flight", "add"), 0);
    assert_eq!(count("damrey_step_duration_seconds_count", "add"), 23);
    assert_eq!(count("damrey_step_duration_seconds_count", "square"), 20);

    let stats: serde_json::Value = client()
        .get(format!("http://{}/stats", agent.address))
        .send()
        .await
        .expect("the agent answers")
        .json()
        .await
        .expect("json");
    let add = stats["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|instance| instance["worker"] == "add")
        .expect("add is listed");
    assert_eq!(
        (add["received"].as_u64(), add["errors"].as_u64()),
        (Some(23), Some(3))
    );
    assert!(add["p50_ms"].as_f64().is_some_and(|p50| p50 > 0.0));
    assert!(add["p99_ms"].as_f64() >= add["p50_ms"].as_f64());
}

/// Echoes, and panics when asked to; a worker that lives in the test process.
struct Fragile;

impl Actor for Fragile {
    type Context = Context<Self>;
}

impl Handler<Message> for Fragile {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        assert_ne!(
            msg.args.first().map(String::as_str),
            Some("panic"),
            "asked to panic"
        );
        Message::response(msg.kind, msg.args)
    }
}

async fn metrics(agent: &Agent) -> String {
    let mut response = client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .expect("the agent answers");
    String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
}

#[actix_rt::test]
async fn restarts_after_a_panic_are_reported_by_the_worker_and_counted() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [json!({"name": "fragile", "commands": [{"name": "echo"}]})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _fragile = Worker::new(Config::named("fragile"))
        .agent(agent.address.clone())
        .start(|| Fragile)
        .await
        .unwrap();
    agent.wait_instances(1).await;

    let (status, _) = agent
        .call("fragile", &Message::request("echo", ["panic"]), 2_000)
        .await;
    // A panic is the server's failure, not the request's: 500 (`damrey-fault: panic`).
    assert_eq!(status, 500);
    let (status, reply) = agent
        .call("fragile", &Message::request("echo", ["fine"]), 2_000)
        .await;
    assert_eq!((status, reply), (200, Message::response("echo", ["fine"])));

    eventually(PATIENCE, "fragile's restart counted", || async {
        let restarts = sample(
            &metrics(&agent).await,
            "damrey_instance_restarts_total",
            "fragile",
        );
        (restarts >= 1).then_some(())
    })
    .await;
    assert_eq!(
        sample(
            &metrics(&agent).await,
            "damrey_instance_restarts_total",
            "fragile"
        ),
        1
    );
    let text = metrics(&agent).await;
    assert_eq!(sample(&text, "damrey_steps_errors_total", "fragile"), 1);
    assert_eq!(sample(&text, "damrey_steps_responses_total", "fragile"), 1);
}

#[actix_rt::test]
async fn refused_steps_are_counted_by_reason_and_reach_the_proxy_as_errors() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        crate::support::sqsum_specs().into_iter().chain([json!(
            {"name": "idle", "commands": [{"name": "sqsum", "worker": ""}]}
        )]),
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _add = agent.worker("add", "add");
    agent.wait_instances(1).await;

    let refused = [
        agent
            .call("add", &Message::request("cube", ["2"]), 10_000)
            .await,
        agent
            .call("nobody", &Message::request("sqsum", ["2"]), 10_000)
            .await,
        agent
            .call("idle", &Message::request("sqsum", ["2"]), 10_000)
            .await,
    ];
    let text = metrics(&agent).await;

    assert_eq!(
        refused
            .iter()
            .map(|(status, _)| *status)
            .collect::<Vec<_>>(),
        [502, 502, 503],
        "configuration faults are 502, no live instance 503: {refused:?}"
    );
    let value = |line: &str| {
        text.lines()
            .find(|sample| sample.starts_with(line))
            .and_then(|sample| sample.rsplit(' ').next())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {line} in {text}"))
    };
    assert_eq!(value("damrey_route_rejected_type_total{worker=\"add\"}"), 1);
    assert_eq!(
        value("damrey_route_rejected_no_instance_total{worker=\"idle\"}"),
        1
    );
    assert_eq!(
        value("damrey_route_rejected_no_instance_total{worker=\"add\"}"),
        0
    );
    assert_eq!(value("damrey_route_rejected_not_configured_total"), 1);

    // The agent's heartbeat carries them to the proxy: the calls a worker with no live
    // instance could not take are its errors there, though no instance counted them.
    let workers = eventually(PATIENCE, "idle's refused call at the proxy", || async {
        let stats = proxy.get_json("/workers/stats").await;
        let workers: Vec<serde_json::Value> = stats["workers"].as_array()?.clone();
        let idle = workers.iter().find(|worker| worker["worker"] == "idle")?;
        (idle["routing"]["rejected_no_instance"] == 1).then_some(workers)
    })
    .await;
    let find = |name: &str| {
        workers
            .iter()
            .find(|worker| worker["worker"] == name)
            .unwrap_or_else(|| panic!("no {name} in {workers:?}"))
    };
    let (idle, add) = (find("idle"), find("add"));
    assert_eq!(
        idle["routing"],
        json!({"rejected_no_instance":1,"rejected_overloaded":0,"rejected_type":0,
               "handoff_retries":0}),
        "{idle}"
    );
    assert_eq!(
        (
            &idle["live_instances"],
            &idle["totals"]["errors"],
            &idle["totals"]["processed"],
            &idle["instances"]
        ),
        (&json!(0), &json!(1), &json!(1), &json!([])),
        "{idle}"
    );
    // Refused before idle's, so in the same heartbeat.
    assert_eq!(
        (
            &add["routing"]["rejected_type"],
            &add["routing"]["rejected_no_instance"],
            &add["totals"]["errors"]
        ),
        (&json!(1), &json!(0), &json!(1)),
        "{add}"
    );
}
