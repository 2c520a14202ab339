//! Overload: one `nap` instance with `mpu` 1 (one 50 ms step at a time) and a burst of
//! 2,000 concurrent 50 ms calls with 3 s deadlines, written at once on connections
//! opened beforehand. About 60 steps fit before the deadline; the rest are refused
//! `ERROR worker nap is overloaded` — how soon after each request was written, and how
//! much memory the agent holds before and after.
//!
//! Run it with `cargo bench -p damrey-mesh-tests --bench overload` (it builds the release
//! binaries it starts).
//! `DAMREY_BENCH_BURST` (default 2000) sets the number of calls.

/// The shared support under the one name this bench uses.
mod support {
    pub use damrey_mesh_tests::mesh::*;
    pub use damrey_mesh_tests::process::*;
}

#[allow(dead_code)]
#[path = "raw_http.rs"]
mod raw_http;

use std::time::{Duration, Instant};

use damrey_actors::{Message, Tag};
use serde_json::json;
use support::{Agent, Proxy, TempDir, join_all};

fn main() {
    let calls: usize = std::env::var("DAMREY_BENCH_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    actix_rt::System::new().block_on(async move {
        let dir = TempDir::new();
        let proxy = Proxy::with_workers(
            &dir,
            [json!({"name": "nap", "mpu": "1", "commands": [{"name": "nap"}]})],
        )
        .await;
        let agent = Agent::ready(&proxy).await;
        let _nap = agent.worker("nap", "nap");
        agent.wait_instances(1).await;
        let nap = Message::request("nap", ["50"]);
        // One step first, so that the agent knows how long a nap takes.
        assert_eq!(agent.call("nap", &nap, 3_000).await.1.tag, Tag::Response);

        let body = nap.to_json();
        let request = format!(
            "POST /call/nap?timeout_ms=3000 HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\n\r\n{body}",
            agent.address,
            body.len()
        )
        .into_bytes();
        let mut streams = Vec::with_capacity(calls);
        for _ in 0..calls {
            streams.push(raw_http::connect(&agent.address).await);
        }
        let rss_before = agent.process.rss_kib();
        let started = Instant::now();
        let replies = join_all(streams.into_iter().map(|mut stream| {
            let request = request.clone();
            async move {
                let sent = Instant::now();
                let reply = raw_http::exchange(&mut stream, &request)
                    .await
                    .expect("the agent answers");
                (reply, sent.elapsed())
            }
        }))
        .await;
        let burst = started.elapsed();
        let rss_after = agent.process.rss_kib();

        let mut overloaded: Vec<Duration> = Vec::new();
        let mut answered: Vec<Duration> = Vec::new();
        let (mut responses, mut timeouts, mut other) = (0, 0, 0);
        for (reply, took) in replies {
            match reply.tag {
                Tag::Response => {
                    responses += 1;
                    answered.push(took);
                }
                Tag::Timeout => timeouts += 1,
                Tag::Error if reply.args[0].starts_with("worker nap is overloaded") => {
                    overloaded.push(took)
                }
                _ => other += 1,
            }
        }
        overloaded.sort();
        answered.sort();
        let at = |sorted: &[Duration], q: f64| {
            sorted
                .get(((sorted.len().saturating_sub(1)) as f64 * q) as usize)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        };
        println!(
            "burst of {calls} calls (nap 50 ms, mpu 1, 3 s deadlines), all answered in {:.0} ms",
            burst.as_secs_f64() * 1e3
        );
        println!(
            "  {responses} RESPONSE (the last after {:.0} ms), {timeouts} TIMEOUT, {other} other",
            at(&answered, 1.0)
        );
        println!(
            "  {} overloaded ERROR, answered after p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            overloaded.len(),
            at(&overloaded, 0.5),
            at(&overloaded, 0.99),
            at(&overloaded, 1.0)
        );
        println!(
            "  agent VmRSS {rss_before} KiB before the burst, {rss_after} KiB after ({calls} connections open)"
        );
    });
}
