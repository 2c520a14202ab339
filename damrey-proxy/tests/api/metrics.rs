//! `GET /metrics`: Prometheus text for a known report, open without a token.

use serde_json::json;

use crate::helpers::{Api, heartbeat_with_routing, instance_report, spawn_app_with, worker};

const EXPECTED: &str = r#"# HELP damrey_agents_live Agents heard from within the agent TTL.
# TYPE damrey_agents_live gauge
damrey_agents_live 1
# HELP damrey_worker_live_instances Instances of the worker in the live agents' latest heartbeats.
# TYPE damrey_worker_live_instances gauge
damrey_worker_live_instances{worker="add"} 2
damrey_worker_live_instances{worker="square"} 0
# HELP damrey_worker_steps_received_total Steps delivered to the worker's instances.
# TYPE damrey_worker_steps_received_total counter
damrey_worker_steps_received_total{worker="add"} 15
damrey_worker_steps_received_total{worker="square"} 0
# HELP damrey_worker_steps_processed_total Steps the worker's instances answered, whatever the answer, and steps its agents' routers refused.
# TYPE damrey_worker_steps_processed_total counter
damrey_worker_steps_processed_total{worker="add"} 16
damrey_worker_steps_processed_total{worker="square"} 4
# HELP damrey_worker_steps_responses_total Steps answered RESPONSE.
# TYPE damrey_worker_steps_responses_total counter
damrey_worker_steps_responses_total{worker="add"} 10
damrey_worker_steps_responses_total{worker="square"} 0
# HELP damrey_worker_steps_errors_total Steps answered ERROR, by the worker's instances or by its agents' routers refusing them.
# TYPE damrey_worker_steps_errors_total counter
damrey_worker_steps_errors_total{worker="add"} 4
damrey_worker_steps_errors_total{worker="square"} 4
# HELP damrey_worker_steps_timeouts_total Steps that ran out of time.
# TYPE damrey_worker_steps_timeouts_total counter
damrey_worker_steps_timeouts_total{worker="add"} 1
damrey_worker_steps_timeouts_total{worker="square"} 0
# HELP damrey_worker_steps_stops_total Steps answered STOP.
# TYPE damrey_worker_steps_stops_total counter
damrey_worker_steps_stops_total{worker="add"} 1
damrey_worker_steps_stops_total{worker="square"} 0
# HELP damrey_worker_steps_retries_total Steps retried elsewhere after their instance was lost.
# TYPE damrey_worker_steps_retries_total counter
damrey_worker_steps_retries_total{worker="add"} 3
damrey_worker_steps_retries_total{worker="square"} 0
# HELP damrey_worker_restarts_total Restarts of the worker's actors after panics.
# TYPE damrey_worker_restarts_total counter
damrey_worker_restarts_total{worker="add"} 1
damrey_worker_restarts_total{worker="square"} 0
# HELP damrey_worker_steps_in_flight Steps delivered and not answered yet.
# TYPE damrey_worker_steps_in_flight gauge
damrey_worker_steps_in_flight{worker="add"} 3
damrey_worker_steps_in_flight{worker="square"} 0
# HELP damrey_worker_ejections_total Times an agent ejected one of the worker's instances from its rotation for failing.
# TYPE damrey_worker_ejections_total counter
damrey_worker_ejections_total{worker="add"} 3
damrey_worker_ejections_total{worker="square"} 0
# HELP damrey_worker_ejected_ms How long the instance out of full rotation longest has been out, in ms (0: none).
# TYPE damrey_worker_ejected_ms gauge
damrey_worker_ejected_ms{worker="add"} 1500
damrey_worker_ejected_ms{worker="square"} 0
# HELP damrey_worker_step_duration_seconds How long answered steps took, delivery to answer.
# TYPE damrey_worker_step_duration_seconds histogram
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.00005"} 0
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.0001"} 0
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.00025"} 5
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.0005"} 5
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.001"} 12
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.0025"} 12
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.005"} 12
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.01"} 12
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.025"} 12
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.05"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.1"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.25"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="0.5"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="1"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="2.5"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="10"} 15
damrey_worker_step_duration_seconds_bucket{worker="add",le="+Inf"} 15
damrey_worker_step_duration_seconds_sum{worker="add"} 0.01
damrey_worker_step_duration_seconds_count{worker="add"} 15
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.00005"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.0001"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.00025"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.0005"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.001"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.0025"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.005"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.01"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.025"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.05"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.1"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.25"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="0.5"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="1"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="2.5"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="10"} 0
damrey_worker_step_duration_seconds_bucket{worker="square",le="+Inf"} 0
damrey_worker_step_duration_seconds_sum{worker="square"} 0
damrey_worker_step_duration_seconds_count{worker="square"} 0
# HELP damrey_worker_rejected_no_instance_total Steps refused because the worker had no live instance.
# TYPE damrey_worker_rejected_no_instance_total counter
damrey_worker_rejected_no_instance_total{worker="add"} 0
damrey_worker_rejected_no_instance_total{worker="square"} 4
# HELP damrey_worker_rejected_overloaded_total Steps refused because no instance of the worker could start them before their deadline.
# TYPE damrey_worker_rejected_overloaded_total counter
damrey_worker_rejected_overloaded_total{worker="add"} 1
damrey_worker_rejected_overloaded_total{worker="square"} 0
# HELP damrey_worker_rejected_type_total Steps refused because the worker does not accept their type.
# TYPE damrey_worker_rejected_type_total counter
damrey_worker_rejected_type_total{worker="add"} 0
damrey_worker_rejected_type_total{worker="square"} 0
# HELP damrey_worker_handoff_retries_total Hand-offs of the worker's steps to another agent that failed and were resent or sent elsewhere.
# TYPE damrey_worker_handoff_retries_total counter
damrey_worker_handoff_retries_total{worker="add"} 2
damrey_worker_handoff_retries_total{worker="square"} 0
# HELP damrey_alarms_active Active alarms by rule.
# TYPE damrey_alarms_active gauge
damrey_alarms_active{rule="no_instance"} 0
damrey_alarms_active{rule="error_rate"} 0
damrey_alarms_active{rule="timeout_rate"} 0
damrey_alarms_active{rule="p99_latency"} 0
damrey_alarms_active{rule="agent_silent"} 0
damrey_alarms_active{rule="ejected"} 0
"#;

#[actix_web::test]
async fn metrics_lines_are_exact_for_a_known_report_and_need_no_token() {
    let app = spawn_app_with(|settings| {
        settings.token = Some("s3cret".into());
        // No alarm for `square` while the test reads.
        settings.no_instance_grace_ms = 600_000;
    })
    .await;
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
    let beat = app
        .api
        .heartbeat(heartbeat_with_routing(
            "127.0.0.1:7701",
            &[("add", 2)],
            vec![first, second],
            json!({"add": {"rejected_overloaded": 1, "handoff_retries": 2},
                   "square": {"rejected_no_instance": 4}}),
        ))
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");

    let (status, content_type, text) = Api::new(&app.address, None).get_text("/metrics").await;

    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(text, EXPECTED);
}

/// Scrapers and load balancers probe with `HEAD`: 200 and the headers, no body.
#[actix_web::test]
async fn head_metrics_answers_200_without_a_body() {
    let app = spawn_app_with(|_| {}).await;

    let mut response = awc::Client::new()
        .head(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("the proxy answers");
    let body = response.body().await.expect("a body");

    assert_eq!(response.status().as_u16(), 200);
    assert!(body.is_empty(), "{body:?}");
    assert!(response.headers().contains_key("x-request-id"));
}
