//! One worker: supervision, step timeouts, mpu and stop.

use std::time::{Duration, Instant};

use damrey_actors::prelude::*;
use damrey_actors::testkit;

use crate::support::{Panicky, Sleeper, count, join_all};

const SECOND: Duration = Duration::from_secs(1);

#[actix::test]
async fn a_panic_mid_message_answers_error_and_the_next_message_is_processed() {
    let worker = Worker::new(Config::named("panicky"))
        .detached()
        .start(|| Panicky)
        .await
        .unwrap();

    let failed = worker
        .call(Message::request("echo", ["panic"]), SECOND)
        .await;
    let next = worker
        .call(Message::request("echo", ["fine"]), SECOND)
        .await;

    assert_eq!(
        failed,
        Message::error(
            "echo",
            "worker panicky panicked processing this message and was restarted"
        )
    );
    assert_eq!(next, Message::response("echo", ["fine"]));
    assert_eq!(worker.restarts(), 1);
}

#[actix::test]
async fn a_panic_ends_the_line_with_the_panic_fault_a_gateway_answers_500() {
    let mesh = TestMesh::new([WorkerSpec::new("panicky").command("echo", "")]).unwrap();
    mesh.start("panicky", || Panicky).await.unwrap();
    let router = mesh.router();

    let failed = router
        .request_terminal("panicky", Message::request("echo", ["panic"]), SECOND)
        .await;
    let fine = router
        .request_terminal("panicky", Message::request("echo", ["fine"]), SECOND)
        .await;

    assert_eq!(failed.fault, Some(damrey_actors::Fault::Panic));
    assert_eq!(failed.http_status(), 500);
    assert_eq!(failed.message.tag, Tag::Error);
    assert_eq!((fine.fault, fine.http_status()), (None, 200));
}

#[actix::test]
async fn messages_queued_behind_a_panic_go_to_the_restarted_actor() {
    let worker = Worker::new(Config::named("panicky"))
        .detached()
        .start(|| Panicky)
        .await
        .unwrap();

    let replies = join_all(["a", "panic", "b", "c", "d"].map(|arg| {
        let worker = worker.clone();
        async move { worker.call(Message::request("echo", [arg]), SECOND).await }
    }))
    .await;

    assert_eq!(replies[0], Message::response("echo", ["a"]));
    assert_eq!(replies[1].tag, Tag::Error);
    for (reply, arg) in replies[2..].iter().zip(["b", "c", "d"]) {
        assert_eq!(*reply, Message::response("echo", [arg]));
    }
    assert_eq!(worker.restarts(), 1);
}

#[actix::test]
async fn a_panic_inside_a_handler_future_answers_error_and_keeps_the_actor() {
    let worker = Worker::new(Config::named("sleeper"))
        .detached()
        .start(Sleeper::default)
        .await
        .unwrap();

    let failed = worker
        .call(Message::request("nap", ["panic"]), SECOND)
        .await;
    let next = worker.call(Message::request("nap", ["1"]), SECOND).await;

    assert_eq!(
        failed,
        Message::error("nap", "worker sleeper panicked processing this message")
    );
    assert_eq!(next, Message::response("nap", ["1"]));
    assert_eq!(worker.restarts(), 0);
}

#[actix::test]
async fn a_step_longer_than_the_worker_timeout_is_answered_timeout() {
    let config = Config {
        timeout: Duration::from_millis(100),
        ..Config::named("sleeper")
    };
    let worker = Worker::new(config)
        .detached()
        .start(Sleeper::default)
        .await
        .unwrap();

    let started = Instant::now();
    let reply = worker
        .call(Message::request("nap", ["2000"]), 10 * SECOND)
        .await;

    assert_eq!(reply, Message::timeout());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < SECOND,
        "{waited:?}"
    );
}

#[actix::test]
async fn mpu_one_processes_one_message_at_a_time() {
    let (sleeper, worker) = sleeper_with_mpu(1).await;

    let replies = naps(&worker, 8, "10").await;

    assert!(
        replies
            .iter()
            .all(|r| *r == Message::response("nap", ["10"]))
    );
    assert_eq!(count(&sleeper.most), 1);
}

#[actix::test]
async fn mpu_caps_concurrency_without_serializing() {
    let (sleeper, worker) = sleeper_with_mpu(3).await;

    naps(&worker, 12, "20").await;

    assert_eq!(count(&sleeper.most), 3);
}

#[actix::test]
async fn stop_answers_stop_to_queued_messages_and_lets_the_one_in_process_finish() {
    let (sleeper, worker) = sleeper_with_mpu(1).await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let worker = worker.clone();
            actix_rt::spawn(async move {
                worker
                    .call(Message::request("nap", ["200"]), 5 * SECOND)
                    .await
            })
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(50)).await;

    worker.stop().await;

    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    assert_eq!(replies[0], Message::response("nap", ["200"]));
    assert_eq!(
        replies[1..],
        [Message::stop(), Message::stop(), Message::stop()]
    );
    assert_eq!(count(&sleeper.done), 1);
    let after = worker.call(Message::request("nap", ["1"]), SECOND).await;
    assert_eq!(after, Message::stop());
}

#[actix::test]
async fn the_test_kit_calls_one_worker() {
    let reply = testkit::call(|| Panicky, Message::request("echo", ["x", "y"])).await;
    assert_eq!(reply, Message::response("echo", ["x", "y"]));
}

/// A `Sleeper` worker capped at `mpu`, and the sleeper to read its counters from.
async fn sleeper_with_mpu(mpu: u32) -> (Sleeper, WorkerHandle) {
    let sleeper = Sleeper::default();
    let worker = Worker::new(Config::named("sleeper"))
        .detached()
        .mpu(mpu)
        .start(sleeper.factory())
        .await
        .unwrap();
    (sleeper, worker)
}

/// Puts `calls` naps of `ms` milliseconds to `worker` at once; their replies in order.
async fn naps(worker: &WorkerHandle, calls: usize, ms: &'static str) -> Vec<Message> {
    join_all((0..calls).map(|_| {
        let worker = worker.clone();
        async move { worker.call(Message::request("nap", [ms]), 5 * SECOND).await }
    }))
    .await
}

#[actix::test]
async fn a_changed_mpu_takes_effect_on_an_attached_instance_at_once() {
    let spec = |mpu: u32| WorkerSpec::new("sleeper").mpu(mpu).command("nap", "");
    let router = Router::new([spec(1)]).unwrap();
    let sleeper = Sleeper::default();
    Worker::new(Config::named("sleeper"))
        .attach(&router)
        .start(sleeper.factory())
        .await
        .unwrap();
    let naps = |calls: usize| {
        join_all((0..calls).map(|_| {
            let router = router.clone();
            async move {
                router
                    .request("sleeper", Message::request("nap", ["30"]), 5 * SECOND)
                    .await
            }
        }))
    };
    naps(4).await;
    assert_eq!(count(&sleeper.most), 1);

    for (mpu, most) in [(3, 3), (0, 8), (2, 2)] {
        router.set_specs([spec(mpu)]).unwrap();
        sleeper.most.store(0, std::sync::atomic::Ordering::SeqCst);
        let replies = naps(8).await;
        assert!(
            replies
                .iter()
                .all(|r| *r == Message::response("nap", ["30"]))
        );
        assert_eq!(count(&sleeper.most), most, "with mpu {mpu}");
    }
}

#[actix::test]
async fn an_mpu_set_in_code_stays_when_the_config_changes() {
    let spec = |mpu: u32| WorkerSpec::new("sleeper").mpu(mpu).command("nap", "");
    let router = Router::new([spec(0)]).unwrap();
    let sleeper = Sleeper::default();
    let worker = Worker::new(Config::named("sleeper"))
        .attach(&router)
        .mpu(1)
        .start(sleeper.factory())
        .await
        .unwrap();
    router.set_specs([spec(4)]).unwrap();

    naps(&worker, 6, "20").await;

    assert_eq!(count(&sleeper.most), 1);
}
