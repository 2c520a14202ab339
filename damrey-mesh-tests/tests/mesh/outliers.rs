//! Partial failure: an instance that fails every step is ejected from the rotation and
//! probed back; a worker whose queue cannot make a request's deadline answers at once.

use std::time::{Duration, Instant};

use damrey_actors::{Message, Tag};
use serde_json::{Value, json};

use crate::support::{Agent, AgentAddress, Proxy, TempDir, client, eventually, join_all};

/// `nap N` takes N ms; an instance started with `--timeout-ms 10` times out every nap
/// longer than that at once: it fails fast, so least in-flight would favour it.
fn nap(ms: u64) -> Message {
    Message::request("nap", [ms.to_string()])
}

/// The `nap` worker's entry in the agent's `/stats` `workers`.
async fn nap_routes(agent: &Agent) -> Value {
    agent.stats().await["workers"]
        .as_array()
        .expect("workers in /stats")
        .iter()
        .find(|worker| worker["worker"] == "nap")
        .cloned()
        .expect("nap in /stats")
}

/// The `/stats` entry of the instance that timed out (the failing one).
async fn failing_instance(agent: &Agent) -> Value {
    agent.stats().await["instances"]
        .as_array()
        .expect("instances in /stats")
        .iter()
        .find(|instance| instance["timeouts"].as_u64() > Some(0))
        .cloned()
        .expect("an instance that timed out")
}

/// Puts `calls` nap calls through `clients` callers, each after the other's reply.
async fn calls_by_clients(agent: AgentAddress, clients: usize, calls: usize, ms: u64) -> Vec<Tag> {
    let per_client = calls / clients;
    join_all((0..clients).map(|_| {
        let agent = agent.clone();
        async move {
            let mut tags = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                tags.push(agent.call("nap", &nap(ms), 5_000).await.1.tag);
            }
            tags
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect()
}

#[actix_rt::test]
async fn a_failing_instance_is_ejected_and_the_healthy_one_answers_the_rest() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [json!({"name": "nap", "commands": [{"name": "nap"}], "alarms": {"ejected_ms": 1000}})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _healthy = agent.worker("nap", "nap");
    let _failing = agent.worker_with("nap", "nap", None, &["--timeout-ms", "10"]);
    agent.wait_instances(2).await;

    // Until the failing instance has failed enough in a row to be ejected.
    eventually(
        Duration::from_secs(20),
        "the failing instance is ejected",
        || async {
            calls_by_clients(agent.handle(), 4, 8, 50).await;
            let routes = nap_routes(&agent).await;
            (routes["ejected_now"] == 1 && routes["ejections"].as_u64() >= Some(1)).then_some(())
        },
    )
    .await;

    let tags = calls_by_clients(agent.handle(), 4, 200, 50).await;

    let responses = tags.iter().filter(|tag| **tag == Tag::Response).count();
    let ratio = responses as f64 / tags.len() as f64;
    eprintln!(
        "one failing instance of two, once ejected: {responses} RESPONSE of {} calls ({:.1}%)",
        tags.len(),
        ratio * 100.0
    );
    assert!(
        ratio >= 0.95,
        "{responses} RESPONSE of {}: {tags:?}",
        tags.len()
    );
    let metrics = client()
        .get(format!("http://{}/metrics", agent.address))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics
            .lines()
            .any(|line| line == "damrey_route_ejected_instances{worker=\"nap\"} 1"),
        "{metrics}"
    );
    // The agent reports the ejection to the proxy, which alarms once it lasts.
    let alarm = eventually(Duration::from_secs(20), "an ejected alarm", || async {
        proxy.get_json("/alarms").await["alarms"]
            .as_array()?
            .iter()
            .find(|alarm| alarm["rule"] == "ejected" && alarm["worker"] == "nap")
            .cloned()
    })
    .await;
    assert!(
        alarm["message"]
            .as_str()
            .unwrap()
            .contains("out of the rotation for failing"),
        "{alarm}"
    );
    let stats = proxy.get_json("/workers/stats").await;
    let nap = stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["worker"] == "nap")
        .unwrap()
        .clone();
    assert!(nap["totals"]["ejections"].as_u64() >= Some(1), "{nap}");
    assert!(nap["totals"]["ejected_ms"].as_u64() > Some(0), "{nap}");
}

#[actix_rt::test]
async fn an_ejected_instance_that_recovers_gets_traffic_back() {
    let dir = TempDir::new();
    let spec = json!({"name": "nap", "commands": [{"name": "nap"}],
        "outlier": {"consecutive_failures": 3, "ejection_ms": 200, "max_ejection_ms": 400}});
    let proxy = Proxy::with_workers(&dir, [spec]).await;
    let agent = Agent::ready(&proxy).await;
    let _healthy = agent.worker("nap", "nap");
    let _failing = agent.worker_with("nap", "nap", None, &["--timeout-ms", "10"]);
    agent.wait_instances(2).await;
    eventually(
        Duration::from_secs(20),
        "the failing instance is ejected",
        || async {
            calls_by_clients(agent.handle(), 2, 4, 50).await;
            (nap_routes(&agent).await["ejected_now"] == 1).then_some(())
        },
    )
    .await;
    let before = failing_instance(&agent).await;

    // Naps of 1 ms fit its 10 ms step timeout: the instance works again.
    eventually(
        Duration::from_secs(20),
        "the recovered instance is back in the rotation",
        || async {
            calls_by_clients(agent.handle(), 2, 8, 1).await;
            (nap_routes(&agent).await["ejected_now"] == 0).then_some(())
        },
    )
    .await;
    let later = eventually(
        Duration::from_secs(20),
        "the recovered instance answers",
        || async {
            calls_by_clients(agent.handle(), 2, 8, 1).await;
            let now = failing_instance(&agent).await;
            (now["responses"].as_u64() > before["responses"].as_u64().map(|r| r + 3)).then_some(now)
        },
    )
    .await;

    assert_eq!(later["instance"], before["instance"]);
    assert_eq!(nap_routes(&agent).await["ejected_now"], 0);
}

#[actix_rt::test]
async fn a_burst_beyond_what_the_deadline_allows_is_answered_overloaded_at_once() {
    const CALLS: usize = 2_000;
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [json!({"name": "nap", "mpu": "1", "commands": [{"name": "nap"}]})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    // One step first, so that the agent knows how long a nap takes.
    assert_eq!(
        agent.call("nap", &nap(50), 3_000).await.1.tag,
        Tag::Response
    );
    let rss_before = agent.process.rss_kib();

    let burst = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(60))
        .finish();
    let url = format!("http://{}/call/nap?timeout_ms=3000", agent.address);
    let replies = join_all((0..CALLS).map(|_| {
        let (burst, url) = (burst.clone(), url.clone());
        async move {
            let sent = Instant::now();
            let mut response = burst
                .post(url)
                .send_body(nap(50).to_json())
                .await
                .expect("agent answers");
            let body = response.body().limit(1 << 16).await.expect("a body");
            let reply = Message::from_json_slice(&body).expect("a message");
            (reply, sent.elapsed())
        }
    }))
    .await;
    let rss_after = agent.process.rss_kib();

    let mut overloaded: Vec<Duration> = Vec::new();
    let (mut responses, mut timeouts) = (0, 0);
    for (reply, took) in &replies {
        match reply.tag {
            Tag::Response => responses += 1,
            Tag::Timeout => timeouts += 1,
            Tag::Error => {
                assert!(
                    reply.args[0].starts_with("worker nap is overloaded: "),
                    "{reply}"
                );
                overloaded.push(*took);
            }
            _ => panic!("unexpected reply {reply}"),
        }
    }
    overloaded.sort();
    let quantile = |q: f64| overloaded[((overloaded.len() - 1) as f64 * q) as usize];
    eprintln!(
        "burst of {CALLS}: {responses} RESPONSE, {timeouts} TIMEOUT, {} overloaded ERROR \
         (answered in p50 {:?}, p99 {:?}, max {:?}); agent VmRSS {rss_before} KiB before, {rss_after} KiB after",
        overloaded.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(1.0),
    );
    assert_eq!(replies.len(), CALLS);
    assert!(responses >= 1, "{responses} RESPONSE");
    // Fewer than 3 s / 50 ms steps fit before the deadline: the rest are refused
    // (those that came before the queue was known to be too long may time out).
    assert!(
        overloaded.len() >= CALLS / 2,
        "{} overloaded",
        overloaded.len()
    );
    assert!(
        rss_after < rss_before + 256 * 1024,
        "agent memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(
        nap_routes(&agent).await["rejected_overloaded"].as_u64(),
        Some(overloaded.len() as u64)
    );
}

#[actix_rt::test]
async fn requests_that_run_out_of_time_on_healthy_instances_eject_none() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [json!({"name": "nap", "commands": [{"name": "nap"}]})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _first = agent.worker("nap", "nap");
    let _second = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    // Each nap outlasts its request: the line ends TIMEOUT at the request's deadline, which
    // the worker (its deadline carried in whole milliseconds) may reach a moment first.
    for _ in 0..20 {
        let (_, reply) = agent.call("nap", &nap(200), 30).await;
        assert_eq!(reply.tag, Tag::Timeout, "{reply}");
    }

    let routes = nap_routes(&agent).await;
    assert_eq!(routes["ejections"], 0, "{routes}");
    assert_eq!(routes["ejected_now"], 0, "{routes}");
}
