//! The benches' load generator: a call driven from many tasks for a while, every reply
//! checked, and the figures it gives (rate, p50, p99), printed one line each.

use std::cell::RefCell;
use std::fmt::Debug;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What one measured run gives.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// Replies per second.
    pub rate: f64,
    /// The median latency.
    pub p50: Duration,
    /// The 99th percentile latency.
    pub p99: Duration,
    /// The replies received.
    pub replies: usize,
}

/// Runs `call` from `in_flight` tasks for `seconds`; every reply must be `expected` (a
/// Damrey message, or the bytes of another system's reply).
///
/// # Panics
/// On a reply other than `expected`.
pub async fn drive<F, Fut, R>(in_flight: usize, seconds: f64, expected: &R, call: F) -> Figures
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = R> + 'static,
    R: PartialEq + Debug + Clone + 'static,
{
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let latencies = Rc::new(RefCell::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (call, latencies, expected) = (call.clone(), latencies.clone(), expected.clone());
            actix_rt::spawn(async move {
                while Instant::now() < until {
                    let sent = Instant::now();
                    let reply = call().await;
                    latencies.borrow_mut().push(sent.elapsed());
                    assert_eq!(reply, expected, "wrong answer");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("load task");
    }
    let elapsed = started.elapsed();
    let mut latencies = latencies.take();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        replies: latencies.len(),
    }
}

/// The run of median rate among `runs`.
///
/// # Panics
/// When `runs` is empty.
pub fn median_run(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    runs.swap_remove(runs.len() / 2)
}

/// The median of `values` (the mean of the middle two of an even count).
///
/// # Panics
/// When `values` is empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// Prints `figures` as one line of a bench's table.
pub fn report(label: &str, figures: &Figures) {
    println!(
        "{label:<44} {:>9.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        figures.rate,
        figures.p50.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() * 1e6
    );
}

/// The number in the environment variable `name`, else `default`.
pub fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
