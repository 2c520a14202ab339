//! Lines that cross routers through the `Remote` trait, the seam the agent implements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::dev::MessageResponse;
use damrey_actors::prelude::*;
use damrey_actors::{BoxFuture, Envelope, Remote, RemoteError, Terminal};
use uuid::Uuid;

use crate::support::{Add, Entry, Square, count, counter};

/// Connects routers in one process as if they were agents at different addresses.
#[derive(Default)]
struct Loopback {
    agents: OnceLock<HashMap<String, Router>>,
    /// Hand-offs tried to agents that are not there.
    refused: AtomicUsize,
    /// Every hand-off is taken but its ack is lost (the sender cannot tell).
    acks_lost: bool,
    /// Legs taken, so a resend is kept once, as an agent keeps it.
    taken: std::sync::Mutex<std::collections::HashSet<(Uuid, u32)>>,
}

impl Loopback {
    fn agent(&self, address: &str) -> Result<Router, RemoteError> {
        self.agents
            .get()
            .and_then(|agents| agents.get(address).cloned())
            .ok_or_else(|| {
                self.refused.fetch_add(1, Ordering::SeqCst);
                RemoteError::Unreachable {
                    agent: address.to_owned(),
                    reason: "connection refused".to_owned(),
                }
            })
    }
}

impl Remote for Loopback {
    fn forward(
        &self,
        agent: &str,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let target = self.agent(agent);
        let first_time = self
            .taken
            .lock()
            .unwrap()
            .insert((envelope.id, envelope.leg));
        let acks_lost = self.acks_lost;
        let agent = agent.to_owned();
        Box::pin(async move {
            let router = target?;
            // Through the wire form, as an agent would send it.
            let envelope: Envelope =
                serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
            if first_time {
                tokio::spawn(async move { router.accept(envelope).await });
            }
            if acks_lost {
                return Err(RemoteError::Unacknowledged {
                    agent,
                    reason: "no ack in time".to_owned(),
                });
            }
            Ok(())
        })
    }

    fn reply(
        &self,
        origin: &str,
        id: Uuid,
        reply: Terminal,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let target = self.agent(origin);
        Box::pin(async move {
            target?.complete(id, reply);
            Ok(())
        })
    }
}

/// Routers for agents at `addresses`, joined by one loopback; `add` is pinned to
/// `add_agent`, and every address not in `addresses` is unreachable.
fn agents<const N: usize>(addresses: [&str; N], add_agent: &str) -> [Router; N] {
    agents_on(Arc::new(Loopback::default()), addresses, add_agent)
}

/// As [`agents`], on a given loopback.
fn agents_on<const N: usize>(
    remote: Arc<Loopback>,
    addresses: [&str; N],
    add_agent: &str,
) -> [Router; N] {
    let routers = addresses.map(|address| {
        Router::with_remote(
            address,
            Some(remote.clone() as Arc<dyn Remote>),
            specs(add_agent),
        )
        .unwrap()
    });
    let by_address = addresses
        .iter()
        .map(|address| address.to_string())
        .zip(routers.iter().cloned())
        .collect();
    remote.agents.set(by_address).ok().unwrap();
    routers
}

/// Starts `factory` as worker `name` on `router`.
async fn start<A, F>(router: &Router, name: &str, factory: F)
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
    F: Fn() -> A + Send + Sync + 'static,
{
    Worker::new(Config::named(name))
        .attach(router)
        .start(factory)
        .await
        .unwrap();
}

fn specs(add_agent: &str) -> Vec<WorkerSpec> {
    vec![
        WorkerSpec::new("entry").command("sqsum", "add"),
        WorkerSpec::new("add")
            .agent(add_agent)
            .command("sqsum", "square"),
        WorkerSpec::new("square").command("sqsum", ""),
    ]
}

#[actix::test]
async fn a_line_crossing_agents_ends_with_the_reply_at_the_origin() {
    let [a, b, c] = agents(
        ["10.0.0.1:7701", "10.0.0.2:7701", "10.0.0.3:7701"],
        "10.0.0.2:7701",
    );
    b.set_remote_instances("square", vec!["10.0.0.3:7701".to_owned()]);
    let (add_calls, square_calls) = (counter(), counter());
    start(&a, "entry", || Entry(counter())).await;
    let add = add_calls.clone();
    start(&b, "add", move || Add(add.clone())).await;
    let square = square_calls.clone();
    start(&c, "square", move || Square(square.clone())).await;

    let reply = a.request("entry", sqsum(), Duration::from_secs(2)).await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    assert_eq!((count(&add_calls), count(&square_calls)), (1, 1));
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn an_unreachable_agent_is_answered_with_error() {
    let [a] = agents(["10.0.0.1:7701"], "10.0.0.9:7701");
    start(&a, "entry", || Entry(counter())).await;

    let reply = a.request("entry", sqsum(), Duration::from_secs(2)).await;

    assert_eq!(
        reply,
        Message::error(
            "sqsum",
            "agent 10.0.0.9:7701 could not be reached: connection refused"
        )
    );
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn an_agent_without_instances_answers_error_after_a_grace_and_nothing_stays_pending() {
    // Agent b takes the envelope but has no instance of add: it waits a grace period
    // for one to attach, then answers ERROR to a; unless the deadline passed first.
    let [a, _b] = agents(["10.0.0.1:7701", "10.0.0.2:7701"], "10.0.0.2:7701");
    start(&a, "entry", || Entry(counter())).await;

    let reply = a.request("entry", sqsum(), Duration::from_secs(5)).await;
    assert_eq!(
        reply,
        Message::error("sqsum", "worker add has no live instance")
    );
    let reply = a
        .request("entry", sqsum(), Duration::from_millis(300))
        .await;
    assert_eq!(reply, Message::timeout());
    let reply = a.request("entry", sqsum(), Duration::ZERO).await;
    assert_eq!(reply, Message::timeout());
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn a_handed_over_line_waits_for_an_instance_that_attaches_within_the_grace() {
    let [a, b] = agents(["10.0.0.1:7701", "10.0.0.2:7701"], "10.0.0.2:7701");
    start(&a, "entry", || Entry(counter())).await;
    start(&b, "square", || Square(counter())).await;
    let late = actix_rt::spawn(async move {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        start(&b, "add", || Add(counter())).await;
    });

    let reply = a.request("entry", sqsum(), Duration::from_secs(3)).await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    late.await.unwrap();
}

fn sqsum() -> Message {
    Message::request("sqsum", ["3", "4"])
}

#[actix::test]
async fn an_unreachable_holder_is_skipped_for_another_agent_holding_the_worker() {
    let remote = Arc::new(Loopback::default());
    let [a, b] = agents_on(remote.clone(), ["10.0.0.1:7701", "10.0.0.2:7701"], "");
    a.set_remote_instances(
        "add",
        vec!["10.0.0.9:7701".to_owned(), "10.0.0.2:7701".to_owned()],
    );
    start(&a, "entry", || Entry(counter())).await;
    start(&b, "add", || Add(counter())).await;
    start(&b, "square", || Square(counter())).await;

    for _ in 0..6 {
        let reply = a.request("entry", sqsum(), Duration::from_secs(3)).await;
        assert_eq!(reply, Message::response("sqsum", ["49"]));
    }
    assert_eq!(a.pending_requests(), 0);
    // Once refused, the missing agent is passed over by the lines that follow.
    assert!(remote.refused.load(Ordering::SeqCst) <= 1);
}

#[actix::test]
async fn a_line_that_zigzags_back_through_its_origin_answers_there() {
    // entry and square on a, add pinned to b: a call put to b goes b → a → b → a, and
    // the reply comes back to b, where the request started.
    let [a, b] = agents(["10.0.0.1:7701", "10.0.0.2:7701"], "10.0.0.2:7701");
    b.set_remote_instances("entry", vec!["10.0.0.1:7701".to_owned()]);
    b.set_remote_instances("square", vec!["10.0.0.1:7701".to_owned()]);
    let (add_calls, square_calls) = (counter(), counter());
    start(&a, "entry", || Entry(counter())).await;
    let add = add_calls.clone();
    start(&b, "add", move || Add(add.clone())).await;
    let square = square_calls.clone();
    start(&a, "square", move || Square(square.clone())).await;

    for _ in 0..3 {
        let reply = b.request("entry", sqsum(), Duration::from_secs(2)).await;
        assert_eq!(reply, Message::response("sqsum", ["49"]));
    }
    assert_eq!((count(&add_calls), count(&square_calls)), (3, 3));
    assert_eq!((a.pending_requests(), b.pending_requests()), (0, 0));
}

#[actix::test]
async fn a_reply_that_comes_before_the_ack_ends_the_request_at_the_origin() {
    let remote = Arc::new(Loopback {
        acks_lost: true,
        ..Loopback::default()
    });
    let [a, b] = agents_on(remote, ["10.0.0.1:7701", "10.0.0.2:7701"], "10.0.0.2:7701");
    let (add_calls, square_calls) = (counter(), counter());
    start(&a, "entry", || Entry(counter())).await;
    let add = add_calls.clone();
    start(&b, "add", move || Add(add.clone())).await;
    let square = square_calls.clone();
    start(&b, "square", move || Square(square.clone())).await;

    let reply = a.request("entry", sqsum(), Duration::from_secs(3)).await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    assert_eq!((count(&add_calls), count(&square_calls)), (1, 1));
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn the_largest_deadlines_are_carried_without_overflow() {
    let [_a, b] = agents(["10.0.0.1:7701", "10.0.0.2:7701"], "10.0.0.2:7701");
    start(&b, "add", || Add(counter())).await;
    start(&b, "square", || Square(counter())).await;

    let reply = b.request("add", sqsum(), Duration::MAX).await;
    assert_eq!(reply, Message::response("sqsum", ["49"]));
    // From the wire: the line runs and its reply goes to the origin.
    b.accept(Envelope {
        id: Uuid::new_v4(),
        leg: 1,
        to: "add".to_owned(),
        origin: "10.0.0.1:7701".to_owned(),
        remaining_ms: u64::MAX,
        hops: 0,
        message: sqsum(),
    })
    .await;
}

#[actix::test]
async fn an_agent_that_left_the_holders_lately_still_gets_the_lines_no_one_else_can_take() {
    // b said it is leaving (draining): a no longer lists it, but it still runs what it is
    // handed, and a line that needs its workers must not wait for its deadline.
    let [a, b] = agents(["10.0.0.1:7701", "10.0.0.2:7701"], "");
    start(&a, "entry", || Entry(counter())).await;
    start(&b, "add", || Add(counter())).await;
    start(&b, "square", || Square(counter())).await;
    a.set_remote_instances("add", vec!["10.0.0.2:7701".to_owned()]);
    a.set_remote_instances("add", Vec::new());

    let reply = a.request("entry", sqsum(), Duration::from_secs(2)).await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
}
