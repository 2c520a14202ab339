//! Test workers and helpers shared by the runtime tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use damrey_actors::prelude::*;

/// Spawns every future on the current arbiter and collects the results in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let handles: Vec<_> = futures.into_iter().map(actix_rt::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.expect("test task panicked"));
    }
    results
}

/// Passes a request on unchanged, counting calls.
pub struct Entry(pub Arc<AtomicUsize>);
impl Actor for Entry {
    type Context = Context<Self>;
}
impl Handler<Message> for Entry {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        self.0.fetch_add(1, Ordering::Relaxed);
        msg
    }
}

/// Sums its integer args, counting calls.
pub struct Add(pub Arc<AtomicUsize>);
impl Actor for Add {
    type Context = Context<Self>;
}
impl Handler<Message> for Add {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        self.0.fetch_add(1, Ordering::Relaxed);
        let sum: Result<i64, _> = msg.args.iter().map(|a| a.parse::<i64>()).sum();
        match sum {
            Ok(sum) => Message::response(msg.kind, [sum.to_string()]),
            Err(e) => Message::error(msg.kind, format!("not a number: {e}")),
        }
    }
}

/// Squares its one integer arg, counting calls.
pub struct Square(pub Arc<AtomicUsize>);
impl Actor for Square {
    type Context = Context<Self>;
}
impl Handler<Message> for Square {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        self.0.fetch_add(1, Ordering::Relaxed);
        let n: i64 = msg.args[0].parse().expect("square gets a number");
        Message::response(msg.kind, [(n * n).to_string()])
    }
}

/// Echoes, but panics in its handler when the first arg is `panic`.
pub struct Panicky;
impl Actor for Panicky {
    type Context = Context<Self>;
}
impl Handler<Message> for Panicky {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        if msg.args.first().map(String::as_str) == Some("panic") {
            panic!("asked to panic");
        }
        Message::response(msg.kind, msg.args)
    }
}

/// Answers after sleeping the milliseconds in its first arg; panics inside its future
/// when the first arg is `panic`. Tracks how many messages it processes at once.
#[derive(Clone, Default)]
pub struct Sleeper {
    pub now: Arc<AtomicUsize>,
    pub most: Arc<AtomicUsize>,
    pub done: Arc<AtomicUsize>,
}
impl Sleeper {
    /// Makes actors that share this sleeper's counters (also after a restart).
    pub fn factory(&self) -> impl Fn() -> Sleeper + Send + Sync + 'static {
        let shared = self.clone();
        move || shared.clone()
    }
}

impl Actor for Sleeper {
    type Context = Context<Self>;
}
impl Handler<Message> for Sleeper {
    type Result = ResponseFuture<Message>;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Self::Result {
        let me = self.clone();
        Box::pin(async move {
            if msg.args.first().map(String::as_str) == Some("panic") {
                panic!("asked to panic in a future");
            }
            let running = me.now.fetch_add(1, Ordering::SeqCst) + 1;
            me.most.fetch_max(running, Ordering::SeqCst);
            let ms: u64 = msg.args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
            actix_rt::time::sleep(Duration::from_millis(ms)).await;
            me.now.fetch_sub(1, Ordering::SeqCst);
            me.done.fetch_add(1, Ordering::SeqCst);
            Message::response(msg.kind, msg.args)
        })
    }
}

/// A shared call counter.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// The value of a call counter.
pub fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}
