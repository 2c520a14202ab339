//! The agent registry: `POST /agents/heartbeat` and `GET /agents`.

use std::time::Duration;

use crate::helpers::spawn_app_with;

const HEARTBEAT: &str = r#"{"agent":"127.0.0.1:7701","instances":[{"worker":"square","count":1},{"worker":"add","count":2}]}"#;

#[actix_web::test]
async fn a_heartbeat_is_answered_with_the_agent_entry_and_listed() {
    let app = spawn_app_with(|_| {}).await;

    let reply = app.api.heartbeat(HEARTBEAT).await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["agent"], "127.0.0.1:7701");
    assert_eq!(
        reply.body["instances"],
        serde_json::json!([{"worker":"add","count":2},{"worker":"square","count":1}])
    );
    let list = app.api.agents().await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["ttl_ms"], 10_000);
    let agents = list.body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["agent"], "127.0.0.1:7701");
    assert_eq!(agents[0]["instances"], reply.body["instances"]);
    assert_eq!(agents[0]["last_seen_ms"], reply.body["last_seen_ms"]);
    assert!(agents[0]["age_ms"].as_i64().unwrap() >= 0);
}

#[actix_web::test]
async fn a_later_heartbeat_replaces_the_instances_and_keeps_first_seen() {
    let app = spawn_app_with(|_| {}).await;
    let first = app.api.heartbeat(HEARTBEAT).await;

    let second = app
        .api
        .heartbeat(r#"{"agent":"127.0.0.1:7701","instances":[{"worker":"add","count":1}]}"#)
        .await;

    assert_eq!(second.body["first_seen_ms"], first.body["first_seen_ms"]);
    let list = app.api.agents().await;
    assert_eq!(
        list.body["agents"][0]["instances"],
        serde_json::json!([{"worker":"add","count":1}])
    );
}

#[actix_web::test]
async fn agents_silent_longer_than_the_ttl_are_not_listed() {
    let app = spawn_app_with(|settings| settings.agent_ttl_ms = 1_000).await;
    app.api.heartbeat(HEARTBEAT).await;
    app.api.heartbeat(r#"{"agent":"10.0.0.2:7701"}"#).await;
    assert_eq!(
        app.api.agents().await.body["agents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    app.api.heartbeat(r#"{"agent":"10.0.0.2:7701"}"#).await;

    let list = app.api.agents().await;
    let agents = list.body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{list:?}");
    assert_eq!(agents[0]["agent"], "10.0.0.2:7701");
    assert_eq!(list.body["ttl_ms"], 1_000);
}

#[actix_web::test]
async fn bad_heartbeats_are_answered_400_naming_the_problem() {
    let app = spawn_app_with(|_| {}).await;
    let cases = [
        (r#"{"agent":""}"#, r#"agent "" must not be empty"#),
        (r#"{"agent":"nohost"}"#, "must be host:port"),
        (r#"{"instances":[]}"#, "missing field `agent`"),
        (r#"{"agent":"h:1","extra":1}"#, "unknown field `extra`"),
        (
            r#"{"agent":"h:1","instances":[{"worker":"a'--","count":1}]}"#,
            "instance worker",
        ),
        (
            r#"{"agent":"h:1","instances":[{"worker":"a","count":0}]}"#,
            "count 0",
        ),
        (
            r#"{"agent":"h:1","instances":[{"worker":"a","count":1},{"worker":"a","count":1}]}"#,
            "listed twice",
        ),
        ("{", "EOF while parsing"),
    ];

    for (body, expected) in cases {
        let reply = app.api.heartbeat(body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(
            reply.error().contains(expected),
            "{body}: {}",
            reply.error()
        );
    }
    assert_eq!(app.api.agents().await.body["agents"], serde_json::json!([]));
}

#[actix_web::test]
async fn agents_are_shared_by_proxies_on_one_database() {
    let app = spawn_app_with(|_| {}).await;
    let other = app.another().await;

    app.api.heartbeat(HEARTBEAT).await;

    let agents = other.api.agents().await.body["agents"].clone();
    assert_eq!(agents[0]["agent"], "127.0.0.1:7701");
}

const CHANGED: &str = r#"{"agent":"127.0.0.1:7701","instances":[{"worker":"square","count":2},{"worker":"add","count":2}]}"#;

#[actix_web::test]
async fn a_wait_on_the_agent_list_wakes_on_a_heartbeat_that_changes_instances_and_not_on_one_that_does_not()
 {
    let app = spawn_app_with(|_| {}).await;
    app.api.heartbeat(HEARTBEAT).await;
    let version = app.api.placement_version().await;

    let (reply, ()) = tokio::join!(app.api.agents_after(version, 20_000), async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.api.heartbeat(HEARTBEAT).await.status, 200);
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(app.api.heartbeat(CHANGED).await.status, 200);
    });

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["version"], version + 1);
    assert_eq!(
        reply.body["agents"][0]["instances"],
        serde_json::json!([{"worker":"add","count":2},{"worker":"square","count":2}])
    );
}

#[actix_web::test]
async fn a_wait_on_the_agent_list_with_no_change_answers_the_same_version_when_it_times_out() {
    let app = spawn_app_with(|_| {}).await;
    app.api.heartbeat(HEARTBEAT).await;
    let version = app.api.placement_version().await;

    let started = std::time::Instant::now();
    let (reply, ()) = tokio::join!(app.api.agents_after(version, 600), async {
        assert_eq!(app.api.heartbeat(HEARTBEAT).await.status, 200);
    });

    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["version"], version);
    assert_eq!(reply.body["agents"][0]["agent"], "127.0.0.1:7701");
}

#[actix_web::test]
async fn joining_leaving_and_forgetting_agents_with_instances_move_the_placement_version() {
    let app = spawn_app_with(|_| {}).await;
    let mut version = app.api.placement_version().await;
    let mut moved = |now: i64, what: &str| {
        assert!(now > version, "{what}: {now} after {version}");
        version = now;
    };

    app.api.heartbeat(HEARTBEAT).await;
    moved(
        app.api.placement_version().await,
        "an agent with instances joined",
    );
    app.api
        .heartbeat(r#"{"agent":"10.0.0.2:7701","instances":[{"worker":"add","count":1}]}"#)
        .await;
    moved(app.api.placement_version().await, "a second one joined");
    app.api
        .heartbeat(r#"{"agent":"127.0.0.1:7701","leaving":true}"#)
        .await;
    moved(app.api.placement_version().await, "the first one left");
    assert_eq!(app.api.forget("10.0.0.2:7701").await.status, 200);
    moved(
        app.api.placement_version().await,
        "the second one was forgotten",
    );

    app.api.heartbeat(r#"{"agent":"10.0.0.3:7701"}"#).await;
    moved(
        app.api.placement_version().await,
        "an agent without instances joined: it may be an origin",
    );
    app.api.heartbeat(r#"{"agent":"10.0.0.3:7701"}"#).await;
    assert_eq!(
        app.api.placement_version().await,
        version,
        "the same agent again changes nothing"
    );
}

#[actix_web::test]
async fn an_agent_heard_again_after_its_ttl_moves_the_placement_version() {
    let app = spawn_app_with(|settings| settings.agent_ttl_ms = 1_000).await;
    app.api.heartbeat(HEARTBEAT).await;
    let version = app.api.placement_version().await;

    actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.api.agents().await.body["agents"], serde_json::json!([]));
    app.api.heartbeat(HEARTBEAT).await;

    assert!(app.api.placement_version().await > version);
}

#[actix_web::test]
async fn a_heartbeat_through_another_proxy_wakes_a_wait_on_the_agent_list() {
    let app = spawn_app_with(|_| {}).await;
    let other = app.another().await;
    let version = app.api.placement_version().await;

    let (reply, ()) = tokio::join!(app.api.agents_after(version, 20_000), async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(other.api.heartbeat(HEARTBEAT).await.status, 200);
    });

    assert_eq!(reply.body["version"], version + 1);
    assert_eq!(reply.body["agents"][0]["agent"], "127.0.0.1:7701");
}

#[actix_web::test]
async fn a_wait_on_the_agent_list_needs_a_version_to_wait_past() {
    let app = spawn_app_with(|_| {}).await;

    let reply = app.api.get("/agents?wait_ms=100").await;

    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eq!(
        reply.error(),
        "wait_ms and delta need after, the version to wait past"
    );
    assert_eq!(app.api.get("/agents?delta=true").await.status, 400);
    assert_eq!(app.api.get("/agents?after=x").await.status, 400);
}

#[actix_web::test]
async fn a_wait_with_delta_is_answered_only_the_agents_that_changed() {
    let app = spawn_app_with(|_| {}).await;
    for n in 1..=3 {
        app.api
            .heartbeat(&format!(
                r#"{{"agent":"10.0.0.{n}:7701","instances":[{{"worker":"add","count":1}}]}}"#
            ))
            .await;
    }
    let version = app.api.placement_version().await;
    let wait = format!("/agents?after={version}&wait_ms=20000&delta=true");

    let (reply, ()) = tokio::join!(app.api.get(&wait), async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        app.api
            .heartbeat(r#"{"agent":"10.0.0.2:7701","instances":[{"worker":"add","count":4}]}"#)
            .await;
    });

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["since"], version);
    assert_eq!(reply.body["version"], version + 1);
    let agents = reply.body["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{reply:?}");
    assert_eq!(agents[0]["agent"], "10.0.0.2:7701");
    assert_eq!(agents[0]["instances"][0]["count"], 4);
    assert!(reply.body.get("gone").is_none(), "{reply:?}");

    // A version this proxy does not know: the whole list, without `since`.
    let whole = app
        .api
        .get(&format!(
            "/agents?after={}&wait_ms=0&delta=true",
            version + 100
        ))
        .await;
    assert!(whole.body.get("since").is_none(), "{whole:?}");
    assert_eq!(whole.body["agents"].as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn an_agent_found_silent_ends_a_wait_and_is_answered_gone() {
    let app = spawn_app_with(|settings| settings.agent_ttl_ms = 1_000).await;
    app.api.heartbeat(HEARTBEAT).await;
    let version = app.api.placement_version().await;

    let reply = app
        .api
        .get(&format!("/agents?after={version}&wait_ms=20000&delta=true"))
        .await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["since"], version);
    assert_eq!(reply.body["gone"], serde_json::json!(["127.0.0.1:7701"]));
    assert_eq!(reply.body["agents"], serde_json::json!([]));
}

#[actix_web::test]
async fn concurrent_heartbeats_of_many_agents_are_all_recorded() {
    let app = spawn_app_with(|_| {}).await;
    let beats = (0..300).map(|n| {
        let api = &app.api;
        async move {
            let body = format!(
                r#"{{"agent":"10.1.{}.{}:7701","instances":[{{"worker":"add","count":1}}]}}"#,
                n / 256,
                n % 256
            );
            api.heartbeat(&body).await.status
        }
    });

    let statuses = futures_util::future::join_all(beats).await;

    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(
        app.api.agents().await.body["agents"]
            .as_array()
            .unwrap()
            .len(),
        300
    );
}
