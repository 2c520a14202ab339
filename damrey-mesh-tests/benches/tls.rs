//! What TLS costs a line that crosses agents: `add => square` with `add` on one agent
//! and `square` on another, each worker in its own process, driven through the first
//! agent's `/call` by awc clients, once in a plain mesh and once in a mesh with TLS on
//! every link (the proxy over HTTPS, workers over WSS, the agents' peer link with mutual
//! TLS, and the callers over HTTPS). Both meshes run side by side and are measured in
//! alternating rounds; the figures are the medians (by rate) of the rounds.
//!
//! Run it with `cargo bench -p damrey-mesh-tests --bench tls` (it builds the release
//! binaries it starts).
//! `DAMREY_BENCH_SECONDS` (default 3), `DAMREY_BENCH_ROUNDS` (default 3) and
//! `DAMREY_BENCH_IN_FLIGHT` (default 64) tune it.

/// The shared support under the one name this bench uses.
mod support {
    pub use damrey_mesh_tests::mesh::*;
    pub use damrey_mesh_tests::process::*;
    pub use damrey_mesh_tests::wait::*;
}

use damrey_mesh_tests::load::{self, Figures, env_or, median_run, report};

use std::time::Duration;

use damrey_actors::Message;
use support::{
    Agent, Authority, Proxy, TLS_TOKEN, TempDir, eventually, https_client, sqsum_specs, tls_agent,
    tls_proxy, tls_worker,
};

/// Calls `url` from `in_flight` tasks for `seconds` with `client`; every reply must be 49.
async fn drive(client: &awc::Client, url: &str, in_flight: usize, seconds: f64) -> Figures {
    let body = Message::request("sqsum", ["3", "4"]).to_json();
    let (client, url) = (client.clone(), url.to_owned());
    load::drive(
        in_flight,
        seconds,
        &Message::response("sqsum", ["49"]),
        move || {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let mut response = client
                    .post(&url)
                    .bearer_auth(TLS_TOKEN)
                    .send_body(body)
                    .await
                    .expect("the agent answers");
                let reply = response.body().await.expect("a body");
                Message::from_json_slice(&reply).expect("a message")
            }
        },
    )
    .await
}

/// Waits until a call through `url` answers 200.
async fn wait_line(client: &awc::Client, url: &str) {
    eventually(Duration::from_secs(30), "the line answers", || async {
        let response = client
            .post(url)
            .bearer_auth(TLS_TOKEN)
            .send_body(Message::request("sqsum", ["3", "4"]).to_json())
            .await
            .ok()?;
        (response.status().as_u16() == 200).then_some(())
    })
    .await;
}

fn main() {
    let seconds = env_or("DAMREY_BENCH_SECONDS", 3.0);
    let rounds = env_or("DAMREY_BENCH_ROUNDS", 3.0) as usize;
    let in_flight = env_or("DAMREY_BENCH_IN_FLIGHT", 64.0) as usize;
    actix_rt::System::new().block_on(async move {
        println!("medians of {rounds} rounds of {seconds} s, {in_flight} in flight; add on one agent, square on another\n");

        // The plain mesh.
        let plain_dir = TempDir::new();
        let proxy = Proxy::with_workers(&plain_dir, sqsum_specs()).await;
        let (one, two) = (Agent::ready(&proxy).await, Agent::ready(&proxy).await);
        let _add = one.worker("add", "add");
        let _square = two.worker("square", "square");
        one.wait_instances(1).await;
        two.wait_instances(1).await;
        let plain_client = support::client();
        let plain_url = format!("http://{}/call/add?timeout_ms=5000", one.address);
        wait_line(&plain_client, &plain_url).await;

        // The same mesh with TLS and mutual TLS on every link.
        let tls_dir = TempDir::new();
        let mesh = Authority::new(&tls_dir.0, "mesh");
        let tls_client = https_client(&mesh.ca(), None);
        let (tls_proxy_address, _tls_proxy) =
            tls_proxy(&tls_dir, &mesh.issue("proxy"), &tls_client).await;
        for spec in sqsum_specs() {
            let response = tls_client
                .post(format!("https://{tls_proxy_address}/worker/add"))
                .bearer_auth(TLS_TOKEN)
                .send_json(&spec)
                .await
                .expect("the proxy answers");
            assert_eq!(response.status().as_u16(), 201);
        }
        let (state_one, state_two) = (TempDir::new(), TempDir::new());
        let (tls_one, _tls_one) = tls_agent(
            &tls_proxy_address,
            |address| mesh.issue_agent("agent-one", address),
            &mesh.ca(),
            &state_one,
            &tls_client,
        )
        .await;
        let (tls_two, _tls_two) = tls_agent(
            &tls_proxy_address,
            |address| mesh.issue_agent("agent-two", address),
            &mesh.ca(),
            &state_two,
            &tls_client,
        )
        .await;
        let _tls_add = tls_worker(&tls_one, "add", &mesh.ca());
        let _tls_square = tls_worker(&tls_two, "square", &mesh.ca());
        let tls_url = format!("https://{tls_one}/call/add?timeout_ms=5000");
        wait_line(&tls_client, &tls_url).await;

        drive(&plain_client, &plain_url, in_flight, seconds / 3.0).await; // warm up
        drive(&tls_client, &tls_url, in_flight, seconds / 3.0).await;
        let (mut plain, mut tls) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            plain.push(drive(&plain_client, &plain_url, in_flight, seconds).await);
            tls.push(drive(&tls_client, &tls_url, in_flight, seconds).await);
        }
        let (plain, tls) = (median_run(plain), median_run(tls));
        report("plain (HTTP, WS)", &plain);
        report("TLS everywhere, mutual TLS between agents", &tls);
        println!(
            "\nTLS / plain: {:.1}% of the rate, p99 {:.2}x",
            100.0 * tls.rate / plain.rate,
            tls.p99.as_secs_f64() / plain.p99.as_secs_f64()
        );
    });
}
