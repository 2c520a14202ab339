//! Stats ingestion and `GET /workers/stats`: counters, rates and window latencies from
//! the heartbeats' reports, on both backends.

use serde_json::{Value, json};

use crate::helpers::{
    heartbeat_json, heartbeat_with_routing, instance_report, spawn_app, spawn_on, worker,
};

const AGENT: &str = "127.0.0.1:7701";

fn find<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker"] == name)
        .unwrap_or_else(|| panic!("no worker {name} in {stats}"))
}

#[actix_web::test]
async fn counters_at_workers_stats_equal_what_the_heartbeats_reported() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    app.api.add(worker("square", 0)).await;
    let first = instance_report(
        "add",
        1,
        [10, 6, 2, 1, 1, 3, 1, 2],
        &[(4, 7), (9, 3)],
        9_000,
    );
    let mut second = instance_report("add", 2, [5, 4, 1, 0, 0, 0, 0, 1], &[(2, 5)], 1_000);
    // The first reports no ejection fields, as an agent from before them did.
    second["ejections"] = 3.into();
    second["ejected_ms"] = 1_500.into();
    let ghost = instance_report("ghost", 3, [1, 1, 0, 0, 0, 0, 0, 0], &[(0, 1)], 10);

    let beat = app
        .api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 2), ("ghost", 1)],
            vec![first, second, ghost],
        ))
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    let seen = beat.body["last_seen_ms"].as_i64().unwrap();

    let reply = app.api.stats(None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["window_ms"], 10_000);
    assert!(reply.body["at_ms"].as_i64().unwrap() >= seen);
    let names: Vec<&str> = reply.body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["worker"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "ghost", "square"]);
    let add = find(&reply.body, "add");
    assert_eq!(add["live_instances"], 2);
    assert_eq!(add["last_seen_ms"], seen);
    assert_eq!(
        add["totals"],
        json!({"received":15,"processed":15,"responses":10,"errors":3,"timeouts":1,"stops":1,
               "retries":3,"restarts":1,"in_flight":3,"ejections":3,"ejected_ms":1500})
    );
    // One report per instance: they attached within the window, so all they counted
    // (from zero at their attach) happened within it: 15 steps, 3 errors over 10 s.
    assert_eq!(
        add["rates"],
        json!({"received":1.5,"processed":1.5,"errors":0.3,"timeouts":0.1})
    );
    assert_eq!(add["latency_ms"], json!({"p50":1.0,"p90":50.0,"p99":50.0}));
    assert_eq!(
        add["instances"],
        json!([
            {"agent":AGENT,"instance":1,"live":true,"last_seen_ms":seen,
             "totals":{"received":10,"processed":10,"responses":6,"errors":2,"timeouts":1,
                       "stops":1,"retries":3,"restarts":1,"in_flight":2,"ejections":0,
                       "ejected_ms":0},
             "rates":{"received":1.0,"processed":1.0,"errors":0.2,"timeouts":0.1},
             "latency_ms":{"p50":1.0,"p90":50.0,"p99":50.0}},
            {"agent":AGENT,"instance":2,"live":true,"last_seen_ms":seen,
             "totals":{"received":5,"processed":5,"responses":4,"errors":1,"timeouts":0,
                       "stops":0,"retries":0,"restarts":0,"in_flight":1,"ejections":3,
                       "ejected_ms":1500},
             "rates":{"received":0.5,"processed":0.5,"errors":0.1,"timeouts":0.0},
             "latency_ms":{"p50":0.25,"p90":0.25,"p99":0.25}}
        ])
    );
    assert_eq!(find(&reply.body, "ghost")["live_instances"], 1);
    let square = find(&reply.body, "square");
    assert_eq!(square["live_instances"], 0);
    assert_eq!(square["last_seen_ms"], Value::Null);
    assert_eq!(square["totals"]["received"], 0);
    assert_eq!(square["instances"], json!([]));
}

/// Steps an agent's router refused (no live instance, overloaded, unknown type) never
/// reach an instance; the heartbeat's `routing` brings them, and they count as the
/// worker's errors.
#[actix_web::test]
async fn steps_the_routers_refused_are_the_workers_errors() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    app.api.add(worker("idle", 0)).await;
    app.api.add(worker("square", 0)).await;
    let add = instance_report("add", 1, [10, 8, 2, 0, 0, 0, 0, 0], &[(4, 10)], 1_000);
    let beats = [
        heartbeat_with_routing(
            AGENT,
            &[("add", 1)],
            vec![add],
            json!({"add": {"rejected_type": 1, "rejected_overloaded": 2},
                   "idle": {"rejected_no_instance": 3}}),
        ),
        heartbeat_with_routing(
            "127.0.0.1:7702",
            &[],
            vec![],
            json!({"idle": {"rejected_no_instance": 4, "handoff_retries": 5}}),
        ),
        // An agent from before the routing section: its workers refused nothing.
        heartbeat_json("127.0.0.1:7703", &[], vec![]),
    ];
    for beat in beats {
        let reply = app.api.heartbeat(beat).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    let reply = app.api.stats(None).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    let (add, idle, square) = (
        find(&reply.body, "add"),
        find(&reply.body, "idle"),
        find(&reply.body, "square"),
    );
    assert_eq!(
        idle["routing"],
        json!({"rejected_no_instance":7,"rejected_overloaded":0,"rejected_type":0,
               "handoff_retries":5})
    );
    assert_eq!(
        (&idle["totals"]["errors"], &idle["totals"]["processed"]),
        (&json!(7), &json!(7))
    );
    assert_eq!(
        idle["rates"],
        json!({"received":0.0,"processed":0.7,"errors":0.7,"timeouts":0.0})
    );
    assert_eq!(idle["instances"], json!([]));
    // The instance's 2 errors in 10 steps, and 3 steps refused.
    assert_eq!(
        (&add["totals"]["errors"], &add["totals"]["processed"]),
        (&json!(5), &json!(13))
    );
    assert_eq!(add["instances"][0]["totals"]["errors"], 2);
    assert_eq!(add["routing"]["rejected_type"], 1);
    assert_eq!(
        square["routing"],
        json!({"rejected_no_instance":0,"rejected_overloaded":0,"rejected_type":0,
               "handoff_retries":0})
    );
    assert_eq!(square["totals"]["errors"], 0);
}

#[actix_web::test]
async fn a_routing_counter_over_what_a_bigint_holds_is_answered_400() {
    let app = spawn_app().await;

    let reply = app
        .api
        .heartbeat(heartbeat_with_routing(
            AGENT,
            &[],
            vec![],
            json!({"idle": {"rejected_no_instance": u64::MAX}}),
        ))
        .await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.body["error"],
        format!(
            "routing of worker \"idle\": rejected_no_instance {} is over the largest storable {}",
            u64::MAX,
            i64::MAX
        )
    );
}

#[actix_web::test]
async fn rates_and_window_latency_come_from_two_reports() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    // Ten slow steps before, then 90 fast and 10 at 50 ms within the window.
    let before = instance_report("add", 1, [10, 10, 0, 0, 0, 0, 0, 0], &[(12, 10)], 5_000_000);
    let after = instance_report(
        "add",
        1,
        [110, 100, 8, 2, 0, 0, 0, 0],
        &[(12, 10), (4, 90), (9, 10)],
        5_590_000,
    );
    let first = app
        .api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![before]))
        .await;
    // The first report falls before the shortest window, the second within it.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let second = app
        .api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![after]))
        .await;
    let span_s = (second.body["last_seen_ms"].as_i64().unwrap()
        - first.body["last_seen_ms"].as_i64().unwrap()) as f64
        / 1e3;

    let reply = app.api.stats(Some(1_000)).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["window_ms"], 1_000);
    let add = find(&reply.body, "add");
    // 100 received, 100 processed, 8 errors and 2 timeouts between the two reports,
    // a little over the 1 s window apart: the rates are over the time between them.
    let rate = |count: f64| ((count / span_s) * 1e3).round() / 1e3;
    assert_eq!(
        add["rates"],
        json!({"received":rate(100.0),"processed":rate(100.0),"errors":rate(8.0),"timeouts":rate(2.0)})
    );
    assert_eq!(add["latency_ms"], json!({"p50":1.0,"p90":1.0,"p99":50.0}));
    assert_eq!(add["instances"][0]["rates"], add["rates"]);
    assert_eq!(add["instances"][0]["latency_ms"], add["latency_ms"]);
    assert_eq!(add["totals"]["received"], 110);
    assert_eq!(add["totals"]["processed"], 110);
}

#[actix_web::test]
async fn a_counter_that_goes_down_counts_as_a_restart() {
    let app = spawn_app().await;
    let before = instance_report("add", 1, [100, 100, 0, 0, 0, 0, 0, 0], &[(4, 100)], 100_000);
    let restarted = instance_report("add", 1, [5, 4, 0, 0, 0, 0, 0, 1], &[(9, 4)], 200_000);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![before]))
        .await;
    actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![restarted]))
        .await;

    let reply = app.api.stats(Some(10_000)).await;

    let add = find(&reply.body, "add");
    assert_eq!(
        add["rates"],
        json!({"received":0.5,"processed":0.4,"errors":0.0,"timeouts":0.0})
    );
    assert_eq!(add["latency_ms"], json!({"p50":50.0,"p90":50.0,"p99":50.0}));
    assert_eq!(add["totals"]["received"], 5);
    assert_eq!(add["totals"]["in_flight"], 1);
}

#[actix_web::test]
async fn bad_heartbeat_stats_are_answered_400_and_nothing_is_stored() {
    let app = spawn_app().await;
    let good = instance_report("add", 1, [1, 1, 0, 0, 0, 0, 0, 0], &[], 0);
    let mut short = good.clone();
    short["latency"]["counts"] = json!([1, 2, 3]);
    let mut huge = instance_report("add", 2, [0; 8], &[], 0);
    huge["errors"] = json!(u64::MAX);
    let mut unknown = good.clone();
    unknown["colour"] = json!("red");
    let mut huge_bucket = instance_report("add", 3, [0; 8], &[], 0);
    huge_bucket["latency"]["counts"][5] = json!(u64::MAX);
    // Each answer fits; their sum, the steps processed, does not.
    let mut answers_overflow = instance_report("add", 4, [0; 8], &[], 0);
    for field in ["responses", "errors", "timeouts"] {
        answers_overflow[field] = json!(i64::MAX);
    }
    let mut buckets_overflow = instance_report("add", 5, [0; 8], &[], 0);
    for bucket in [0, 1, 2] {
        buckets_overflow["latency"]["counts"][bucket] = json!(i64::MAX);
    }
    let cases = [
        (
            vec![short],
            "instance 1 has 3 latency buckets, expected 17".to_owned(),
        ),
        (
            vec![good.clone(), good.clone()],
            "instance 1 is listed twice in stats".to_owned(),
        ),
        (
            vec![good.clone(), huge],
            format!(
                "stats of instance 2: errors {} is over the largest storable {}",
                u64::MAX,
                i64::MAX
            ),
        ),
        (vec![unknown], "unknown field `colour`".to_owned()),
        (
            vec![huge_bucket],
            format!(
                "stats of instance 3: latency.counts[5] {} is over the largest storable {}",
                u64::MAX,
                i64::MAX
            ),
        ),
        (
            vec![answers_overflow],
            format!(
                "stats of instance 4: processed (responses + errors + timeouts + stops) is over the largest storable {}",
                i64::MAX
            ),
        ),
        (
            vec![buckets_overflow],
            format!(
                "stats of instance 5: the latency count (the buckets' sum) is over the largest storable {}",
                i64::MAX
            ),
        ),
    ];
    for (stats, expected) in cases {
        let reply = app
            .api
            .heartbeat(heartbeat_json(AGENT, &[("add", 1)], stats))
            .await;
        assert_eq!(reply.status, 400, "{reply:?}");
        assert!(
            reply.error().contains(&expected),
            "`{}` lacks `{expected}`",
            reply.error()
        );
    }

    assert_eq!(app.api.agents().await.body["agents"], json!([]));
    assert_eq!(app.api.stats(None).await.body["workers"], json!([]));
}

#[actix_web::test]
async fn the_window_must_be_from_one_second_to_one_hour() {
    let app = spawn_app().await;
    for (query, expected) in [
        (
            "window_ms=999",
            "window_ms 999 must be from 1000 to 3600000",
        ),
        (
            "window_ms=3600001",
            "window_ms 3600001 must be from 1000 to 3600000",
        ),
        ("window_ms=soon", "invalid query string"),
        ("window=5", "unknown field `window`"),
    ] {
        let reply = app.api.get(&format!("/workers/stats?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(reply.error().contains(expected), "{query}: {reply:?}");
    }
    assert_eq!(app.api.stats(Some(1_000)).await.status, 200);
    // A window longer than the samples are kept is cut to the retention (10 minutes).
    let longest = app.api.stats(Some(3_600_000)).await;
    assert_eq!(longest.status, 200);
    assert_eq!(longest.body["window_ms"], 600_000);
}

#[actix_web::test]
async fn stats_survive_a_proxy_restart() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    let report = instance_report("add", 1, [7, 7, 0, 0, 0, 0, 0, 0], &[(3, 7)], 700);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![report]))
        .await;
    let before = app.api.stats(None).await;
    app.stop().await;

    let again = spawn_on(app.db.clone(), |_| {}).await;
    let after = again.api.stats(None).await;

    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(find(&after.body, "add")["totals"]["received"], 7);
    assert_eq!(
        find(&after.body, "add")["instances"],
        find(&before.body, "add")["instances"]
    );
}

#[actix_web::test]
async fn a_leaving_agent_is_removed_at_once_and_its_instances_are_not_live() {
    let app = spawn_app().await;
    let report = instance_report("add", 1, [3, 3, 0, 0, 0, 0, 0, 0], &[], 0);
    app.api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![report]))
        .await;

    let reply = app
        .api
        .heartbeat(json!({"agent": AGENT, "leaving": true}))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(app.api.agents().await.body["agents"], json!([]));
    let stats = app.api.stats(None).await;
    let add = find(&stats.body, "add");
    assert_eq!(add["live_instances"], 0);
    assert_eq!(add["instances"][0]["live"], false);
    assert_eq!(add["totals"]["received"], 3);
}

#[actix_web::test]
async fn a_vanished_instance_has_nothing_in_flight() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    let busy = |in_flight| instance_report("add", 1, [3, 2, 0, 0, 0, 0, 0, in_flight], &[], 0);
    let other = instance_report("add", 2, [1, 1, 0, 0, 0, 0, 0, 0], &[], 0);
    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 2)],
            vec![busy(1), other.clone()],
        ))
        .await;
    assert_eq!(
        find(&app.api.stats(None).await.body, "add")["totals"]["in_flight"],
        1
    );

    // Instance 1 vanished with a step in flight; its agent no longer reports it.
    let beat = app
        .api
        .heartbeat(heartbeat_json(AGENT, &[("add", 1)], vec![other]))
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");

    let stats = app.api.stats(None).await;
    let add = find(&stats.body, "add");
    assert_eq!(add["totals"]["in_flight"], 0, "{stats:?}");
    let vanished = add["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|instance| instance["instance"] == 1)
        .unwrap();
    assert_eq!(
        (
            vanished["live"].clone(),
            vanished["totals"]["in_flight"].clone()
        ),
        (json!(false), json!(0))
    );
    assert_eq!(add["totals"]["received"], 4, "its counts stay");
}

#[actix_web::test]
async fn an_agents_counters_are_stored_once_per_stats_interval_and_at_once_when_its_instances_change()
 {
    let app = crate::helpers::spawn_app_with(|settings| settings.stats_every_ms = 3_600_000).await;
    app.api.add(worker("add", 0)).await;
    app.api.add(worker("square", 0)).await;
    let report = |worker: &str, instance: u64, received: u64| {
        instance_report(worker, instance, [received, 0, 0, 0, 0, 0, 0, 0], &[], 0)
    };
    let received = |stats: &Value, name: &str| find(stats, name)["totals"]["received"].clone();

    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 1)],
            vec![report("add", 1, 5)],
        ))
        .await;
    // Within the interval, the same instances: the counters are not stored again.
    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("add", 1)],
            vec![report("add", 1, 9)],
        ))
        .await;
    let stats = app.api.stats(None).await.body;
    assert_eq!(received(&stats, "add"), 5, "{stats}");
    assert_eq!(find(&stats, "add")["instances"][0]["live"], true);

    // Other instances: stored at once, and the instance that went is no longer live.
    app.api
        .heartbeat(heartbeat_json(
            AGENT,
            &[("square", 1)],
            vec![report("square", 2, 3)],
        ))
        .await;
    let stats = app.api.stats(None).await.body;
    assert_eq!(received(&stats, "square"), 3, "{stats}");
    assert_eq!(find(&stats, "square")["instances"][0]["live"], true);
    assert_eq!(
        find(&stats, "add")["instances"][0]["live"],
        false,
        "{stats}"
    );
}

#[actix_web::test]
async fn workers_stats_answers_one_worker_one_agent_or_a_page_at_a_time() {
    let app = spawn_app().await;
    for name in ["add", "square", "upper"] {
        app.api.add(worker(name, 0)).await;
    }
    let report = |worker: &str, instance: u64, received: u64| {
        instance_report(worker, instance, [received, 0, 0, 0, 0, 0, 0, 0], &[], 0)
    };
    app.api
        .heartbeat(heartbeat_json(
            "10.0.0.1:7701",
            &[("add", 1), ("square", 1)],
            vec![report("add", 1, 5), report("square", 2, 7)],
        ))
        .await;
    app.api
        .heartbeat(heartbeat_json(
            "10.0.0.2:7701",
            &[("add", 1)],
            vec![report("add", 1, 11)],
        ))
        .await;
    let names = |stats: &Value| -> Vec<String> {
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["worker"].as_str().unwrap().to_owned())
            .collect()
    };

    let one = app.api.get("/workers/stats?worker=add").await.body;
    assert_eq!(names(&one), ["add"]);
    assert_eq!(find(&one, "add")["totals"]["received"], 16);
    assert_eq!(find(&one, "add")["live_instances"], 2);

    let on_agent = app.api.get("/workers/stats?agent=10.0.0.2:7701").await.body;
    assert_eq!(names(&on_agent), ["add", "square", "upper"]);
    let add = find(&on_agent, "add");
    assert_eq!(
        (&add["totals"]["received"], &add["live_instances"]),
        (&json!(11), &json!(1))
    );
    assert_eq!(add["instances"].as_array().unwrap().len(), 1);
    assert_eq!(find(&on_agent, "square")["live_instances"], 0);

    let first = app.api.get("/workers/stats?limit=2").await.body;
    assert_eq!(names(&first), ["add", "square"]);
    assert_eq!(first["next"], "square");
    let second = app
        .api
        .get("/workers/stats?limit=2&after=square")
        .await
        .body;
    assert_eq!(names(&second), ["upper"]);
    assert!(second.get("next").is_none(), "{second}");

    for bad in ["limit=0", "limit=1001", "page=2"] {
        let reply = app.api.get(&format!("/workers/stats?{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
}
