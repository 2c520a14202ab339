//! A Postgres outage under load: 503s, never a hang or a crash, and recovery by itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use damrey_proxy::Store;
use damrey_proxy::store::{StoreError, StoreOptions};
use futures_util::future::join_all;

use crate::helpers::{Forwarder, SEED, fresh_database, host_port, spawn_on, with_host, worker};

#[actix_web::test]
async fn a_postgres_outage_answers_503_and_the_proxy_recovers_by_itself() {
    let db = fresh_database().await;
    if db.backend != damrey_proxy::store::Backend::Postgres {
        eprintln!("skipped: the outage test needs Postgres (set DATABASE_URL)");
        return;
    }
    let forwarder = Forwarder::start(host_port(&db.url)).await;
    let through = with_host(&db.url, &format!("127.0.0.1:{}", forwarder.port));
    let app = spawn_on(Arc::new(db), |settings| {
        settings.database_url = Some(through);
        settings.acquire_timeout_ms = 1_000;
    })
    .await;
    assert_eq!(app.api.add(SEED).await.status, 201);

    // Load: eight clients reading in a loop for the whole test.
    let running = Arc::new(AtomicBool::new(true));
    let load = (0..8).map(|_| {
        let (api, running) = (app.api.clone(), running.clone());
        async move {
            let mut seen = BTreeMap::new();
            while running.load(Ordering::Relaxed) {
                *seen.entry(api.workers().await.status).or_insert(0) += 1;
            }
            seen
        }
    });
    let checks = async {
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        forwarder.cut();

        let during = tokio::join!(
            app.api.healthz(),
            app.api.workers(),
            app.api.add(worker("during", 1)),
            app.api.worker("entry"),
        );
        for reply in [during.0, during.1, during.2, during.3] {
            assert_eq!(reply.status, 503, "{reply:?}");
            assert_eq!(reply.error(), "the store is unavailable; try again shortly");
        }
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;

        forwarder.restore();
        let deadline = Instant::now() + Duration::from_secs(15);
        while app.api.healthz().await.status != 200 {
            assert!(Instant::now() < deadline, "the proxy did not recover");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(app.api.add(worker("after", 1)).await.status, 201);
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        running.store(false, Ordering::Relaxed);
    };
    let (seen, ()) = tokio::join!(join_all(load), checks);

    let mut total = BTreeMap::new();
    for client in seen {
        for (status, count) in client {
            *total.entry(status).or_insert(0) += count;
        }
    }
    assert_eq!(
        total.keys().copied().collect::<Vec<u16>>(),
        [200, 503],
        "{total:?}"
    );
    let names: Vec<String> = app.api.workers().await.body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["after", "entry"]);
}

#[actix_web::test]
async fn a_database_that_stops_answering_mid_query_gives_503_not_a_hang() {
    let db = fresh_database().await;
    if db.backend != damrey_proxy::store::Backend::Postgres {
        eprintln!("skipped: the partition test needs Postgres (set DATABASE_URL)");
        return;
    }
    let forwarder = Forwarder::start(host_port(&db.url)).await;
    let through = with_host(&db.url, &format!("127.0.0.1:{}", forwarder.port));
    let through_again = through.clone();
    let app = spawn_on(Arc::new(db), |settings| {
        settings.database_url = Some(through);
        settings.acquire_timeout_ms = 1_000;
        settings.query_timeout_ms = 1_500;
    })
    .await;
    assert_eq!(app.api.add(SEED).await.status, 201);
    // A store whose pool would wait long: only the query timeout can end the wait.
    let patient = Store::open(&StoreOptions {
        url: through_again,
        max_connections: 1,
        acquire_timeout: Duration::from_secs(60),
        query_timeout: Duration::from_millis(1_000),
    })
    .unwrap();
    assert_eq!(patient.version().await.unwrap(), 1);

    forwarder.stall();
    let stalled = patient.version().await;
    assert!(
        matches!(stalled, Err(StoreError::TimedOut(_))),
        "{stalled:?}"
    );
    let during = tokio::join!(
        app.api.workers(),
        app.api.add(worker("during", 1)),
        app.api.chg(SEED),
        app.api.healthz(),
    );

    for reply in [during.0, during.1, during.2, during.3] {
        assert_eq!(reply.status, 503, "{reply:?}");
    }
    forwarder.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.api.healthz().await.status != 200 {
        assert!(Instant::now() < deadline, "the proxy did not recover");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> = app.api.workers().await.body["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names == ["entry"] || names == ["during", "entry"],
        "{names:?}"
    );
}
