//! Lines through worker processes: on one agent, across agents, and the answers to bad
//! requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use damrey_actors::{Config, Message, Worker};
use serde_json::json;

use crate::support::{
    Agent, AgentAddress, AgentOptions, PATIENCE, Proxy, TempDir, client, eventually, join_all,
    sqsum, sqsum_mesh, sqsum_specs,
};

#[actix_rt::test]
async fn a_line_of_worker_processes_on_one_agent_answers_the_square_of_the_sum() {
    let dir = TempDir::new();
    let (_proxy, agent, _workers) = sqsum_mesh(&dir).await;

    let (status, reply) = agent.call("add", &sqsum(3, 4), 2_000).await;

    assert_eq!((status, reply), (200, Message::response("sqsum", ["49"])));
}

#[actix_rt::test]
async fn a_line_crossing_agents_answers_at_the_origin() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, sqsum_specs()).await;
    let (one, two) = (Agent::ready(&proxy).await, Agent::ready(&proxy).await);
    let _add = one.worker("add", "add");
    let _square = two.worker("square", "square");
    one.wait_instances(1).await;
    two.wait_instances(1).await;

    // Agent one learns where square lives from the proxy's placement feed.
    let answer = one.call_until_ok("add", &sqsum(5, 6)).await;

    assert_eq!(answer, Message::response("sqsum", ["121"]));
    let (status, reply) = two.call("add", &sqsum(1, 2), 2_000).await;
    assert_eq!((status, reply), (200, Message::response("sqsum", ["9"])));
}

#[actix_rt::test]
async fn bad_requests_get_their_own_clear_answers_at_once() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, sqsum_specs()).await;
    let agent = Agent::ready(&proxy).await;
    let _add = agent.worker("add", "add");
    agent.wait_instances(1).await;

    let (status, reply) = agent.call("nobody", &sqsum(1, 2), 10_000).await;
    assert_eq!(
        (status, reply),
        (
            502,
            Message::error("sqsum", "no worker named \"nobody\" is configured")
        )
    );

    let (status, reply) = agent
        .call("add", &Message::request("cube", ["2"]), 10_000)
        .await;
    assert_eq!(
        (status, reply),
        (
            502,
            Message::error("cube", "worker add does not accept type \"cube\"")
        )
    );

    let (status, reply) = agent.call("square", &sqsum(1, 2), 10_000).await;
    assert_eq!(
        (status, reply),
        (
            503,
            Message::error("sqsum", "worker square has no live instance")
        )
    );
    let response = client()
        .post(format!(
            "http://{}/call/square?timeout_ms=10000",
            agent.address
        ))
        .insert_header(("content-type", "application/json"))
        .send_body(sqsum(1, 2).to_json())
        .await
        .expect("the agent answers");
    assert_eq!(
        response
            .headers()
            .get("damrey-fault")
            .map(|v| v.to_str().unwrap()),
        Some("no_instance"),
        "a runtime-made ERROR names its cause"
    );

    let (status, body) = agent
        .call_raw("add", r#"["HELLO"]"#.to_owned(), 1_000)
        .await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("unknown tag `HELLO`"), "{body}");

    let (status, reply) = agent
        .call("add", &Message::request("sqsum", ["1", "x"]), 1_000)
        .await;
    assert_eq!(
        (status, reply),
        (422, Message::error("sqsum", "\"x\" is not an integer"))
    );
}

#[actix_rt::test]
async fn two_instances_of_a_worker_share_the_load() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [json!({"name": "nap", "mpu": 1, "commands": [{"name": "nap"}]})],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _one = agent.worker("nap", "nap");
    let _two = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    // With mpu 1, two 500 ms naps end within 800 ms only if each instance takes one:
    // on one instance the second would wait its turn and miss the deadline.
    let handle = agent.handle();
    let replies = join_all((0..2).map(move |i| {
        let agent = handle.clone();
        async move {
            agent
                .call(
                    "nap",
                    &Message::request("nap", ["500", &i.to_string()]),
                    800,
                )
                .await
        }
    }))
    .await;

    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(
            reply,
            (
                200,
                Message::response("nap", ["500".to_owned(), i.to_string()])
            )
        );
    }
}

#[actix_rt::test]
async fn a_loop_ends_with_error_and_a_short_deadline_with_timeout() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [
            json!({"name": "ping", "commands": [{"name": "ball", "worker": "pong"}]}),
            json!({"name": "pong", "commands": [{"name": "ball", "worker": "ping"}]}),
        ],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _ping = agent.worker("nap", "ping");
    let _pong = agent.worker("nap", "pong");
    agent.wait_instances(2).await;

    let (status, reply) = agent
        .call("ping", &Message::request("ball", ["0"]), 10_000)
        .await;
    assert_eq!(status, 502, "a loop in the configs is the mesh's fault");
    assert_eq!(
        reply,
        Message::error(
            "ball",
            "the line reached the limit of 64 hops at worker ping; check the configs for a loop"
        )
    );

    let started = Instant::now();
    let (status, reply) = agent
        .call("ping", &Message::request("ball", ["1000"]), 200)
        .await;
    let waited = started.elapsed();
    assert_eq!((status, reply), (504, Message::timeout()));
    assert!(
        waited >= Duration::from_millis(200),
        "answered TIMEOUT before its deadline: {waited:?}"
    );
}

#[actix_rt::test]
async fn a_worker_with_an_unknown_name_is_refused() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    let agent = Agent::start(&proxy).await;

    let mut ghost = agent.worker("add", "ghost");

    assert_ne!(ghost.wait_exit().await, Some(0));
    assert_eq!(agent.health().await["instances"], 0);
}

#[actix_rt::test]
async fn with_a_token_everything_but_the_probes_wants_it() {
    let dir = TempDir::new();
    let proxy = Proxy::start_with_token(&dir, "s3cret").await;
    for spec in sqsum_specs() {
        proxy.add(spec).await;
    }
    let options = AgentOptions {
        token: Some("s3cret".to_owned()),
        ..AgentOptions::default()
    };
    let agent = Agent::start_with(&proxy, options).await;
    // The agent reads configs from the proxy with the token.
    agent.wait_configs(2).await;
    assert_eq!(agent.readyz().await.0, 200, "a probe carries no token");
    let mut intruder = agent.worker_with("add", "add", Some("wrong"), &[]);
    assert_ne!(intruder.wait_exit().await, Some(0));
    let _add = agent.worker("add", "add");
    let _square = agent.worker("square", "square");
    agent.wait_instances(2).await;

    let anonymous = AgentAddress {
        address: agent.address.clone(),
        token: None,
    };
    let (status, body) = anonymous
        .call_raw("add", sqsum(3, 4).to_json(), 1_000)
        .await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));

    assert_eq!(
        agent.call("add", &sqsum(3, 4), 2_000).await,
        (200, Message::response("sqsum", ["49"]))
    );
}

/// Counts the messages it is given; a worker that lives in the test process.
struct Tally(Arc<AtomicUsize>);

impl Actor for Tally {
    type Context = Context<Self>;
}

impl Handler<Message> for Tally {
    type Result = Message;

    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        self.0.fetch_add(1, Ordering::SeqCst);
        Message::response(msg.kind, msg.args)
    }
}

#[actix_rt::test]
async fn a_worker_process_requests_and_pushes_along_its_line_through_the_agent() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [
            json!({"name": "asker", "commands": [{"name": "sqsum", "worker": "add"}, {"name": "note", "worker": "tally"}]}),
            json!({"name": "tally", "commands": [{"name": "note"}]}),
            sqsum_specs()[0].clone(),
            sqsum_specs()[1].clone(),
        ],
    )
    .await;
    let agent = Agent::ready(&proxy).await;
    let _add = agent.worker("add", "add");
    let _square = agent.worker("square", "square");
    // This test's own process is the third and fourth worker process.
    let tallied = Arc::new(AtomicUsize::new(0));
    let counter = tallied.clone();
    let _tally = Worker::new(Config::named("tally"))
        .agent(agent.address.clone())
        .start(move || Tally(counter.clone()))
        .await
        .unwrap();
    let asker = Worker::new(Config::named("asker"))
        .agent(agent.address.clone())
        .start(|| Tally(Arc::new(AtomicUsize::new(0))))
        .await
        .unwrap();
    agent.wait_instances(4).await;

    let reply = asker.request(sqsum(3, 4), Duration::from_secs(2)).await;
    asker
        .push(Message::request("note", ["hello"]))
        .await
        .unwrap();

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    eventually(PATIENCE, "the note tallied", || async {
        (tallied.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    assert_eq!(tallied.load(Ordering::SeqCst), 1);
    asker.stop().await;
    agent.wait_instances(3).await;
}

#[actix_rt::test]
async fn a_line_that_zigzags_between_two_agents_answers_where_it_started() {
    // entry and square on agent one, add on agent two: a call put to two goes
    // two → one → two → one, visiting each agent twice, and ends back at two.
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(
        &dir,
        [
            json!({"name": "entry", "commands": [{"name": "sqsum", "worker": "add"}]}),
            json!({"name": "add", "commands": [{"name": "sqsum", "worker": "square"}]}),
            json!({"name": "square", "commands": [{"name": "sqsum", "worker": ""}]}),
        ],
    )
    .await;
    let (one, two) = (Agent::ready(&proxy).await, Agent::ready(&proxy).await);
    let _workers = [
        one.worker("entry", "entry"),
        one.worker("square", "square"),
        two.worker("add", "add"),
    ];
    one.wait_instances(2).await;
    two.wait_instances(1).await;
    // Each agent learns where the other's instances are (from the proxy's agent list).
    one.call_until_ok("add", &sqsum(0, 0)).await;
    two.call_until_ok("square", &Message::request("sqsum", ["0"]))
        .await;

    for (a, b) in [(3, 4), (1, 2), (5, 6)] {
        let (status, reply) = two.call("entry", &sqsum(a, b), 3_000).await;
        let sum = (a + b).to_string();
        let squared = ((a + b) * (a + b)).to_string();
        assert_eq!(
            (status, reply),
            (200, Message::response("sqsum", [squared])),
            "({a}+{b})^2 via {sum}"
        );
    }
    assert_eq!((one.pending().await, two.pending().await), (0, 0));
}

#[actix_rt::test]
async fn a_changed_mpu_reaches_an_attached_worker_process_without_a_reattach() {
    let dir = TempDir::new();
    let nap = |mpu: &str| json!({"name": "nap", "mpu": mpu, "commands": [{"name": "nap"}]});
    let proxy = Proxy::with_workers(&dir, [nap("1")]).await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    // Two 600 ms naps with 1 s deadlines: one at a time, the second cannot make it.
    let two_naps = || {
        join_all((0..2).map(|_| {
            let agent = agent.handle();
            async move {
                agent
                    .call("nap", &Message::request("nap", ["600", "x"]), 1_000)
                    .await
                    .1
                    .tag
            }
        }))
    };
    let mut tags = two_naps().await;
    tags.sort_by_key(|tag| format!("{tag:?}"));
    assert_eq!(
        tags,
        [damrey_actors::Tag::Response, damrey_actors::Tag::Timeout]
    );

    proxy.change(nap("2")).await;
    eventually(PATIENCE, "the attached nap runs two at once", || async {
        (two_naps().await == [damrey_actors::Tag::Response; 2]).then_some(())
    })
    .await;
    assert_eq!(
        agent.health().await["instances"],
        1,
        "no re-attach was needed"
    );
}

#[actix_rt::test]
async fn every_refusal_of_a_call_is_json_naming_what_is_wrong() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, sqsum_specs()).await;
    let agent = Agent::ready(&proxy).await;
    let url = |query: &str| format!("http://{}/call/add?{query}", agent.address);
    let oversized = format!(r#"["REQUEST","sqsum","{}"]"#, "1".repeat(4 << 20));
    let cases = [
        (
            url("timeout_ms=100"),
            oversized,
            413,
            "request body is larger than the limit of 4194304 bytes",
        ),
        (
            url("timeout_ms=soon"),
            sqsum(1, 2).to_json(),
            400,
            "invalid query string: timeout_ms must be a whole number of milliseconds, not \"soon\"",
        ),
        (
            url("colour=red"),
            sqsum(1, 2).to_json(),
            400,
            "invalid query string: unknown field `colour`, expected `timeout_ms`",
        ),
    ];

    for (url, body, status, error) in cases {
        let mut response = crate::support::client()
            .post(&url)
            .send_body(body)
            .await
            .expect("agent answers");
        let body: serde_json::Value = response.json().limit(1 << 20).await.expect("JSON");
        assert_eq!(
            (response.status().as_u16(), body),
            (status, json!({ "error": error })),
            "{url}"
        );
    }
}
