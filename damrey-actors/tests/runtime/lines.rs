//! Collaboration lines in one process: the routing rule, deadlines, the hop limit, load
//! sharing, the outbox, and exactly one reply under load.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use damrey_actors::prelude::*;
use damrey_actors::{Fault, WorkerError};

use crate::support::{Add, Entry, Sleeper, Square, count, counter, join_all};

/// The seed's line: entry => add => square, computing (a+b)^2.
async fn sqsum_line() -> (TestMesh, [Arc<AtomicUsize>; 3]) {
    let mesh = TestMesh::new([
        WorkerSpec::new("entry").command("sqsum", "add"),
        WorkerSpec::new("add").command("sqsum", "square"),
        WorkerSpec::new("square").command("sqsum", ""),
    ])
    .unwrap();
    let calls = [counter(), counter(), counter()];
    let [entry, add, square] = calls.clone();
    mesh.start("entry", move || Entry(entry.clone()))
        .await
        .unwrap();
    mesh.start("add", move || Add(add.clone())).await.unwrap();
    mesh.start("square", move || Square(square.clone()))
        .await
        .unwrap();
    (mesh, calls)
}

#[actix::test]
async fn a_request_runs_the_whole_line_and_the_final_reply_comes_back() {
    let (mesh, calls) = sqsum_line().await;

    let reply = mesh
        .request("entry", Message::request("sqsum", ["3", "4"]))
        .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    assert_eq!(calls.each_ref().map(|c| count(c)), [1, 1, 1]);
}

#[actix::test]
async fn an_unknown_type_is_answered_with_error_naming_worker_and_type() {
    let (mesh, calls) = sqsum_line().await;

    let reply = mesh.request("entry", Message::request("cube", ["3"])).await;

    assert_eq!(
        reply,
        Message::error("cube", "worker entry does not accept type \"cube\"")
    );
    assert_eq!(count(&calls[0]), 0);
}

#[actix::test]
async fn an_unknown_worker_is_answered_with_error_at_once() {
    let (mesh, _) = sqsum_line().await;

    let reply = mesh
        .request("nobody", Message::request("sqsum", ["3"]))
        .await;

    assert_eq!(
        reply,
        Message::error("sqsum", "no worker named \"nobody\" is configured")
    );
}

#[actix::test]
async fn a_configured_worker_without_instances_is_answered_with_error() {
    let mesh = TestMesh::new([WorkerSpec::new("idle").command("t", "")]).unwrap();

    let reply = mesh.request("idle", Message::request("t", ["1"])).await;

    assert_eq!(
        reply,
        Message::error("t", "worker idle has no live instance")
    );
}

#[actix::test]
async fn an_error_mid_line_ends_the_line() {
    let (mesh, calls) = sqsum_line().await;

    let reply = mesh
        .request("entry", Message::request("sqsum", ["3", "x"]))
        .await;

    assert_eq!(reply.tag, Tag::Error);
    assert_eq!(reply.kind, "sqsum");
    assert_eq!(count(&calls[2]), 0, "square must not run after an ERROR");
}

#[actix::test]
async fn a_result_of_a_type_the_worker_does_not_list_is_an_error() {
    let mesh = TestMesh::new([
        WorkerSpec::new("add").command("sqsum", "square"),
        WorkerSpec::new("square").command("other", ""),
    ])
    .unwrap();
    mesh.start("add", || Add(counter())).await.unwrap();

    let reply = mesh.request("add", Message::request("sum", ["1"])).await;
    assert_eq!(
        reply,
        Message::error("sum", "worker add does not accept type \"sum\"")
    );

    let mesh = TestMesh::new([WorkerSpec::new("entry").command("sqsum", "")]).unwrap();
    let entry = mesh.start("entry", || Entry(counter())).await.unwrap();
    let reply = entry
        .request(Message::request("cube", ["1"]), Duration::from_secs(1))
        .await;
    assert_eq!(
        reply,
        Message::error("cube", "worker entry has no command for type \"cube\"")
    );
}

#[actix::test]
async fn a_loop_ends_with_error_at_the_hop_limit() {
    let mesh = TestMesh::new([
        WorkerSpec::new("ping").command("ball", "pong"),
        WorkerSpec::new("pong").command("ball", "ping"),
    ])
    .unwrap();
    let calls = counter();
    let (ping, pong) = (calls.clone(), calls.clone());
    mesh.start("ping", move || Entry(ping.clone()))
        .await
        .unwrap();
    mesh.start("pong", move || Entry(pong.clone()))
        .await
        .unwrap();

    let reply = mesh.request("ping", Message::request("ball", ["1"])).await;

    assert_eq!(
        reply,
        Message::error(
            "ball",
            "the line reached the limit of 64 hops at worker ping; check the configs for a loop"
        )
    );
    assert_eq!(count(&calls), 64);
}

#[actix::test]
async fn a_deadline_shorter_than_the_line_is_answered_timeout() {
    let mesh = TestMesh::new([
        WorkerSpec::new("first").command("nap", "second"),
        WorkerSpec::new("second").command("nap", ""),
    ])
    .unwrap();
    let second = Sleeper::default();
    mesh.start("first", Sleeper::default).await.unwrap();
    let factory = second.factory();
    mesh.start("second", factory).await.unwrap();

    let started = Instant::now();
    let reply = mesh
        .request_within(
            "first",
            Message::request("nap", ["200"]),
            Duration::from_millis(300),
        )
        .await;

    assert_eq!(reply, Message::timeout());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    assert_eq!(
        count(&second.done),
        0,
        "the second step had only 100 ms for a 200 ms nap"
    );
}

#[actix::test]
async fn instances_of_one_worker_share_the_load_by_least_in_flight() {
    let mesh = TestMesh::new([WorkerSpec::new("nap").command("nap", "")]).unwrap();
    let (one, two) = (Sleeper::default(), Sleeper::default());
    for sleeper in [one.clone(), two.clone()] {
        mesh.start("nap", move || sleeper.clone()).await.unwrap();
    }

    let replies = join_all((0..10).map(|_| {
        let router = mesh.router().clone();
        async move {
            router
                .request(
                    "nap",
                    Message::request("nap", ["50"]),
                    Duration::from_secs(5),
                )
                .await
        }
    }))
    .await;

    assert!(replies.iter().all(|r| r.tag == Tag::Response));
    assert_eq!((count(&one.done), count(&two.done)), (5, 5));
}

#[actix::test]
async fn a_worker_request_goes_along_its_line_and_the_reply_comes_back_to_it() {
    let (mesh, calls) = sqsum_line().await;
    let entry = mesh.start("entry", || Entry(counter())).await.unwrap();

    let reply = entry
        .request(
            Message::request("sqsum", ["5", "6"]),
            Duration::from_secs(1),
        )
        .await;

    assert_eq!(reply, Message::response("sqsum", ["121"]));
    assert_eq!(count(&calls[1]), 1);
}

#[actix::test]
async fn a_push_runs_the_line_without_a_reply() {
    let (mesh, calls) = sqsum_line().await;
    let entry = mesh.start("entry", || Entry(counter())).await.unwrap();

    entry
        .push(Message::request("sqsum", ["1", "2"]))
        .await
        .unwrap();

    for _ in 0..100 {
        if count(&calls[2]) == 1 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(&calls[2]), 1);
}

#[actix::test]
async fn a_detached_worker_cannot_request_or_push() {
    let worker = Worker::new(Config::named("alone"))
        .detached()
        .start(|| Entry(counter()))
        .await
        .unwrap();

    let reply = worker
        .request(Message::request("t", ["1"]), Duration::from_secs(1))
        .await;

    assert_eq!(
        reply,
        Message::error("t", "worker \"alone\" is not attached to a mesh or agent")
    );
    assert!(worker.push(Message::request("t", ["1"])).await.is_err());
}

#[actix::test]
async fn a_worker_attached_to_nothing_does_not_start() {
    let started = Worker::new(Config::named("alone"))
        .start(|| Entry(counter()))
        .await;

    let Err(error) = started else {
        panic!("a worker attached to nothing started");
    };
    assert!(matches!(error, WorkerError::Unattached(ref name) if name == "alone"));
    assert!(
        error.to_string().contains(".agent(\"host:port\")"),
        "{error}"
    );
}

#[actix::test]
async fn a_worker_whose_agent_does_not_listen_says_nothing_answers_there() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = format!("127.0.0.1:{port}");

    let started = Worker::new(Config::named("alone"))
        .agent(agent.clone())
        .start(|| Entry(counter()))
        .await;

    let Err(error) = started else {
        panic!("a worker attached to a closed port");
    };
    assert!(
        matches!(error, WorkerError::Unreachable { agent: ref at, .. } if *at == agent),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("no agent answers at {agent}")),
        "{error}"
    );
}

#[actix::test]
async fn attaching_an_unconfigured_worker_is_refused() {
    let mesh = TestMesh::new([WorkerSpec::new("add").command("sqsum", "")]).unwrap();

    let error = mesh
        .start("ghost", || Entry(counter()))
        .await
        .err()
        .unwrap();

    assert_eq!(error.to_string(), "no worker named \"ghost\" is configured");
}

#[actix::test]
async fn ten_thousand_concurrent_requests_through_a_three_worker_line_each_get_one_reply() {
    const REQUESTS: i64 = 10_000;
    let (mesh, calls) = sqsum_line().await;

    let replies = join_all((0..REQUESTS).map(|i| {
        let router = mesh.router().clone();
        async move {
            let args = [i.to_string(), "1".to_owned()];
            router
                .request(
                    "entry",
                    Message::request("sqsum", args),
                    Duration::from_secs(30),
                )
                .await
        }
    }))
    .await;

    for (i, reply) in (0..REQUESTS).zip(&replies) {
        assert_eq!(
            *reply,
            Message::response("sqsum", [((i + 1) * (i + 1)).to_string()])
        );
    }
    let steps = REQUESTS as usize;
    assert_eq!(calls.each_ref().map(|c| count(c)), [steps, steps, steps]);
}

/// An instance whose 10 ms step timeout no 50 ms nap fits: it fails every step at once.
async fn start_failing_nap(mesh: &TestMesh) -> Sleeper {
    let failing = Sleeper::default();
    let config = Config {
        timeout: Duration::from_millis(10),
        ..Config::named("nap")
    };
    mesh.start_with(config, failing.factory()).await.unwrap();
    failing
}

async fn nap(router: &Router, ms: u64) -> Message {
    router
        .request(
            "nap",
            Message::request("nap", [ms.to_string()]),
            Duration::from_secs(2),
        )
        .await
}

fn ejections(router: &Router) -> u64 {
    router
        .route_counts()
        .into_iter()
        .find(|(worker, _)| worker == "nap")
        .map_or(0, |(_, counts)| counts.ejections)
}

#[actix::test]
async fn a_failing_instance_is_ejected_and_the_healthy_one_takes_every_step() {
    let mesh = TestMesh::new([WorkerSpec::new("nap").command("nap", "")]).unwrap();
    let healthy = Sleeper::default();
    mesh.start("nap", healthy.factory()).await.unwrap();
    let _failing = start_failing_nap(&mesh).await;
    let router = mesh.router();

    let mut timeouts = 0;
    while ejections(router) == 0 {
        if nap(router, 50).await.tag == Tag::Timeout {
            timeouts += 1;
        }
        assert!(timeouts <= 5, "ejected after five failures in a row");
    }
    let done = count(&healthy.done);
    let replies = join_all((0..10).map(|_| {
        let router = router.clone();
        async move { nap(&router, 50).await }
    }))
    .await;

    assert!(
        replies.iter().all(|reply| reply.tag == Tag::Response),
        "{replies:?}"
    );
    assert_eq!(count(&healthy.done), done + 10);
    let ejected: Vec<(String, usize)> = router
        .ejected_instances()
        .into_iter()
        .map(|(worker, instances, _)| (worker, instances))
        .collect();
    assert_eq!(ejected, [("nap".to_owned(), 1)]);
}

#[actix::test]
async fn the_last_instance_is_never_ejected_and_keeps_answering() {
    let mesh = TestMesh::new([WorkerSpec::new("nap").command("nap", "")]).unwrap();
    let failing = start_failing_nap(&mesh).await;
    let router = mesh.router();

    for _ in 0..10 {
        assert_eq!(nap(router, 50).await, Message::timeout());
    }
    assert_eq!(nap(router, 1).await, Message::response("nap", ["1"]));

    assert_eq!(ejections(router), 0);
    // Every step reached it (a timed-out nap still ends, a little later).
    for _ in 0..500 {
        if count(&failing.done) == 11 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(&failing.done), 11);
}

#[actix::test]
async fn a_step_that_could_not_start_before_its_deadline_is_refused_and_never_runs() {
    let mesh = TestMesh::new([WorkerSpec::new("nap").mpu(1).command("nap", "")]).unwrap();
    let sleeper = Sleeper::default();
    mesh.start("nap", sleeper.factory()).await.unwrap();
    let router = mesh.router();
    // One step first: the router learns how long a nap takes.
    assert_eq!(nap(router, 50).await.tag, Tag::Response);

    let replies = join_all((0..100).map(|_| {
        let router = router.clone();
        async move {
            router
                .request(
                    "nap",
                    Message::request("nap", ["50"]),
                    Duration::from_millis(500),
                )
                .await
        }
    }))
    .await;

    let overloaded: Vec<&Message> = replies.iter().filter(|r| r.tag == Tag::Error).collect();
    let responses = replies.iter().filter(|r| r.tag == Tag::Response).count();
    assert!(overloaded.len() >= 80, "{replies:?}");
    for reply in &overloaded {
        assert!(
            reply.args[0].starts_with("worker nap is overloaded: "),
            "{reply}"
        );
    }
    // Refused steps never reach the worker, now or later.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        count(&sleeper.done),
        1 + responses + replies.iter().filter(|r| r.tag == Tag::Timeout).count()
    );
    assert_eq!(
        router
            .route_counts()
            .into_iter()
            .find(|(worker, _)| worker == "nap")
            .unwrap()
            .1
            .rejected_overloaded,
        overloaded.len() as u64
    );
}

#[actix::test]
async fn errors_the_router_makes_carry_their_fault_and_a_handler_s_none() {
    let (mesh, _) = sqsum_line().await;
    let router = mesh.router();
    let within = Duration::from_secs(5);

    let unknown = router
        .request_terminal("nobody", Message::request("sqsum", ["1", "2"]), within)
        .await;
    let bad_type = router
        .request_terminal("entry", Message::request("cube", ["1"]), within)
        .await;
    let handler = router
        .request_terminal("add", Message::request("sqsum", ["1", "x"]), within)
        .await;

    assert_eq!(unknown.fault, Some(Fault::Config));
    assert_eq!(bad_type.fault, Some(Fault::Config));
    assert_eq!(handler.message.tag, Tag::Error, "{handler:?}");
    assert_eq!(handler.fault, None);
}

#[actix::test]
async fn closing_the_router_answers_stop_to_the_lines_it_drives_and_to_later_ones() {
    let mesh = TestMesh::new([WorkerSpec::new("nap").command("nap", "")]).unwrap();
    let sleeper = Sleeper::default();
    mesh.start("nap", sleeper.factory()).await.unwrap();
    let router = mesh.router().clone();
    let nap = || Message::request("nap", ["10000"]);

    let waiting = actix_rt::spawn({
        let router = router.clone();
        async move { router.request("nap", nap(), Duration::from_secs(5)).await }
    });
    while sleeper.now.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    router.close();
    assert_eq!(waiting.await.unwrap(), Message::stop());

    // A line started after the close is never told of it, and ends all the same.
    let later = router.request("nap", nap(), Duration::from_secs(5)).await;
    assert_eq!(later, Message::stop());
    assert_eq!(router.active_lines(), 0);
}
