//! Every row of DESIGN §6's table, with the seed's JSON.

use crate::helpers::{SEED, seed_stored, seed_warnings, spawn_app, worker};

#[actix_web::test]
async fn adding_the_seed_worker_answers_201_with_the_stored_worker() {
    let app = spawn_app().await;

    let reply = app.api.add(SEED).await;

    let mut answered = seed_stored();
    answered["warnings"] =
        serde_json::json!([r#"type "test" goes to worker testWorker, which is not configured"#]);
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body, answered);
    assert_eq!(app.api.worker("entry").await.body, seed_stored());
}

/// Configs may arrive in any order: what cannot carry a line yet is stored, and the
/// answer says why in `warnings`.
#[actix_web::test]
async fn a_config_that_cannot_carry_its_line_yet_is_stored_with_warnings() {
    let app = spawn_app().await;

    let early = app
        .api
        .add(r#"{"name":"add","commands":[{"name":"sqsum","worker":"square"}]}"#)
        .await;
    let complete = app
        .api
        .add(r#"{"name":"square","commands":[{"name":"sqsum","worker":""}]}"#)
        .await;
    let looped = app
        .api
        .chg(r#"{"name":"square","commands":[{"name":"sqsum","worker":"add"}]}"#)
        .await;

    assert_eq!(early.status, 201, "{early:?}");
    assert_eq!(
        early.body["warnings"],
        serde_json::json!([r#"type "sqsum" goes to worker square, which is not configured"#])
    );
    assert_eq!(complete.status, 201, "{complete:?}");
    assert!(complete.body.get("warnings").is_none(), "{complete:?}");
    assert_eq!(looped.status, 200, "{looped:?}");
    assert_eq!(
        looped.body["warnings"],
        serde_json::json!([
            r#"type "sqsum" loops: square => add => square (it would end at the hop limit)"#
        ])
    );
    assert_eq!(
        app.api.worker("square").await.body["commands"][0]["worker"],
        "add",
        "stored all the same"
    );
    let listed = app.api.workers().await.body;
    assert_eq!(
        listed["warnings"]["square"], looped.body["warnings"],
        "the list (which the dashboard shows) carries them too: {listed}"
    );
    assert_eq!(
        listed["warnings"]["add"],
        serde_json::json!([
            r#"type "sqsum" loops: add => square => add (it would end at the hop limit)"#
        ])
    );
}

#[actix_web::test]
async fn adding_a_name_that_exists_answers_409_and_keeps_the_first() {
    let app = spawn_app().await;
    app.api.add(SEED).await;

    let reply = app.api.add(worker("entry", 7)).await;

    assert_eq!(reply.status, 409);
    assert_eq!(reply.error(), r#"worker "entry" already exists"#);
    assert_eq!(app.api.worker("entry").await.body, seed_stored());
}

#[actix_web::test]
async fn mpu_given_as_a_number_is_stored_and_written_as_a_string() {
    let app = spawn_app().await;

    let reply = app.api.add(r#"{"name":"n","mpu":12}"#).await;

    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.body,
        serde_json::json!({"name":"n","agent":"","mpu":"12","commands":[]})
    );
}

#[actix_web::test]
async fn deleting_by_name_answers_200_with_the_removed_worker() {
    let app = spawn_app().await;
    app.api.add(SEED).await;

    let reply = app.api.del(r#"{"name":"entry"}"#).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, seed_stored());
    assert_eq!(app.api.worker("entry").await.status, 404);
}

#[actix_web::test]
async fn deleting_with_the_whole_worker_json_works_too() {
    let app = spawn_app().await;
    app.api.add(SEED).await;

    let reply = app.api.del(SEED).await;

    assert_eq!((reply.status, reply.body), (200, seed_stored()));
}

#[actix_web::test]
async fn deleting_an_unknown_worker_answers_404() {
    let app = spawn_app().await;

    let reply = app.api.del(r#"{"name":"ghost"}"#).await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), r#"no worker named "ghost""#);
}

#[actix_web::test]
async fn changing_a_worker_answers_200_and_replaces_the_whole_config() {
    let app = spawn_app().await;
    app.api.add(SEED).await;
    let changed = serde_json::json!({"name":"entry","agent":"127.0.0.1:7701","mpu":"5",
        "commands":[{"name":"sqsum","worker":"","mpu":"0"}]});

    let reply = app.api.chg(&changed).await;

    assert_eq!((reply.status, &reply.body), (200, &changed));
    assert_eq!(app.api.worker("entry").await.body, changed);
}

#[actix_web::test]
async fn changing_an_unknown_worker_answers_404() {
    let app = spawn_app().await;

    let reply = app.api.chg(SEED).await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), r#"no worker named "entry""#);
}

#[actix_web::test]
async fn listing_answers_every_worker_sorted_with_the_version() {
    let app = spawn_app().await;
    assert_eq!(
        app.api.workers().await.body,
        serde_json::json!({"version": 0, "workers": []})
    );
    app.api.add(worker("b", 1)).await;
    app.api.add(SEED).await;
    app.api.add(worker("a", 2)).await;

    let reply = app.api.workers().await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        serde_json::json!({"version": 3, "workers": [worker("a", 2), worker("b", 1), seed_stored()], "warnings": seed_warnings()})
    );
}

#[actix_web::test]
async fn every_change_bumps_the_version_by_one_and_failures_do_not() {
    let app = spawn_app().await;

    app.api.add(SEED).await;
    assert_eq!(app.api.version().await, 1);
    app.api.chg(SEED).await;
    assert_eq!(app.api.version().await, 2);
    assert_eq!(app.api.add(SEED).await.status, 409);
    assert_eq!(app.api.chg(worker("ghost", 1)).await.status, 404);
    assert_eq!(app.api.del(worker("ghost", 1)).await.status, 404);
    assert_eq!(app.api.version().await, 2);
    app.api.del(SEED).await;
    assert_eq!(app.api.version().await, 3);
}

#[actix_web::test]
async fn getting_one_worker_answers_it_or_404() {
    let app = spawn_app().await;
    app.api.add(SEED).await;

    assert_eq!(app.api.worker("entry").await.body, seed_stored());
    let missing = app.api.worker("nobody").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error(), r#"no worker named "nobody""#);
}

#[actix_web::test]
async fn healthz_answers_200_while_the_store_answers_and_503_after_it_closes() {
    let app = spawn_app().await;

    let reply = app.api.healthz().await;
    assert_eq!(
        (reply.status, reply.body),
        (200, serde_json::json!({"status":"ok"}))
    );

    app.store.close().await;
    let reply = app.api.healthz().await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error(), "the store is unavailable; try again shortly");
    assert_eq!(app.api.workers().await.status, 503);
}

#[actix_web::test]
async fn a_listing_shows_a_change_made_through_another_proxy_at_once() {
    let app = spawn_app().await;
    let other = app.another().await;
    app.api.add(worker("a", 1)).await;
    // The first listing is kept by this proxy for as long as the version stands.
    let before = app.api.workers().await;

    assert_eq!(other.api.chg(worker("a", 7)).await.status, 200);
    let after = app.api.workers().await;

    assert_eq!(before.body["workers"], serde_json::json!([worker("a", 1)]));
    assert_eq!(after.body["workers"], serde_json::json!([worker("a", 7)]));
    assert_eq!(
        after.body["version"],
        before.body["version"].as_i64().unwrap() + 1
    );
}

#[actix_web::test]
async fn a_workers_alarms_are_stored_listed_and_changed() {
    let app = spawn_app().await;
    let with_alarms = serde_json::json!({"name":"add","agent":"","mpu":"0","commands":[],
        "alarms":{"window_ms":5000,"error_rate":0.5}});
    let stored_alarms = serde_json::json!({"no_instance":true,"window_ms":5000,"min_messages":20,
        "error_rate":0.5,"timeout_rate":0.05,"p99_ms":1000.0,"ejected_ms":30000});

    let reply = app.api.add(&with_alarms).await;

    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body["alarms"], stored_alarms);
    assert_eq!(app.api.worker("add").await.body["alarms"], stored_alarms);
    assert_eq!(
        app.api.workers().await.body["workers"][0]["alarms"],
        stored_alarms
    );
    // A change without `alarms` drops them; one with them stores the new ones.
    let plain = app.api.chg(worker("add", 0)).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(plain.body.get("alarms").is_none(), "{plain:?}");
    assert!(app.api.worker("add").await.body.get("alarms").is_none());
    let again = serde_json::json!({"name":"add","alarms":{"no_instance":false}});
    assert_eq!(app.api.chg(&again).await.status, 200);
    assert_eq!(
        app.api.worker("add").await.body["alarms"]["no_instance"],
        false
    );
}

#[actix_web::test]
async fn a_workers_outlier_settings_are_stored_listed_and_changed() {
    let app = spawn_app().await;
    let with_outlier = serde_json::json!({"name":"add","agent":"","mpu":"1","commands":[],
        "outlier":{"consecutive_failures":2,"max_queue":50}});
    let stored_outlier = serde_json::json!({"consecutive_failures":2,"window_ms":10000,
        "min_steps":20,"failure_rate":0.5,"ejection_ms":1000,"max_ejection_ms":60000,
        "probation_steps":3,"max_queue":50});

    let reply = app.api.add(&with_outlier).await;

    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.body["outlier"], stored_outlier);
    assert_eq!(app.api.worker("add").await.body["outlier"], stored_outlier);
    assert_eq!(
        app.api.workers().await.body["workers"][0]["outlier"],
        stored_outlier
    );
    let plain = app.api.chg(worker("add", 0)).await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert!(app.api.worker("add").await.body.get("outlier").is_none());
    let bad = app
        .api
        .chg(&serde_json::json!({"name":"add","outlier":{"max_queue":0}}))
        .await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.body["error"]
            .as_str()
            .unwrap()
            .contains("outlier.max_queue 0 must be at least 1"),
        "{bad:?}"
    );
    assert!(app.api.worker("add").await.body.get("outlier").is_none());
}

#[actix_web::test]
async fn bad_alarms_are_answered_400_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    app.api.add(worker("add", 0)).await;
    let version = app.api.version().await;
    let cases = [
        (
            r#"{"window_ms":10}"#,
            "alarms.window_ms 10 must be from 1000",
        ),
        (r#"{"error_rate":0}"#, "alarms.error_rate 0 must be over 0"),
        (
            r#"{"timeout_rate":2}"#,
            "alarms.timeout_rate 2 must be over 0",
        ),
        (r#"{"p99_ms":-1}"#, "alarms.p99_ms -1 must be over 0"),
        (r#"{"colour":1}"#, "unknown field `colour`"),
    ];
    for (alarms, expected) in cases {
        for (name, send) in [("new", "add"), ("add", "chg")] {
            let body = format!(r#"{{"name":"{name}","alarms":{alarms}}}"#);
            let reply = if send == "add" {
                app.api.add(&body).await
            } else {
                app.api.chg(&body).await
            };
            assert_eq!(reply.status, 400, "{body}: {reply:?}");
            assert!(reply.error().contains(expected), "{body}: {reply:?}");
        }
    }

    assert_eq!(app.api.version().await, version);
    assert_eq!(app.api.worker("new").await.status, 404);
    assert_eq!(app.api.worker("add").await.body, worker("add", 0));
}
