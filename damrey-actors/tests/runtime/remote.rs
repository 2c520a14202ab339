//! Lines that cross routers through the `Remote` trait, the seam the agent implements.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use damrey_actors::prelude::*;
use damrey_actors::{BoxFuture, Envelope, Remote, RemoteError};
use uuid::Uuid;

use crate::support::{Add, Entry, Square, count, counter};

/// Connects routers in one process as if they were agents at different addresses.
#[derive(Default)]
struct Loopback {
    agents: OnceLock<HashMap<String, Router>>,
}

impl Loopback {
    fn agent(&self, address: &str) -> Result<Router, RemoteError> {
        self.agents
            .get()
            .and_then(|agents| agents.get(address).cloned())
            .ok_or_else(|| RemoteError::Unreachable {
                agent: address.to_owned(),
                reason: "connection refused".to_owned(),
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
        Box::pin(async move {
            let router = target?;
            // Through the wire form, as an agent would send it.
            let envelope: Envelope =
                serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
            tokio::spawn(async move { router.accept(envelope).await });
            Ok(())
        })
    }

    fn reply(
        &self,
        origin: &str,
        id: Uuid,
        reply: Message,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let target = self.agent(origin);
        Box::pin(async move {
            target?.complete(id, reply);
            Ok(())
        })
    }
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
    let remote = Arc::new(Loopback::default());
    let a = Router::with_remote(
        "10.0.0.1:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    let b = Router::with_remote(
        "10.0.0.2:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    b.set_remote_instances("square", vec!["10.0.0.3:7701".to_owned()]);
    let c = Router::with_remote(
        "10.0.0.3:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    remote
        .agents
        .set(HashMap::from([
            ("10.0.0.1:7701".to_owned(), a.clone()),
            ("10.0.0.2:7701".to_owned(), b.clone()),
            ("10.0.0.3:7701".to_owned(), c.clone()),
        ]))
        .ok()
        .unwrap();
    let (add_calls, square_calls) = (counter(), counter());
    Worker::new(Config::named("entry"))
        .attach(&a)
        .start(|| Entry(counter()))
        .await
        .unwrap();
    let add = add_calls.clone();
    Worker::new(Config::named("add"))
        .attach(&b)
        .start(move || Add(add.clone()))
        .await
        .unwrap();
    let square = square_calls.clone();
    Worker::new(Config::named("square"))
        .attach(&c)
        .start(move || Square(square.clone()))
        .await
        .unwrap();

    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::from_secs(2),
        )
        .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    assert_eq!((count(&add_calls), count(&square_calls)), (1, 1));
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn an_unreachable_agent_is_answered_with_error() {
    let remote = Arc::new(Loopback::default());
    remote.agents.set(HashMap::new()).ok().unwrap();
    let a = Router::with_remote("10.0.0.1:7701", Some(remote), specs("10.0.0.9:7701")).unwrap();
    Worker::new(Config::named("entry"))
        .attach(&a)
        .start(|| Entry(counter()))
        .await
        .unwrap();

    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::from_secs(2),
        )
        .await;

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
    let remote = Arc::new(Loopback::default());
    let a = Router::with_remote(
        "10.0.0.1:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    // Agent b takes the envelope but has no instance of add: it waits a grace period
    // for one to attach, then answers ERROR to a; unless the deadline passed first.
    let b = Router::with_remote(
        "10.0.0.2:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    remote
        .agents
        .set(HashMap::from([
            ("10.0.0.1:7701".to_owned(), a.clone()),
            ("10.0.0.2:7701".to_owned(), b),
        ]))
        .ok()
        .unwrap();
    Worker::new(Config::named("entry"))
        .attach(&a)
        .start(|| Entry(counter()))
        .await
        .unwrap();

    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        reply,
        Message::error("sqsum", "worker add has no live instance")
    );
    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::from_millis(300),
        )
        .await;
    assert_eq!(reply, Message::timeout());

    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::ZERO,
        )
        .await;
    assert_eq!(reply, Message::timeout());
    assert_eq!(a.pending_requests(), 0);
}

#[actix::test]
async fn a_handed_over_line_waits_for_an_instance_that_attaches_within_the_grace() {
    let remote = Arc::new(Loopback::default());
    let a = Router::with_remote(
        "10.0.0.1:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    let b = Router::with_remote(
        "10.0.0.2:7701",
        Some(remote.clone()),
        specs("10.0.0.2:7701"),
    )
    .unwrap();
    remote
        .agents
        .set(HashMap::from([
            ("10.0.0.1:7701".to_owned(), a.clone()),
            ("10.0.0.2:7701".to_owned(), b.clone()),
        ]))
        .ok()
        .unwrap();
    Worker::new(Config::named("entry"))
        .attach(&a)
        .start(|| Entry(counter()))
        .await
        .unwrap();
    Worker::new(Config::named("square"))
        .attach(&b)
        .start(|| Square(counter()))
        .await
        .unwrap();
    let late = actix_rt::spawn(async move {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        Worker::new(Config::named("add"))
            .attach(&b)
            .start(|| Add(counter()))
            .await
            .unwrap()
    });

    let reply = a
        .request(
            "entry",
            Message::request("sqsum", ["3", "4"]),
            Duration::from_secs(3),
        )
        .await;

    assert_eq!(reply, Message::response("sqsum", ["49"]));
    late.await.unwrap();
}
