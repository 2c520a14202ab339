//! Alarms: fired once and resolved once (two proxies on one database included), listed
//! by `GET /alarms`, and posted to the webhook with retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use damrey_proxy::Settings;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, eventually, heartbeat_json, instance_report, spawn_app_with, worker,
};

const AGENT: &str = "127.0.0.1:7701";
const DEADLINE: Duration = Duration::from_secs(20);

/// Fast evaluation, a short grace, and agents that may stay silent for a minute.
fn fast(settings: &mut Settings) {
    settings.alarm_eval_ms = 100;
    settings.alarm_resolve_ms = 0;
    settings.no_instance_grace_ms = 500;
    settings.agent_silent_ms = 60_000;
}

/// The alarms listed by `GET /alarms` (or the history), as JSON.
async fn alarms(app: &TestApp, all: bool) -> Vec<Value> {
    let reply = app.api.alarms(all).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body["alarms"].as_array().unwrap().clone()
}

/// Waits until an alarm with `rule` for `subject` (worker or agent) is active.
async fn fired(app: &TestApp, rule: &str, subject: &str) -> Value {
    eventually(
        DEADLINE,
        &format!("{rule} for {subject} to fire"),
        || async {
            alarms(app, false).await.into_iter().find(|alarm| {
                alarm["rule"] == rule && (alarm["worker"] == subject || alarm["agent"] == subject)
            })
        },
    )
    .await
}

/// Waits until no alarm with `rule` for `subject` is active.
async fn resolved(app: &TestApp, rule: &str, subject: &str) {
    eventually(
        DEADLINE,
        &format!("{rule} for {subject} to resolve"),
        || async {
            let active = alarms(app, false).await;
            (!active.iter().any(|alarm| {
                alarm["rule"] == rule && (alarm["worker"] == subject || alarm["agent"] == subject)
            }))
            .then_some(())
        },
    )
    .await
}

async fn pause(ms: u64) {
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
}

#[actix_web::test]
async fn no_instance_fires_once_after_the_grace_and_resolves_once_with_two_proxies() {
    let app = spawn_app_with(fast).await;
    let other = app.another_with(fast).await;
    assert_eq!(app.api.add(worker("add", 0)).await.status, 201);

    let alarm = fired(&app, "no_instance", "add").await;

    assert_eq!(alarm["worker"], "add");
    assert_eq!(alarm["agent"], Value::Null);
    assert_eq!(alarm["resolved_ms"], Value::Null);
    assert_eq!(
        alarm["message"],
        "worker add has no live instance (none reported within 600000 ms)"
    );
    // Both proxies evaluate many times while it holds; it fired once.
    pause(1_000).await;
    assert_eq!(alarms(&app, true).await, std::slice::from_ref(&alarm));
    assert_eq!(alarms(&other, false).await, std::slice::from_ref(&alarm));

    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![]))
        .await;
    resolved(&other, "no_instance", "add").await;
    pause(1_000).await;

    let history = alarms(&app, true).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"], alarm["id"]);
    assert_eq!(history[0]["fired_ms"], alarm["fired_ms"]);
    assert!(history[0]["resolved_ms"].as_i64().unwrap() >= alarm["fired_ms"].as_i64().unwrap());
    assert_eq!(alarms(&app, false).await, Vec::<Value>::new());
}

#[actix_web::test]
async fn a_condition_that_comes_and_goes_keeps_one_alarm_until_it_stays_away() {
    let app = spawn_app_with(|settings| {
        fast(settings);
        settings.alarm_resolve_ms = 1_500;
    })
    .await;
    app.api.add(worker("add", 0)).await;
    let alarm = fired(&app, "no_instance", "add").await;
    let (up, down) = (
        heartbeat_json(AGENT, &[("add", 1)], vec![]),
        heartbeat_json(AGENT, &[], vec![]),
    );

    // A crash loop: the instance comes back and goes again, faster than the alarm resolves.
    for _ in 0..3 {
        app.api.heartbeat(up.clone()).await;
        pause(500).await;
        app.api.heartbeat(down.clone()).await;
        pause(300).await;
        assert_eq!(alarms(&app, false).await, std::slice::from_ref(&alarm));
    }
    // Back for good: resolved once the condition stayed away 1.5 s.
    app.api.heartbeat(up.clone()).await;
    let back = std::time::Instant::now();
    resolved(&app, "no_instance", "add").await;
    assert!(
        back.elapsed() >= Duration::from_millis(1_400),
        "{:?}",
        back.elapsed()
    );
    let history = alarms(&app, true).await;
    assert_eq!(
        history.len(),
        1,
        "one alarm for the whole episode: {history:?}"
    );
    assert_eq!(history[0]["id"], alarm["id"]);
}

#[actix_web::test]
async fn no_instance_fires_when_the_only_instance_goes_and_a_deleted_worker_resolves() {
    let app = spawn_app_with(fast).await;
    app.api.add(worker("add", 0)).await;
    let report = instance_report("add", 1, [0; 8], &[], 0);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![report]))
        .await;
    pause(800).await;
    assert_eq!(alarms(&app, true).await, Vec::<Value>::new());

    app.api.heartbeat(heartbeat_json(AGENT, &[], vec![])).await;
    let alarm = fired(&app, "no_instance", "add").await;
    assert!(
        alarm["message"]
            .as_str()
            .unwrap()
            .starts_with("worker add has no live instance (last seen "),
        "{alarm}"
    );

    assert_eq!(app.api.del(json!({"name": "add"})).await.status, 200);
    resolved(&app, "no_instance", "add").await;
}

#[actix_web::test]
async fn error_rate_fires_with_a_workers_own_window_and_minimum() {
    let app = spawn_app_with(fast).await;
    let own = json!({"name": "add", "agent": "", "mpu": "0", "commands": [],
        "alarms": {"no_instance": false, "window_ms": 2000, "min_messages": 5, "error_rate": 0.5}});
    assert_eq!(app.api.add(&own).await.status, 201);
    // The default minimum is 20 steps: ten do not count.
    let few = json!({"name": "few", "agent": "", "mpu": "0", "commands": [],
        "alarms": {"no_instance": false}});
    assert_eq!(app.api.add(&few).await.status, 201);
    let zero = |worker: &str, instance| instance_report(worker, instance, [0; 8], &[], 0);
    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 1), ("few", 1)],
            vec![zero("add", 1), zero("few", 2)],
        ))
        .await;
    pause(5).await;
    let bad = |worker: &str, instance| {
        instance_report(
            worker,
            instance,
            [10, 2, 8, 0, 0, 0, 0, 0],
            &[(4, 10)],
            10_000,
        )
    };
    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 1), ("few", 1)],
            vec![bad("add", 1), bad("few", 2)],
        ))
        .await;

    let alarm = fired(&app, "error_rate", "add").await;

    assert_eq!(alarm["value"], 0.8);
    assert_eq!(alarm["threshold"], 0.5);
    assert_eq!(
        alarm["message"],
        "worker add: 8 errors in 10 steps over 2000 ms (0.800 > 0.5)"
    );
    let active = alarms(&app, false).await;
    assert_eq!(
        active,
        std::slice::from_ref(&alarm),
        "the worker under its minimum has none"
    );
    // Two seconds later the window holds no steps any more.
    resolved(&app, "error_rate", "add").await;
    let history = alarms(&app, true).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0]["resolved_ms"].as_i64().unwrap() > alarm["fired_ms"].as_i64().unwrap());
}

#[actix_web::test]
async fn agent_silent_fires_and_resolves_and_leaving_or_forgetting_prevents_it() {
    let app = spawn_app_with(|settings| {
        fast(settings);
        settings.agent_silent_ms = 1_500;
    })
    .await;
    for agent in ["10.0.0.1:7701", "10.0.0.2:7701", "10.0.0.3:7701"] {
        app.api.heartbeat(heartbeat_json(agent, &[], vec![])).await;
    }
    app.api
        .heartbeat(json!({"agent": "10.0.0.2:7701", "leaving": true}))
        .await;

    let first = fired(&app, "agent_silent", "10.0.0.1:7701").await;
    fired(&app, "agent_silent", "10.0.0.3:7701").await;

    assert_eq!(first["worker"], Value::Null);
    assert_eq!(first["threshold"], 1_500.0);
    assert!(first["value"].as_f64().unwrap() > 1_500.0);
    assert!(
        !alarms(&app, true)
            .await
            .iter()
            .any(|alarm| alarm["agent"] == "10.0.0.2:7701"),
        "the agent that left raised nothing"
    );
    // Back: resolved. Forgotten: resolved, and a second forget finds nothing.
    app.api
        .heartbeat(heartbeat_json("10.0.0.1:7701", &[], vec![]))
        .await;
    resolved(&app, "agent_silent", "10.0.0.1:7701").await;
    let forget = app.api.forget("10.0.0.3:7701").await;
    assert_eq!(forget.status, 200, "{forget:?}");
    assert_eq!(
        forget.body,
        json!({"agent": "10.0.0.3:7701", "forgotten": true})
    );
    resolved(&app, "agent_silent", "10.0.0.3:7701").await;
    assert_eq!(app.api.forget("10.0.0.3:7701").await.status, 404);
    let bad = app.api.forget("nohost").await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.error().contains("must be host:port"), "{bad:?}");

    let history = alarms(&app, true).await;
    let silent: Vec<&Value> = history
        .iter()
        .filter(|alarm| alarm["agent"] == "10.0.0.1:7701")
        .collect();
    assert!(!silent.is_empty());
    let resolved_one = silent
        .iter()
        .find(|alarm| alarm["id"] == first["id"])
        .unwrap();
    assert!(resolved_one["resolved_ms"].as_i64().unwrap() >= first["fired_ms"].as_i64().unwrap());
    let fired_times: Vec<i64> = history
        .iter()
        .map(|a| a["fired_ms"].as_i64().unwrap())
        .collect();
    assert!(
        fired_times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {fired_times:?}"
    );
}

#[actix_web::test]
async fn alarm_listing_limits_are_checked() {
    let app = spawn_app_with(fast).await;
    for (query, expected) in [
        ("limit=0", "limit 0 must be from 1 to 5000"),
        ("all=true&limit=5001", "limit 5001 must be from 1 to 5000"),
        ("all=maybe", "invalid query string"),
        ("colour=red", "unknown field `colour`"),
    ] {
        let reply = app.api.get(&format!("/alarms?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(reply.error().contains(expected), "{query}: {reply:?}");
    }
    assert_eq!(app.api.get("/alarms?all=true&limit=1").await.status, 200);
}

/// A webhook receiver on port 0 that fails the first `failures` posts with 500 and
/// records the bodies it accepted.
async fn receiver(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>, Arc<Mutex<usize>>) {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0usize));
    let (kept, tried) = (accepted.clone(), attempts.clone());
    let server = HttpServer::new(move || {
        let (kept, tried) = (kept.clone(), tried.clone());
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<Value>| {
                let (kept, tried) = (kept.clone(), tried.clone());
                async move {
                    let mut attempts = tried.lock().unwrap();
                    *attempts += 1;
                    if *attempts <= failures {
                        return HttpResponse::InternalServerError().finish();
                    }
                    kept.lock().unwrap().push(body.into_inner());
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}/hook"), accepted, attempts)
}

#[actix_web::test]
async fn the_webhook_gets_fire_then_resolve() {
    let (url, accepted, _) = receiver(0).await;
    let app = spawn_app_with(|settings| {
        fast(settings);
        settings.alarm_webhook = Some(url);
    })
    .await;
    app.api.add(worker("add", 0)).await;
    let alarm = fired(&app, "no_instance", "add").await;
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![]))
        .await;

    let events = eventually(DEADLINE, "fire and resolve posted", || async {
        let events = accepted.lock().unwrap().clone();
        (events.len() >= 2).then_some(events)
    })
    .await;

    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], json!({"event": "fire", "alarm": alarm}));
    assert_eq!(events[1]["event"], "resolve");
    assert_eq!(events[1]["alarm"]["id"], alarm["id"]);
    assert!(events[1]["alarm"]["resolved_ms"].as_i64().is_some());
    let mut unresolved = events[1]["alarm"].clone();
    unresolved["resolved_ms"] = Value::Null;
    assert_eq!(unresolved, alarm);
}

#[actix_web::test]
async fn a_receiver_that_fails_at_first_still_gets_the_alarm() {
    let (url, accepted, attempts) = receiver(2).await;
    let app = spawn_app_with(|settings| {
        fast(settings);
        settings.alarm_webhook = Some(url);
    })
    .await;
    app.api.add(worker("add", 0)).await;
    let alarm = fired(&app, "no_instance", "add").await;

    let events = eventually(DEADLINE, "the fire posted after retries", || async {
        let events = accepted.lock().unwrap().clone();
        (!events.is_empty()).then_some(events)
    })
    .await;

    assert_eq!(events, [json!({"event": "fire", "alarm": alarm})]);
    assert_eq!(*attempts.lock().unwrap(), 3);
}

#[actix_web::test]
async fn timeout_rate_and_p99_latency_fire_over_their_thresholds() {
    let app = spawn_app_with(fast).await;
    let slow = json!({"name": "slow", "agent": "", "mpu": "0", "commands": [],
        "alarms": {"no_instance": false, "window_ms": 60000, "min_messages": 1,
                   "timeout_rate": 0.1, "p99_ms": 10}});
    assert_eq!(app.api.add(&slow).await.status, 201);
    let first = instance_report("slow", 1, [0; 8], &[], 0);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("slow", 1)], vec![first]))
        .await;
    pause(5).await;
    // 10 steps, 5 of them out of time; the answered ones took up to 500 ms.
    let later = instance_report("slow", 1, [10, 5, 0, 5, 0, 0, 0, 0], &[(12, 5)], 2_000_000);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("slow", 1)], vec![later]))
        .await;

    let timeouts = fired(&app, "timeout_rate", "slow").await;
    let latency = fired(&app, "p99_latency", "slow").await;

    assert_eq!(
        (timeouts["value"].as_f64(), timeouts["threshold"].as_f64()),
        (Some(0.5), Some(0.1))
    );
    assert_eq!(
        (latency["value"].as_f64(), latency["threshold"].as_f64()),
        (Some(500.0), Some(10.0))
    );
    assert_eq!(
        latency["message"],
        "worker slow: p99 latency 500 ms over 60000 ms > 10 ms"
    );
    assert_eq!(alarms(&app, false).await.len(), 2);
}
