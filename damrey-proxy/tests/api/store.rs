//! The store on its own, on the backend the run uses (Postgres with DATABASE_URL, else SQLite).

use std::time::Duration;

use damrey_proxy::Store;
use damrey_proxy::alarm::{Condition, Rule};
use damrey_proxy::store::placement::Known;
use damrey_proxy::store::stats::{RoutePair, RouteSample};
use damrey_proxy::store::{Placement, StoreError, StoreOptions};
use damrey_wire::WorkerSpec;
use damrey_wire::report::{Heartbeat, InstanceCount, InstanceReport, Latency, Routing};
use sqlx::Connection;

use crate::helpers::{fresh_database, open_store};

#[actix_web::test]
async fn migrations_apply_once_and_running_them_again_changes_nothing() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    store.add_worker(&WorkerSpec::new("a")).await.unwrap();

    store.migrate().await.unwrap();
    let again = open_store(&db).await;

    assert_eq!(
        again.snapshot().await.unwrap().workers,
        [WorkerSpec::new("a")]
    );
    assert_eq!(again.version().await.unwrap(), 1);
}

/// The step and routing counters are declared once (`damrey_wire::steps`); each one a
/// report carries needs its column, which only a migration adds.
#[actix_web::test]
async fn the_migrations_give_every_declared_step_and_routing_counter_its_column() {
    let db = fresh_database().await;
    let store = open_store(&db).await;

    for (table, columns) in [
        ("instance_samples", InstanceReport::COUNTERS),
        ("route_samples", Routing::COUNTERS),
    ] {
        for column in columns {
            let read = sqlx::query(&format!("SELECT {column} FROM {table} WHERE 1 = 0"))
                .fetch_all(store.pool())
                .await
                .map(|rows| rows.len());

            assert!(
                read.is_ok(),
                "no column {column} in {table} on {:?}: add a migration ({read:?})",
                db.backend
            );
        }
    }
}

/// Routing counters are kept per agent and worker, read back two per series as the
/// instances' samples are (the newest and the window's baseline, zeros when the series
/// started within the window), pruned after the retention and forgotten with the agent.
#[actix_web::test]
async fn routing_counters_are_stored_per_agent_and_worker_and_read_back_in_pairs() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let ttl = Duration::from_secs(10);
    let beat = |agent: &str, routing: Option<Routing>| Heartbeat {
        agent: agent.to_owned(),
        instances: vec![],
        stats: vec![],
        routing: routing
            .into_iter()
            .map(|routing| ("idle".to_owned(), routing))
            .collect(),
        leaving: false,
    };
    let refused = |rejected_no_instance| Routing {
        rejected_no_instance,
        handoff_retries: 1,
        ..Routing::default()
    };
    let sample = |agent: &str, at_ms, routing| RouteSample {
        agent: agent.to_owned(),
        worker: "idle".to_owned(),
        at_ms,
        routing,
    };
    for (agent, routing, at_ms) in [
        ("h:1", Some(refused(2)), 1_000_000),
        ("h:1", Some(refused(7)), 1_005_000),
        ("h:2", Some(refused(1)), 1_006_000),
        // An agent from before the routing section: nothing to store.
        ("h:3", None, 1_006_000),
    ] {
        store
            .heartbeat(&beat(agent, routing), at_ms, ttl)
            .await
            .unwrap();
    }

    let pairs = store.route_pairs(1_004_000, 900_000).await.unwrap();

    assert_eq!(
        pairs,
        [
            RoutePair {
                latest: sample("h:1", 1_005_000, refused(7)),
                baseline: sample("h:1", 1_000_000, refused(2)),
            },
            RoutePair {
                latest: sample("h:2", 1_006_000, refused(1)),
                baseline: sample("h:2", 1_006_000, Routing::default()),
            },
        ]
    );
    assert_eq!(store.prune_samples(1_001_000).await.unwrap(), 1);
    assert!(store.forget_agent("h:2").await.unwrap().value);
    assert_eq!(
        store.route_pairs(1_004_000, 900_000).await.unwrap(),
        [RoutePair {
            latest: sample("h:1", 1_005_000, refused(7)),
            baseline: sample("h:1", 1_005_000, Routing::default()),
        }]
    );
}

#[actix_web::test]
async fn add_change_and_delete_round_trip_and_bump_the_version() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let spec = WorkerSpec::new("add")
        .mpu(100)
        .command("sqsum", "square")
        .command_mpu(1);

    let added = store.add_worker(&spec).await.unwrap();
    assert_eq!((added.version, &added.worker), (1, &spec));
    assert_eq!(store.worker("add").await.unwrap(), Some(spec.clone()));

    let changed_spec = WorkerSpec::new("add").agent("10.0.0.1:7701");
    let changed = store.change_worker(&changed_spec).await.unwrap();
    assert_eq!((changed.version, &changed.worker), (2, &changed_spec));

    let deleted = store.delete_worker("add").await.unwrap();
    assert_eq!((deleted.version, &deleted.worker), (3, &changed_spec));
    assert_eq!(store.worker("add").await.unwrap(), None);
    assert_eq!(store.version().await.unwrap(), 3);
}

#[actix_web::test]
async fn conflicts_and_missing_workers_are_typed_errors_that_leave_the_version() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    store.add_worker(&WorkerSpec::new("a")).await.unwrap();

    let conflict = store.add_worker(&WorkerSpec::new("a").mpu(3)).await;
    let missing_change = store.change_worker(&WorkerSpec::new("b")).await;
    let missing_delete = store.delete_worker("b").await;

    assert!(matches!(conflict, Err(StoreError::Conflict(name)) if name == "a"));
    assert!(matches!(missing_change, Err(StoreError::NotFound(name)) if name == "b"));
    assert!(matches!(missing_delete, Err(StoreError::NotFound(name)) if name == "b"));
    assert_eq!(store.version().await.unwrap(), 1);
    assert_eq!(store.worker("a").await.unwrap(), Some(WorkerSpec::new("a")));
}

#[actix_web::test]
async fn sql_metacharacters_in_a_name_are_stored_verbatim_never_executed() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    // Bypasses the API's validation on purpose: the SQL itself must be safe.
    let name = "x'); DROP TABLE workers; --";

    store.add_worker(&WorkerSpec::new(name)).await.unwrap();

    assert_eq!(
        store.worker(name).await.unwrap(),
        Some(WorkerSpec::new(name))
    );
    assert_eq!(store.snapshot().await.unwrap().workers.len(), 1);
    store.delete_worker(name).await.unwrap();
}

#[actix_web::test]
async fn the_snapshot_lists_workers_in_byte_order_with_the_version() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    for name in ["b", "B", "a", "_"] {
        store.add_worker(&WorkerSpec::new(name)).await.unwrap();
    }

    let snapshot = store.snapshot().await.unwrap();

    let names: Vec<&str> = snapshot.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["B", "_", "a", "b"]);
    assert_eq!(snapshot.version, 4);
}

fn beat(agent: &str, instances: &[(&str, u32)]) -> Heartbeat {
    Heartbeat {
        agent: agent.to_owned(),
        instances: instances
            .iter()
            .map(|(worker, count)| InstanceCount {
                worker: (*worker).to_owned(),
                count: *count,
            })
            .collect(),
        stats: vec![],
        routing: Default::default(),
        leaving: false,
    }
}

#[actix_web::test]
async fn agents_are_listed_until_the_sweep_finds_them_silent_past_the_ttl_and_each_change_moves_the_version()
 {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let ttl = Duration::from_secs(10);
    let heartbeat = beat("127.0.0.1:7701", &[("add", 2)]);

    let recorded = store.heartbeat(&heartbeat, 1_000_000, ttl).await.unwrap();
    let entry = recorded.value;

    assert_eq!(entry.first_seen_ms, 1_000_000);
    assert_eq!(recorded.placement, Some(1), "a new agent");
    assert_eq!(
        store.agents(1_010_000).await.unwrap(),
        Placement::whole(
            1,
            vec![damrey_proxy::registry::AgentEntry {
                age_ms: 10_000,
                ..entry.clone()
            }]
        )
    );
    // Within the TTL the sweep takes nobody off.
    assert_eq!(store.expire_agents(1_010_000, ttl).await.unwrap(), None);
    assert_eq!(
        store.expire_agents(1_010_001, ttl).await.unwrap(),
        Some(2),
        "found silent: a change of the placement"
    );
    assert_eq!(
        store.agents(1_010_001).await.unwrap(),
        Placement::whole(2, vec![])
    );
    assert_eq!(
        store.expire_agents(1_010_002, ttl).await.unwrap(),
        None,
        "once"
    );
    // It stays in the registry, for the agent_silent alarm.
    assert_eq!(
        store.agents_last_seen().await.unwrap(),
        [("127.0.0.1:7701".to_owned(), 1_000_000)]
    );

    // A new agent is listed, instances or not; one found silent that comes back
    // starts over.
    let without_instances = store
        .heartbeat(&beat("h:2", &[]), 1_020_001, ttl)
        .await
        .unwrap();
    assert_eq!(without_instances.placement, Some(3));
    let back = store.heartbeat(&heartbeat, 1_020_002, ttl).await.unwrap();
    assert_eq!(back.value.first_seen_ms, 1_020_002);
    assert_eq!(back.placement, Some(4));
    let again = store.heartbeat(&heartbeat, 1_021_000, ttl).await.unwrap();
    assert_eq!(again.placement, None, "the same instances again");
    assert_eq!(again.value.first_seen_ms, 1_020_002);
    let other = store
        .heartbeat(&beat("127.0.0.1:7701", &[("add", 3)]), 1_021_500, ttl)
        .await
        .unwrap();
    assert_eq!(other.placement, Some(5), "other instances");
    assert_eq!(store.agents(1_021_500).await.unwrap().agents.len(), 2);
}

#[actix_web::test]
async fn a_batch_of_heartbeats_is_recorded_at_once_and_moves_the_version_once() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let ttl = Duration::from_secs(10);
    let beats: Vec<Heartbeat> = (0..700)
        .map(|n| Heartbeat {
            stats: vec![InstanceReport::new("add".to_owned(), 1, Latency::default())],
            ..beat(&format!("10.0.{}.{}:7701", n / 256, n % 256), &[("add", 1)])
        })
        .collect();
    let batch: Vec<&Heartbeat> = beats.iter().collect();

    let recorded = store
        .heartbeats(&batch, &batch, 1_000_000, ttl)
        .await
        .unwrap();

    assert_eq!(recorded.placement, Some(1));
    assert_eq!(recorded.value.len(), 700);
    assert!(
        recorded
            .value
            .iter()
            .zip(&beats)
            .all(|(entry, beat)| entry.agent == beat.agent)
    );
    assert_eq!(store.agents(1_000_000).await.unwrap().agents.len(), 700);
    let unchanged = store
        .heartbeats(&batch, &batch[..100], 1_001_000, ttl)
        .await
        .unwrap();
    assert_eq!(unchanged.placement, None, "nothing listed changed");
    let pairs = store.sample_pairs(999_000, 0).await.unwrap();
    assert_eq!(pairs.len(), 700, "one series per instance");
    let sampled_again = pairs
        .iter()
        .filter(|pair| pair.latest.at_ms == 1_001_000)
        .count();
    assert_eq!(
        sampled_again, 100,
        "only the sampled heartbeats' samples are stored"
    );
}

#[actix_web::test]
async fn the_placement_is_served_from_memory_until_its_stored_version_moves() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    // Another proxy's store on the same database: its writes reach this one only
    // through the stored version.
    let other = open_store(&db).await;
    let ttl = Duration::from_secs(10);
    let now = damrey_proxy::store::now_ms();
    store
        .heartbeat(&beat("h:1", &[("add", 1)]), now, ttl)
        .await
        .unwrap();
    let held = store
        .placement(now, ttl, Known::Stored, None)
        .await
        .unwrap();
    assert_eq!(held.version, 1);

    // A row written behind the proxies' back, version unmoved: not read again.
    sqlx::query(
        r#"UPDATE agents SET instances = '[{"worker":"add","count":7}]' WHERE address = 'h:1'"#,
    )
    .execute(store.pool())
    .await
    .unwrap();
    assert_eq!(
        store
            .placement(now, ttl, Known::Stored, None)
            .await
            .unwrap(),
        held
    );
    assert_eq!(
        store
            .placement(now, ttl, Known::AtLeast(1), None)
            .await
            .unwrap(),
        held
    );

    // A change through the other proxy moves the version: read again, all of it.
    let moved = other
        .heartbeat(&beat("h:2", &[("square", 1)]), now, ttl)
        .await
        .unwrap();
    assert_eq!(moved.placement, Some(2));
    let fresh = store
        .placement(now, ttl, Known::Stored, None)
        .await
        .unwrap();
    assert_eq!(fresh.version, 2);
    let counts: Vec<(String, String, u32)> = fresh
        .agents
        .iter()
        .flat_map(|entry| {
            entry
                .instances
                .iter()
                .map(|i| (entry.agent.clone(), i.worker.clone(), i.count))
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("h:1".to_owned(), "add".to_owned(), 7),
            ("h:2".to_owned(), "square".to_owned(), 1)
        ]
    );

    // This proxy's own heartbeats that move nothing update the held entry in place.
    let later = now + 500;
    let beat_later = store
        .heartbeat(&beat("h:1", &[("add", 7)]), later, ttl)
        .await
        .unwrap();
    assert_eq!(beat_later.placement, None);
    let listed = store
        .placement(later, ttl, Known::AtLeast(2), None)
        .await
        .unwrap();
    assert_eq!(listed.version, 2);
    assert_eq!(listed.agents[0].last_seen_ms, later);
    assert_eq!(listed.agents[1].last_seen_ms, now);
    assert_eq!(listed.agents[1].age_ms, 500);
}

#[actix_web::test]
async fn an_agent_waiting_past_a_version_this_proxy_held_gets_only_the_changes_since() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let other = open_store(&db).await;
    let ttl = Duration::from_secs(10);
    let now = damrey_proxy::store::now_ms();
    for agent in ["h:1", "h:2", "h:3"] {
        store
            .heartbeat(&beat(agent, &[("add", 1)]), now, ttl)
            .await
            .unwrap();
    }
    let start = store
        .placement(now, ttl, Known::Stored, None)
        .await
        .unwrap();
    assert_eq!(
        (start.version, start.since, start.agents.len()),
        (3, None, 3)
    );

    // Two steps, one of them through another proxy: h:2 changes, h:3 leaves, h:4 joins.
    store
        .heartbeat(&beat("h:2", &[("add", 2)]), now, ttl)
        .await
        .unwrap();
    store
        .placement(now, ttl, Known::Stored, None)
        .await
        .unwrap();
    other
        .heartbeat(
            &Heartbeat {
                leaving: true,
                ..beat("h:3", &[])
            },
            now,
            ttl,
        )
        .await
        .unwrap();
    other
        .heartbeat(&beat("h:4", &[("square", 1)]), now, ttl)
        .await
        .unwrap();

    let changes = store
        .placement(now, ttl, Known::Stored, Some(3))
        .await
        .unwrap();
    assert_eq!(changes.version, 6);
    assert_eq!(changes.since, Some(3));
    let changed: Vec<(&str, u32)> = changes
        .agents
        .iter()
        .map(|entry| (entry.agent.as_str(), entry.instances[0].count))
        .collect();
    assert_eq!(changed, [("h:2", 2), ("h:4", 1)]);
    assert_eq!(changes.gone, ["h:3"]);
    let none = store
        .placement(now, ttl, Known::Stored, Some(6))
        .await
        .unwrap();
    assert_eq!(
        (none.since, none.agents.len(), none.gone.len()),
        (Some(6), 0, 0)
    );
    // A version this proxy never held (or no longer remembers): the whole list.
    let whole = store
        .placement(now, ttl, Known::Stored, Some(5))
        .await
        .unwrap();
    assert_eq!((whole.since, whole.agents.len()), (None, 3));
}

#[actix_web::test]
async fn resolved_alarms_are_pruned_by_age_and_active_ones_stay() {
    let db = fresh_database().await;
    let store = open_store(&db).await;
    let condition = |worker: &str| Condition {
        key: format!("no_instance:{worker}"),
        rule: Rule::NoInstance,
        worker: Some(worker.to_owned()),
        agent: None,
        message: format!("worker {worker} has no live instance"),
        value: Some(0.0),
        threshold: Some(1.0),
    };
    store.fire_alarm(&condition("old"), 1_000).await.unwrap();
    store.resolve_alarm("no_instance:old", 2_000).await.unwrap();
    store.fire_alarm(&condition("new"), 1_500).await.unwrap();
    store.resolve_alarm("no_instance:new", 5_000).await.unwrap();
    store.fire_alarm(&condition("open"), 500).await.unwrap();

    assert_eq!(store.prune_alarms(3_000).await.unwrap(), 1);

    let left: Vec<_> = store
        .alarm_history(10)
        .await
        .unwrap()
        .into_iter()
        .map(|alarm| alarm.condition.key)
        .collect();
    assert_eq!(left, ["no_instance:new", "no_instance:open"]);
}

#[actix_web::test]
async fn a_postgres_url_with_sslmode_require_connects_over_tls() {
    let db = fresh_database().await;
    if db.backend != damrey_proxy::store::Backend::Postgres {
        println!("skipped: TLS to the store is Postgres's; set DATABASE_URL");
        return;
    }
    let separator = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}sslmode=require", db.url);

    let store = Store::connect(&StoreOptions {
        url: url.clone(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(10),
    })
    .await
    .expect("the proxy's store connects with sslmode=require");
    assert_eq!(store.version().await.unwrap(), 0);
    let mut probe = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut probe)
            .await
            .unwrap();
    assert!(encrypted, "the connection is not encrypted");
    store.close().await;
}
