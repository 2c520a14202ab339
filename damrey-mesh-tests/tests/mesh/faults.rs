//! Faults: worker processes killed mid-stream, agents killed and frozen, the proxy down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_http::ws;
use actix_web::{HttpRequest, web};
use damrey_actors::{Envelope, Message, Tag};
use damrey_wire::peer::{PeerFrame, RUN_HEADER};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::support::{
    Agent, AgentAddress, AgentOptions, PATIENCE, Process, Proxy, TempDir, eventually, join_all,
    raw_http, serve_get, sqsum, sqsum_mesh, sqsum_specs,
};

#[actix_rt::test]
async fn a_worker_killed_mid_stream_has_its_steps_retried_on_the_other_instance() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let mut doomed = agent.worker("nap", "nap");
    let _survivor = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    let calls = nap_calls(agent.handle(), 40, 300, 10_000);
    // Mid-stream: both instances have steps.
    eventually(PATIENCE, "steps in flight on both instances", || async {
        let stats = agent.stats().await;
        let instances = stats["instances"].as_array()?;
        (instances.len() == 2
            && instances
                .iter()
                .all(|instance| instance["in_flight"].as_u64() > Some(0)))
        .then_some(())
    })
    .await;
    doomed.kill();
    let replies = calls.await.unwrap();

    assert_eq!(replies.len(), 40);
    for (i, (status, reply)) in replies.into_iter().enumerate() {
        assert_eq!(reply.tag, Tag::Response, "request {i}: {status} {reply}");
        assert_eq!(reply.args, ["300".to_owned(), i.to_string()]);
    }
    agent.wait_instances(1).await;
    // The doomed instance's series are gone; the worker's own count of steps run
    // again is not.
    let stats = agent.stats().await;
    let nap = stats["workers"]
        .as_array()
        .expect("workers in /stats")
        .iter()
        .find(|worker| worker["worker"] == "nap")
        .expect("nap in /stats");
    assert!(nap["rerouted"].as_u64() > Some(0), "{stats}");
}

#[actix_rt::test]
async fn a_caller_that_hangs_up_mid_call_leaves_no_step_counted_in_flight() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;

    let request = call_request(&agent.address, "nap", &Message::request("nap", ["500"]));
    let mut caller = TcpStream::connect(&agent.address).await.unwrap();
    caller.write_all(request.as_bytes()).await.unwrap();
    agent.wait_in_flight(1).await;
    // The caller hangs up mid-call.
    drop(caller);
    // Once the step is over, the instance's load (which instance choice and overload go
    // by) is back to nothing: no step is left counted for a caller that is gone.
    agent.wait_in_flight(0).await;
    // And the instance takes the next call.
    assert_eq!(
        agent
            .call("nap", &Message::request("nap", ["1"]), 5_000)
            .await,
        (200, Message::response("nap", ["1"]))
    );
}

/// The `nap` worker's config: it takes type `nap` and ends the line.
fn nap_spec() -> serde_json::Value {
    json!({"name": "nap", "commands": [{"name": "nap"}]})
}

/// `calls` calls of `nap` at once through `agent`, the i-th napping `ms` with argument
/// `i`, each with `timeout_ms`; the replies, in order, once all are in.
fn nap_calls(
    agent: AgentAddress,
    calls: usize,
    ms: u64,
    timeout_ms: u64,
) -> actix_rt::task::JoinHandle<Vec<(u16, Message)>> {
    actix_rt::spawn(join_all((0..calls).map(move |i| {
        let agent = agent.clone();
        async move {
            let message = Message::request("nap", [ms.to_string(), i.to_string()]);
            agent.call("nap", &message, timeout_ms).await
        }
    })))
}

/// A proxy, agent `one` with no workers, and agent `two` holding a `nap` instance,
/// with agent one knowing where nap lives.
async fn nap_on_the_second_agent(
    dir: &TempDir,
    options: AgentOptions,
) -> (Proxy, Agent, Agent, Process) {
    let proxy = Proxy::with_workers(dir, [nap_spec()]).await;
    let one = Agent::ready_with(&proxy, options.clone()).await;
    let two = Agent::ready_with(&proxy, options).await;
    let nap = two.worker("nap", "nap");
    two.wait_instances(1).await;
    wait_until_answered(&one, "0").await;
    (proxy, one, two, nap)
}

/// Calls nap through `agent` until it answers (the agent learns where instances are
/// from the proxy's placement feed).
async fn wait_until_answered(agent: &Agent, arg: &str) {
    let what = format!("{} reaches nap", agent.address);
    eventually(PATIENCE, &what, || async {
        let message = Message::request("nap", ["0", arg]);
        (agent.call("nap", &message, 2_000).await.0 == 200).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn an_agent_killed_and_restarted_is_bridged_by_retries() {
    let dir = TempDir::new();
    let options = AgentOptions {
        retries: Some(8),
        ..AgentOptions::default()
    };
    let (_proxy, one, mut two, _nap) = nap_on_the_second_agent(&dir, options).await;

    two.process.kill();
    // Sent while agent two is down: agent one retries the hand-off until two is back
    // and the nap worker has attached to it again.
    let during = actix_rt::spawn({
        let one = one.handle();
        async move {
            one.call("nap", &Message::request("nap", ["0", "during"]), 8_000)
                .await
        }
    });
    // Agent one holds the call, handing it to the agent that is down.
    eventually(PATIENCE, "the call pending at agent one", || async {
        (one.pending().await == 1).then_some(())
    })
    .await;
    two.restart().await;

    assert_eq!(
        during.await.unwrap(),
        (200, Message::response("nap", ["0", "during"]))
    );
    two.wait_instances(1).await;
    let after = one
        .call("nap", &Message::request("nap", ["0", "after"]), 2_000)
        .await;
    assert_eq!(after, (200, Message::response("nap", ["0", "after"])));
}

#[actix_rt::test]
async fn a_frozen_agent_costs_callers_a_timeout_at_their_deadline_and_nothing_more() {
    let dir = TempDir::new();
    let (_proxy, one, two, _nap) = nap_on_the_second_agent(&dir, AgentOptions::default()).await;

    two.process.freeze().await;
    let started = Instant::now();
    let frozen = one
        .call("nap", &Message::request("nap", ["0", "frozen"]), 1_000)
        .await;
    let waited = started.elapsed();
    two.process.signal("CONT");

    assert_eq!(frozen, (504, Message::timeout()));
    assert!(
        waited >= Duration::from_millis(1_000),
        "answered TIMEOUT before its deadline: {waited:?}"
    );
    assert_eq!(one.pending().await, 0);
    // Thawed, agent two catches up (the late reply is dropped) and serves again.
    let after = one
        .call("nap", &Message::request("nap", ["0", "thawed"]), 5_000)
        .await;
    assert_eq!(after, (200, Message::response("nap", ["0", "thawed"])));
    assert_eq!(one.pending().await, 0);
    assert_eq!(
        two.health().await["instances"],
        1,
        "the worker was not blamed for the freeze"
    );
}

#[actix_rt::test]
async fn routing_goes_on_while_the_proxy_is_down_and_catches_up_when_it_returns() {
    let dir = TempDir::new();
    let (mut proxy, agent, _workers) = sqsum_mesh(&dir).await;

    proxy.kill();
    assert_eq!(
        agent.call("add", &sqsum(3, 4), 2_000).await,
        (200, Message::response("sqsum", ["49"]))
    );
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        agent.call("add", &sqsum(1, 1), 2_000).await,
        (200, Message::response("sqsum", ["4"]))
    );

    proxy.restart().await;
    // End the line at add: (3+4) instead of (3+4)^2.
    proxy
        .change(json!({"name": "add", "commands": [{"name": "sqsum", "worker": ""}]}))
        .await;
    eventually(PATIENCE, "the change reached the agent", || async {
        (agent.call("add", &sqsum(3, 4), 2_000).await == (200, Message::response("sqsum", ["7"])))
            .then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_resent_envelope_is_acknowledged_every_time_but_runs_once() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let origin = FakeOrigin::start();
    // The agent takes envelopes only from origins its proxy lists.
    proxy.heartbeat_as(&origin.address).await;

    let (_, mut link) = awc::Client::new()
        .ws(format!("ws://{}/peer", agent.address))
        .connect()
        .await
        .expect("the agent takes peer links");
    let envelope = Envelope {
        id: Uuid::new_v4(),
        leg: 1,
        to: "nap".to_owned(),
        origin: origin.address.clone(),
        remaining_ms: 5_000,
        hops: 0,
        message: Message::request("nap", ["200", "once"]),
    };
    for seq in [1, 1, 2] {
        let frame = PeerFrame::Forward {
            seq,
            envelope: envelope.clone(),
        };
        // Sent again while unacknowledged, as an agent does: the first is until the
        // agent has the proxy's list that names the origin.
        let ack = loop {
            link.send(ws::Message::Text(
                serde_json::to_string(&frame).unwrap().into(),
            ))
            .await
            .unwrap();
            let next = actix_rt::time::timeout(Duration::from_millis(500), async {
                loop {
                    match link.next().await {
                        Some(Ok(ws::Frame::Text(text))) => {
                            break serde_json::from_slice::<PeerFrame>(&text).unwrap();
                        }
                        Some(Ok(_)) => continue,
                        other => panic!("no ack: {other:?}"),
                    }
                }
            });
            if let Ok(ack) = next.await {
                break ack;
            }
        };
        assert_eq!(ack, PeerFrame::Ack { seqs: vec![seq] });
    }
    actix_rt::time::sleep(Duration::from_millis(1_000)).await;

    assert_eq!(
        origin.replies(),
        [(envelope.id, Message::response("nap", ["200", "once"]))]
    );
}

/// An agent stand-in that takes peer links and records the replies sent to it.
struct FakeOrigin {
    address: String,
    replies: Arc<Mutex<Vec<(Uuid, Message)>>>,
}

impl FakeOrigin {
    fn start() -> FakeOrigin {
        let replies = Arc::new(Mutex::new(Vec::new()));
        let recorded = replies.clone();
        let address = serve_get("/peer", move |req: HttpRequest, body: web::Payload| {
            let recorded = recorded.clone();
            async move {
                let (mut response, mut session, mut stream) = actix_ws::handle(&req, body)?;
                // A peer names its run, as an agent does.
                response.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static(RUN_HEADER),
                    actix_web::http::header::HeaderValue::from_static(
                        "00000000-0000-4000-8000-000000000001",
                    ),
                );
                actix_rt::spawn(async move {
                    while let Some(Ok(actix_ws::Message::Text(text))) = stream.recv().await {
                        if let Ok(PeerFrame::Reply { seq, id, msg, .. }) =
                            serde_json::from_str(&text)
                        {
                            recorded.lock().unwrap().push((id, msg));
                            let ack =
                                serde_json::to_string(&PeerFrame::Ack { seqs: vec![seq] }).unwrap();
                            let _ = session.text(ack).await;
                        }
                    }
                });
                Ok::<_, actix_web::Error>(response)
            }
        });
        FakeOrigin { address, replies }
    }

    fn replies(&self) -> Vec<(Uuid, Message)> {
        self.replies.lock().unwrap().clone()
    }
}

#[actix_rt::test]
async fn an_agent_and_its_workers_exit_cleanly_on_sigterm_and_sigint() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let mut agent = Agent::ready(&proxy).await;
    let mut nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;

    nap.signal("TERM");
    assert_eq!(nap.wait_exit().await, Some(0));
    agent.wait_instances(0).await;
    agent.process.signal("INT");
    assert_eq!(agent.process.wait_exit().await, Some(0));

    // An agent that stops tells the proxy it is leaving: the proxy forgets it at once.
    let mut again = Agent::ready(&proxy).await;
    let _nap = again.worker("nap", "nap");
    again.wait_instances(1).await;
    let holding = json!([{"worker": "nap", "count": 1}]);
    eventually(PATIENCE, "the proxy lists the agent's instance", || async {
        (proxy.instances_of(&again.address).await == Some(holding.clone())).then_some(())
    })
    .await;
    again.process.signal("TERM");
    assert_eq!(again.process.wait_exit().await, Some(0));
    assert_eq!(proxy.instances_of(&again.address).await, None);
}

#[actix_rt::test]
async fn an_agent_down_for_less_than_the_deadline_costs_calls_nothing_but_time() {
    // Agent one holds add, agent two holds square; two is killed and restarted about a
    // second later while calls flow through one with 6 s deadlines and the default
    // retries: every call made while two is down, or after, answers the square of its
    // sum. A call whose line was inside two when it died may only time out: its step
    // may or may not have run there, so it is not run again.
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, crate::support::sqsum_specs()).await;
    let (one, mut two) = (Agent::ready(&proxy).await, Agent::ready(&proxy).await);
    let _add = one.worker("add", "add");
    let _square = two.worker("square", "square");
    one.wait_instances(1).await;
    two.wait_instances(1).await;
    one.call_until_ok("add", &sqsum(0, 0)).await;

    // Open-loop load: a call every 10 ms, each on its own, so that calls caught inside
    // the agent that dies hold up no others.
    let flowing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = actix_rt::spawn({
        let (one, flowing) = (one.handle(), flowing.clone());
        async move {
            let mut calls = Vec::new();
            let mut n = 0i64;
            while flowing.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let one = one.clone();
                calls.push(actix_rt::spawn(async move {
                    let started = Instant::now();
                    let answer = one.call("add", &sqsum(n, 1), 6_000).await;
                    let expected = Message::response("sqsum", [((n + 1) * (n + 1)).to_string()]);
                    (started, answer, expected)
                }));
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            calls
        }
    });
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    two.process.kill();
    actix_rt::time::sleep(Duration::from_millis(1_100)).await;
    two.restart().await;
    two.wait_instances(1).await;
    actix_rt::time::sleep(Duration::from_millis(1_500)).await;
    flowing.store(false, std::sync::atomic::Ordering::Relaxed);

    let answers: Vec<_> = join_all(load.await.unwrap())
        .await
        .into_iter()
        .map(|answer| answer.unwrap())
        .collect();
    // A hand-off written in the instant the agent died, before its link was seen to
    // close, may have been taken for all agent one can tell: such a call may only time
    // out too. A fifth of a second covers noticing the closed link on a loaded machine.
    let noticed = killed + Duration::from_millis(200);
    let (caught, after): (Vec<_>, Vec<_>) =
        answers.iter().partition(|(started, ..)| *started < noticed);
    let wrong: Vec<_> = after
        .iter()
        .filter(|(_, answer, expected)| *answer != (200, expected.clone()))
        .collect();
    let lost = caught
        .iter()
        .filter(|(_, answer, expected)| *answer != (200, expected.clone()))
        .inspect(|(_, answer, _)| assert_eq!(*answer, (504, Message::timeout())))
        .count();
    println!(
        "{} calls through the restart, {} made before it was noticed ({lost} caught inside the agent that died)",
        answers.len(),
        caught.len()
    );
    assert!(after.len() > 20, "too few calls: {}", after.len());
    assert!(
        wrong.is_empty(),
        "{} of {} wrong: {:?}",
        wrong.len(),
        after.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(one.pending().await, 0);
}

#[actix_rt::test]
async fn a_frozen_worker_keeps_the_step_it_holds_and_no_other_instance_runs_it_again() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let frozen = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let call = actix_rt::spawn({
        let agent = agent.handle();
        async move {
            agent
                .call("nap", &Message::request("nap", ["1500", "held"]), 15_000)
                .await
        }
    });
    agent.wait_in_flight(1).await;
    let _other = agent.worker("nap", "nap");
    agent.wait_instances(2).await;

    frozen.freeze().await;
    // Long enough for the agent to miss three pings (one a second) and stop routing
    // to the frozen worker.
    actix_rt::time::sleep(Duration::from_secs(5)).await;
    let meanwhile = agent
        .call("nap", &Message::request("nap", ["0", "meanwhile"]), 5_000)
        .await;
    frozen.signal("CONT");

    assert_eq!(
        call.await.unwrap(),
        (200, Message::response("nap", ["1500", "held"]))
    );
    assert_eq!(
        meanwhile,
        (200, Message::response("nap", ["0", "meanwhile"]))
    );
    let stats = agent.stats().await;
    let instances = stats["instances"].as_array().expect("instances");
    let by_number = |n: u64| {
        instances
            .iter()
            .find(|instance| instance["instance"] == n)
            .unwrap_or_else(|| panic!("no instance {n}: {stats}"))
    };
    assert_eq!(
        by_number(1)["responses"],
        1,
        "the frozen one answered its step: {stats}"
    );
    assert_eq!(
        by_number(2)["received"],
        1,
        "the other one ran only the new call: {stats}"
    );
}

#[actix_rt::test]
async fn a_one_mib_argument_crosses_the_http_entry_a_peer_link_and_a_worker_link_whole() {
    let dir = TempDir::new();
    let (_proxy, one, _two, _nap) = nap_on_the_second_agent(&dir, AgentOptions::default()).await;
    // Quotes, backslashes, control and non-ASCII characters: what JSON escapes, and
    // what a binary frame must carry byte for byte.
    let big: String = "\"é\\\n\u{1}x".chars().cycle().take(1 << 20).collect();
    let request = Message::request("nap", ["0", &big]);

    let (status, reply) = one.call("nap", &request, 10_000).await;

    assert_eq!(status, 200);
    assert_eq!(reply, Message::response("nap", ["0", &big]));
}

#[actix_rt::test]
async fn a_message_too_large_for_a_worker_link_is_refused_and_costs_other_steps_nothing() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let _nap = agent.worker("nap", "nap");
    agent.wait_instances(1).await;
    let held = actix_rt::spawn({
        let agent = agent.handle();
        async move {
            agent
                .call("nap", &Message::request("nap", ["800", "held"]), 10_000)
                .await
        }
    });
    agent.wait_in_flight(1).await;

    // Under the agent's 4 MiB body limit in JSON (3 bytes an empty argument), but over
    // the 4 MiB frame limit as a binary delivery (4 bytes each, their lengths).
    let mut words = vec!["0"];
    words.extend(std::iter::repeat_n("", 1_100_000));
    let body = serde_json::to_string(&Message::request("nap", words)).unwrap();
    assert!(body.len() < 4 << 20);
    let (status, reply) = agent.call_raw("nap", body, 10_000).await;
    let reply = Message::from_json_slice(&reply).unwrap();

    assert_eq!(status, 422, "{reply:?}");
    assert!(
        reply.args[0].contains("over the 4194304-byte frame limit"),
        "{reply:?}"
    );
    assert_eq!(
        held.await.unwrap(),
        (200, Message::response("nap", ["800", "held"]))
    );
    let stats = agent.stats().await;
    assert_eq!(stats["workers"][0]["rerouted"], 0, "{stats}");
    assert_eq!(
        stats["instances"][0]["instance"], 1,
        "never reconnected: {stats}"
    );
}

#[actix_rt::test]
async fn a_burst_of_connections_to_a_frozen_agent_is_held_and_each_is_answered_when_it_thaws() {
    // Far more than std's listen backlog of 128, fewer than the agent's.
    const CONNECTIONS: usize = 1_000;
    let dir = TempDir::new();
    let (_proxy, agent, _workers) = sqsum_mesh(&dir).await;
    let request = call_request(&agent.address, "add", &sqsum(3, 4));
    let expected = agent.call("add", &sqsum(3, 4), 2_000).await;
    assert_eq!(expected.0, 200);

    agent.process.freeze().await;
    // The kernel completes each handshake and holds the connection, with the request
    // sent on it, for the agent; one it refused would wait for a SYN retransmit that a
    // frozen agent never makes room for.
    let sent = join_all((0..CONNECTIONS).map(|_| {
        let (address, request) = (agent.address.clone(), request.clone());
        async move {
            let mut stream = TcpStream::connect(address).await?;
            stream.write_all(request.as_bytes()).await?;
            Ok::<_, std::io::Error>(stream)
        }
    }));
    let sent = tokio::time::timeout(PATIENCE, sent).await;
    agent.process.signal("CONT");
    let streams: Vec<TcpStream> = sent
        .expect("every connection is held while the agent is frozen")
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("every request is sent");

    let replies = join_all(
        streams
            .into_iter()
            .map(|mut stream| async move { read_reply(&mut stream).await }),
    )
    .await;
    let unexpected = replies.iter().find(|reply| **reply != expected);
    assert!(unexpected.is_none(), "{unexpected:?}");
}

#[actix_rt::test]
async fn an_agent_started_with_a_soft_limit_of_256_open_files_serves_600_callers_at_once() {
    // Each caller holds its connection, as a pool does: with 256 files the agent would
    // stop accepting at about 250 until the first ones' keep-alive ran out.
    const CALLERS: usize = 600;
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, sqsum_specs()).await;
    let options = AgentOptions {
        open_files: Some(256),
        ..AgentOptions::default()
    };
    let agent = Agent::ready_with(&proxy, options).await;
    let _workers = agent
        .start_workers(&[("add", "add"), ("square", "square")])
        .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.process.pid())).unwrap();
    let open_files: Vec<usize> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a limit of open files")
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|limit| limit.parse().expect("a number"))
        .collect();
    let (soft, hard) = (open_files[0], open_files[1]);
    assert!(
        hard > CALLERS + 100,
        "a hard limit of {hard} files is too low for this test"
    );
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");

    let request = call_request(&agent.address, "add", &sqsum(3, 4));
    let expected = agent.call("add", &sqsum(3, 4), 2_000).await;
    let calls = join_all((0..CALLERS).map(|_| {
        let (address, request) = (agent.address.clone(), request.clone());
        async move {
            let mut connection = TcpStream::connect(address).await.unwrap();
            connection.write_all(request.as_bytes()).await.unwrap();
            let reply = read_reply(&mut connection).await;
            (connection, reply)
        }
    }));
    let answered = tokio::time::timeout(PATIENCE, calls)
        .await
        .expect("every caller is answered while all hold their connections");
    let unexpected = answered.iter().find(|(_, reply)| *reply != expected);
    assert!(
        unexpected.is_none(),
        "{:?}",
        unexpected.map(|(_, reply)| reply)
    );
}

#[actix_rt::test]
async fn a_request_on_an_idle_connection_of_an_agent_frozen_longer_than_5_s_is_answered() {
    let dir = TempDir::new();
    let (_proxy, agent, _workers) = sqsum_mesh(&dir).await;
    let request = call_request(&agent.address, "add", &sqsum(3, 4));
    let mut connection = TcpStream::connect(&agent.address).await.unwrap();
    connection.write_all(request.as_bytes()).await.unwrap();
    let expected = read_reply(&mut connection).await;
    assert_eq!(expected.0, 200);

    // The connection is idle, as a caller's pool keeps it; the caller sends its next
    // request while the agent is frozen, for longer than actix-web's default keep-alive.
    agent.process.freeze().await;
    connection.write_all(request.as_bytes()).await.unwrap();
    actix_rt::time::sleep(Duration::from_secs(6)).await;
    agent.process.signal("CONT");
    assert_eq!(read_reply(&mut connection).await, expected);
}

/// `POST /call/{worker}` of `message`, on a connection kept open.
fn call_request(address: &str, worker: &str, message: &Message) -> String {
    let path = format!("/call/{worker}?timeout_ms=10000");
    raw_http::request("POST", address, &path, &message.to_json())
}

/// One reply to [`call_request`] read from `stream`.
async fn read_reply(stream: &mut TcpStream) -> (u16, Message) {
    let (status, body) = raw_http::read_response(stream).await;
    (status, Message::from_json_slice(&body).expect("a message"))
}

#[actix_rt::test]
async fn an_agent_frozen_for_8_s_answers_every_call_in_flight_when_it_thaws() {
    let dir = TempDir::new();
    let proxy = Proxy::with_workers(&dir, [nap_spec()]).await;
    let agent = Agent::ready(&proxy).await;
    let _naps = [agent.worker("nap", "nap"), agent.worker("nap", "nap")];
    agent.wait_instances(2).await;
    let calls = nap_calls(agent.handle(), 20, 1_000, 30_000);
    agent.wait_in_flight(20).await;
    agent.process.freeze().await;
    actix_rt::time::sleep(Duration::from_secs(8)).await;
    agent.process.signal("CONT");
    let replies = calls.await.unwrap();
    for (i, (status, reply)) in replies.into_iter().enumerate() {
        assert_eq!(
            (status, reply),
            (
                200,
                Message::response("nap", ["1000".to_owned(), i.to_string()])
            )
        );
    }
    assert_eq!(
        agent.stats_sum("received").await,
        20,
        "{}",
        agent.stats().await
    );
}

#[actix_rt::test]
async fn lines_handed_to_an_agent_frozen_for_8_s_are_answered_once_when_it_thaws() {
    let dir = TempDir::new();
    let (_proxy, one, two, _nap) = nap_on_the_second_agent(&dir, AgentOptions::default()).await;
    let received_before = two.stats_sum("received").await;
    let calls = nap_calls(one.handle(), 20, 1_000, 30_000);
    two.wait_in_flight(20).await;
    two.process.freeze().await;
    actix_rt::time::sleep(Duration::from_secs(8)).await;
    two.process.signal("CONT");
    let replies = calls.await.unwrap();
    for (i, reply) in replies.into_iter().enumerate() {
        let expected = Message::response("nap", ["1000".to_owned(), i.to_string()]);
        assert_eq!(reply, (200, expected));
    }
    assert_eq!(two.stats_sum("received").await - received_before, 20);
    assert_eq!(one.pending().await, 0);
}
