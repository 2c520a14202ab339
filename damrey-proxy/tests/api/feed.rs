//! The change feed: `GET /workers/get?after=N&wait_ms=M`.

use std::time::{Duration, Instant};

use crate::helpers::{SEED, seed_stored, seed_warnings, spawn_app, worker};

#[actix_web::test]
async fn a_waiter_gets_a_change_made_through_another_proxy_on_the_same_database() {
    let app = spawn_app().await;
    let other = app.another().await;
    app.api.add(worker("a", 1)).await;
    let version = app.api.version().await;

    let started = Instant::now();
    let (reply, ()) = tokio::join!(app.api.workers_after(version, 20_000), async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(other.api.add(SEED).await.status, 201);
    });

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        serde_json::json!({"version": version + 1, "workers": [worker("a", 1), seed_stored()], "warnings": seed_warnings()})
    );
    // Woken by the change, not by the end of the 20 s wait.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_waiter_gets_a_change_made_through_the_same_proxy() {
    let app = spawn_app().await;

    let started = Instant::now();
    let (reply, ()) = tokio::join!(app.api.workers_after(0, 20_000), async {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        app.api.add(SEED).await;
    });

    assert_eq!(
        reply.body,
        serde_json::json!({"version": 1, "workers": [seed_stored()], "warnings": seed_warnings()})
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_wait_with_no_change_answers_200_with_the_current_state_when_it_times_out() {
    let app = spawn_app().await;
    app.api.add(SEED).await;

    let started = Instant::now();
    let reply = app.api.workers_after(1, 400).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        serde_json::json!({"version": 1, "workers": [seed_stored()], "warnings": seed_warnings()})
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_waiter_behind_the_current_version_is_answered_at_once() {
    let app = spawn_app().await;
    app.api.add(SEED).await;
    app.api.add(worker("b", 1)).await;

    let started = Instant::now();
    let behind = app.api.workers_after(1, 20_000).await;
    let ahead = app.api.workers_after(99, 20_000).await;

    assert_eq!(behind.body["version"], 2);
    assert_eq!(ahead.body["version"], 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn many_waiters_are_all_woken_by_one_change() {
    let app = spawn_app().await;
    let other = app.another().await;

    let waits = (0..8).map(|_| app.api.workers_after(0, 20_000));
    let (replies, ()) = tokio::join!(futures_util::future::join_all(waits), async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        other.api.add(SEED).await;
    });

    for reply in replies {
        assert_eq!(
            reply.body,
            serde_json::json!({"version": 1, "workers": [seed_stored()], "warnings": seed_warnings()})
        );
    }
}
