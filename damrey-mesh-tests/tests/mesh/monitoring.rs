//! What the proxy learns from the agents' reports: counters summed per worker, and the
//! alarm for a worker whose only instance was killed, posted to a webhook.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::support::{
    Agent, PATIENCE, Proxy, TempDir, eventually, known_load, sqsum_mesh, sqsum_specs,
};

/// The entry for `worker` in `GET /workers/stats`.
async fn worker_stats(proxy: &Proxy, worker: &str) -> Value {
    let stats = proxy.get_json("/workers/stats").await;
    stats["workers"]
        .as_array()
        .expect("a workers list")
        .iter()
        .find(|entry| entry["worker"] == worker)
        .cloned()
        .unwrap_or(Value::Null)
}

#[actix_rt::test]
async fn the_proxy_sums_what_the_agent_counted_exactly() {
    let dir = TempDir::new();
    let (proxy, agent, _workers) = sqsum_mesh(&dir).await;

    known_load(&agent).await;

    let add = eventually(PATIENCE, "add's counts at the proxy", || async {
        let add = worker_stats(&proxy, "add").await;
        (add["totals"]["processed"] == 23).then_some(add)
    })
    .await;
    let totals = &add["totals"];
    assert_eq!(totals["received"], 23, "{add}");
    assert_eq!(totals["responses"], 20);
    assert_eq!(totals["errors"], 3);
    assert_eq!(totals["timeouts"], 0);
    assert_eq!(totals["in_flight"], 0);
    assert_eq!(add["live_instances"], 1);
    assert_eq!(add["instances"][0]["agent"], agent.address.as_str());
    assert!(
        add["latency_ms"]["p99"]
            .as_f64()
            .is_some_and(|p99| p99 > 0.0)
    );
    let square = worker_stats(&proxy, "square").await;
    assert_eq!(square["totals"]["received"], 20, "{square}");
    assert_eq!(square["totals"]["responses"], 20);
}

/// A webhook receiver on a port of the OS's choosing; keeps every JSON body posted.
struct Webhook {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let kept = web::Data::new(events.clone());
        let server = HttpServer::new(move || {
            App::new().app_data(kept.clone()).route(
                "/hook",
                web::post().to(
                    |kept: web::Data<Arc<Mutex<Vec<Value>>>>, event: web::Json<Value>| async move {
                        kept.lock().unwrap().push(event.into_inner());
                        HttpResponse::Ok().finish()
                    },
                ),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_rt::spawn(server);
        Webhook { url, events }
    }

    /// The events posted about `rule` for `worker`, in order: `fire`, `resolve`, ...
    fn events_for(&self, rule: &str, worker: &str) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event["alarm"]["rule"] == rule && event["alarm"]["worker"] == worker)
            .map(|event| event["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The alarm about `rule` for `worker` in `GET /alarms` (active) or `?all=true`.
async fn alarm(proxy: &Proxy, all: bool, rule: &str, worker: &str) -> Option<Value> {
    let path = if all { "/alarms?all=true" } else { "/alarms" };
    proxy.get_json(path).await["alarms"]
        .as_array()?
        .iter()
        .find(|alarm| alarm["rule"] == rule && alarm["worker"] == worker)
        .cloned()
}

#[actix_rt::test]
async fn killing_the_only_instance_fires_an_alarm_that_resolves_when_it_is_back() {
    let webhook = Webhook::start();
    let dir = TempDir::new();
    let proxy = Proxy::start_with_env(&dir, &[("DAMREY_ALARM_WEBHOOK", &webhook.url)]).await;
    for spec in sqsum_specs() {
        proxy.add(spec).await;
    }
    let agent = Agent::ready(&proxy).await;
    let mut square = agent.worker("square", "square");
    agent.wait_instances(1).await;
    // Reported as live before the kill.
    eventually(PATIENCE, "square reported live", || async {
        (worker_stats(&proxy, "square").await["live_instances"] == 1).then_some(())
    })
    .await;
    assert_eq!(alarm(&proxy, false, "no_instance", "square").await, None);

    square.kill();
    let fired = eventually(PATIENCE, "the no_instance alarm", || {
        alarm(&proxy, false, "no_instance", "square")
    })
    .await;
    assert_eq!(fired["resolved_ms"], Value::Null, "{fired}");

    let _square = agent.worker("square", "square");
    agent.wait_instances(1).await;
    let resolved = eventually(PATIENCE, "the alarm resolved", || async {
        let alarm = alarm(&proxy, true, "no_instance", "square").await?;
        alarm["resolved_ms"].is_i64().then_some(alarm)
    })
    .await;
    assert_eq!(resolved["id"], fired["id"]);
    assert_eq!(alarm(&proxy, false, "no_instance", "square").await, None);
    eventually(PATIENCE, "both webhook events", || async {
        (webhook.events_for("no_instance", "square").len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        webhook.events_for("no_instance", "square"),
        ["fire", "resolve"],
        "fired once, resolved once"
    );
}

#[actix_rt::test]
async fn steps_lost_with_a_vanished_instance_reach_the_proxy_as_retries() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [serde_json::json!({"name": "nap", "commands": [{"name": "nap"}]})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let mut doomed = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let call = actix_rt::spawn({
        let agent = agent.handle();
        async move {
            let nap = damrey_actors::Message::request("nap", ["1000", "lost"]);
            agent.call("nap", &nap, 10_000).await
        }
    });
    agent.wait_in_flight(1).await;
    let _survivor = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    doomed.kill();

    assert_eq!(call.await.unwrap().0, 200, "run again on the survivor");
    let totals = eventually(PATIENCE, "the lost step at the proxy", || async {
        let totals = worker_stats(&proxy, "nap").await["totals"].clone();
        // The survivor answered: the proxy learns it at the next heartbeats.
        (totals["responses"] == 1).then_some(totals)
    })
    .await;
    assert_eq!(
        (
            &totals["received"],
            &totals["retries"],
            &totals["in_flight"]
        ),
        (&2.into(), &1.into(), &0.into()),
        "{totals}"
    );
}
