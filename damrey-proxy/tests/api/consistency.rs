//! Races and restarts: transactions keep the store and its version consistent.

use futures_util::future::join_all;

use crate::helpers::{SEED, seed_stored, seed_warnings, spawn_app, spawn_on, worker};

#[actix_web::test]
async fn racing_adds_of_one_name_give_one_201_and_the_rest_409() {
    let app = spawn_app().await;
    let other = app.another().await;

    let adds = (0..10).map(|i| {
        let api = if i % 2 == 0 { &app.api } else { &other.api };
        api.add(worker("racer", i))
    });
    let replies = join_all(adds).await;

    let mut statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    let winner = replies.iter().find(|reply| reply.status == 201).unwrap();
    let list = app.api.workers().await.body;
    assert_eq!(list["version"], 1);
    assert_eq!(list["workers"], serde_json::json!([winner.body]));
}

#[actix_web::test]
async fn racing_changes_and_a_delete_leave_a_consistent_state() {
    let app = spawn_app().await;
    let other = app.another().await;
    app.api.add(worker("w", 0)).await;

    let changes = (1..=8).map(|mpu| {
        let api = if mpu % 2 == 0 { &app.api } else { &other.api };
        api.chg(worker("w", mpu))
    });
    let (changed, deleted) = tokio::join!(join_all(changes), other.api.del(r#"{"name":"w"}"#));

    assert_eq!(deleted.status, 200, "{deleted:?}");
    let successes = changed.iter().filter(|reply| reply.status == 200).count();
    for reply in &changed {
        assert!(matches!(reply.status, 200 | 404), "{reply:?}");
    }
    // Every success bumped the version exactly once; no failure did.
    let list = app.api.workers().await.body;
    assert_eq!(list["version"].as_u64().unwrap(), 2 + successes as u64);
    assert_eq!(list["workers"], serde_json::json!([]));
}

#[actix_web::test]
async fn racing_changes_store_one_of_the_written_configs() {
    let app = spawn_app().await;
    let other = app.another().await;
    app.api.add(worker("w", 0)).await;

    let changes = (1..=8).map(|mpu| {
        let api = if mpu % 2 == 0 { &app.api } else { &other.api };
        api.chg(worker("w", mpu))
    });
    let replies = join_all(changes).await;

    assert!(
        replies.iter().all(|reply| reply.status == 200),
        "{replies:?}"
    );
    let stored = app.api.worker("w").await.body;
    assert!(replies.iter().any(|reply| reply.body == stored), "{stored}");
    assert_eq!(app.api.version().await, 9);
}

#[actix_web::test]
async fn racing_deletes_of_one_worker_give_one_200_and_the_rest_404() {
    let app = spawn_app().await;
    let other = app.another().await;
    app.api.add(SEED).await;

    let deletes = (0..6).map(|i| {
        let api = if i % 2 == 0 { &app.api } else { &other.api };
        api.del(r#"{"name":"entry"}"#)
    });
    let mut statuses: Vec<u16> = join_all(deletes).await.iter().map(|r| r.status).collect();

    statuses.sort_unstable();
    assert_eq!(statuses, [200, 404, 404, 404, 404, 404]);
    assert_eq!(app.api.version().await, 2);
}

#[actix_web::test]
async fn a_restarted_proxy_on_the_same_database_lists_every_worker_again() {
    let app = spawn_app().await;
    app.api.add(SEED).await;
    app.api.add(worker("a", 1)).await;
    app.api.add(worker("b", 2)).await;
    app.api.del(worker("b", 2)).await;
    let before = app.api.workers().await.body;
    app.stop().await;
    app.store.close().await;

    let restarted = spawn_on(app.db.clone(), |_| {}).await;

    let after = restarted.api.workers().await.body;
    assert_eq!(after, before);
    assert_eq!(
        after,
        serde_json::json!({"version": 4, "workers": [worker("a", 1), seed_stored()], "warnings": seed_warnings()})
    );
    assert_eq!(restarted.api.add(worker("c", 3)).await.status, 201);
    assert_eq!(restarted.api.version().await, 5);
}
