//! Requests per second through an in-process 3-worker line (entry => add => square,
//! computing (a+b)^2) with 64 requests in flight, against the ceiling: a raw actix chain
//! of three actors doing the same work with `send().await`.
//!
//! Run with `cargo bench -p damrey-actors --bench line`. Rounds alternate between the
//! two so that machine noise hits both; the medians and their ratio are printed.
//! `DAMREY_BENCH_REQUESTS` (default 200000) and `DAMREY_BENCH_ROUNDS` (default 7) tune it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use damrey_actors::{Config, Message, Router, Worker, WorkerSpec};

const IN_FLIGHT: usize = 64;

fn sum(msg: &Message) -> Message {
    let total: i64 = msg.args.iter().filter_map(|a| a.parse::<i64>().ok()).sum();
    Message::response(msg.kind.clone(), [total.to_string()])
}

fn square(msg: &Message) -> Message {
    let n: i64 = msg.args[0].parse().unwrap_or(0);
    Message::response(msg.kind.clone(), [(n * n).to_string()])
}

// The Damrey workers: what a user writes.

struct Entry;
impl Actor for Entry {
    type Context = Context<Self>;
}
impl Handler<Message> for Entry {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        msg
    }
}

struct Add;
impl Actor for Add {
    type Context = Context<Self>;
}
impl Handler<Message> for Add {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        sum(&msg)
    }
}

struct Square;
impl Actor for Square {
    type Context = Context<Self>;
}
impl Handler<Message> for Square {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        square(&msg)
    }
}

// The raw chain: each actor sends on to the next itself.

struct RawEntry(Addr<RawAdd>);
impl Actor for RawEntry {
    type Context = Context<Self>;
}
impl Handler<Message> for RawEntry {
    type Result = ResponseFuture<Message>;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Self::Result {
        let next = self.0.clone();
        Box::pin(async move { next.send(msg).await.unwrap_or_else(|_| Message::stop()) })
    }
}

struct RawAdd(Addr<RawSquare>);
impl Actor for RawAdd {
    type Context = Context<Self>;
}
impl Handler<Message> for RawAdd {
    type Result = ResponseFuture<Message>;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Self::Result {
        let next = self.0.clone();
        let total = sum(&msg);
        Box::pin(async move {
            next.send(Message::request(total.kind, total.args))
                .await
                .unwrap_or_else(|_| Message::stop())
        })
    }
}

struct RawSquare;
impl Actor for RawSquare {
    type Context = Context<Self>;
}
impl Handler<Message> for RawSquare {
    type Result = Message;
    fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
        square(&msg)
    }
}

/// Runs `requests` calls of `call` with IN_FLIGHT at a time; returns requests per second.
async fn drive<F, Fut>(requests: usize, call: F) -> f64
where
    F: Fn(Message) -> Fut + Clone + 'static,
    Fut: Future<Output = Message> + 'static,
{
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (issued, call) = (issued.clone(), call.clone());
            actix_rt::spawn(async move {
                loop {
                    let i = issued.fetch_add(1, Ordering::Relaxed);
                    if i >= requests {
                        break;
                    }
                    let a = (i % 1000) as i64;
                    let reply =
                        call(Message::request("sqsum", [a.to_string(), "1".to_owned()])).await;
                    assert_eq!(
                        reply.args[0],
                        ((a + 1) * (a + 1)).to_string(),
                        "wrong answer"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client task");
    }
    requests as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests = env_or("DAMREY_BENCH_REQUESTS", 200_000);
    let rounds = env_or("DAMREY_BENCH_ROUNDS", 7);
    System::new().block_on(async move {
        let router = Router::new([
            WorkerSpec::new("entry").command("sqsum", "add"),
            WorkerSpec::new("add").command("sqsum", "square"),
            WorkerSpec::new("square").command("sqsum", ""),
        ])
        .expect("valid specs");
        Worker::new(Config::named("entry")).attach(&router).start(|| Entry).await.expect("entry");
        Worker::new(Config::named("add")).attach(&router).start(|| Add).await.expect("add");
        Worker::new(Config::named("square")).attach(&router).start(|| Square).await.expect("square");
        let raw = RawEntry::create(|_| RawEntry(RawAdd::create(|_| RawAdd(RawSquare.start())).clone()));
        let raw = Arc::new(raw);

        let damrey_call = {
            let router = router.clone();
            move |msg: Message| {
                let router = router.clone();
                async move { router.request("entry", msg, Duration::from_secs(10)).await }
            }
        };
        let raw_call = move |msg: Message| {
            let raw = raw.clone();
            async move { raw.send(msg).await.unwrap_or_else(|_| Message::stop()) }
        };

        // Warm up both paths.
        drive(requests / 10, raw_call.clone()).await;
        drive(requests / 10, damrey_call.clone()).await;

        let (mut raw_rates, mut damrey_rates) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let raw_rate = drive(requests, raw_call.clone()).await;
            let damrey_rate = drive(requests, damrey_call.clone()).await;
            println!(
                "round {round}: raw actix chain {raw_rate:>10.0} req/s   damrey line {damrey_rate:>10.0} req/s"
            );
            raw_rates.push(raw_rate);
            damrey_rates.push(damrey_rate);
        }
        let (raw, damrey) = (median(&mut raw_rates), median(&mut damrey_rates));
        println!("\n{IN_FLIGHT} in flight, {requests} requests a round, medians of {rounds} rounds:");
        println!("raw actix chain (ceiling): {raw:.0} req/s");
        println!("damrey 3-worker line:      {damrey:.0} req/s");
        println!("ratio:                     {:.0}%", 100.0 * damrey / raw);
    });
}
