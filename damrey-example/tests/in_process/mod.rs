//! A proxy (on SQLite) and an agent started in the test's own process from their
//! libraries, for the example's tests that attach workers to a real agent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use damrey_actors::WorkerSpec;

fn fresh_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("damrey-example-test-{nanos}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An agent whose proxy stores `specs`; its `host:port`, once it has loaded them.
pub async fn agent_with(specs: &[WorkerSpec]) -> String {
    let dir = fresh_dir();
    let proxy = damrey_proxy::startup::Application::build(damrey_proxy::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        sqlite_path: dir.join("proxy.db").display().to_string(),
        ..Default::default()
    })
    .await
    .expect("the proxy starts");
    for spec in specs {
        proxy
            .store()
            .add_worker(spec)
            .await
            .expect("the config is stored");
    }
    let proxy_address = format!("127.0.0.1:{}", proxy.port());
    actix_web::rt::spawn(proxy.run_until_stopped());
    let agent = damrey_agent::startup::Application::build(damrey_agent::config::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        proxy: proxy_address,
        state_dir: dir.join("agent"),
        ..Default::default()
    })
    .expect("the agent starts");
    let address = format!("127.0.0.1:{}", agent.port());
    actix_web::rt::spawn(agent.run_until_stopped());
    let ready = format!("http://{address}/readyz");
    let client = awc::Client::default();
    let give_up = Instant::now() + Duration::from_secs(20);
    while !client
        .get(&ready)
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(Instant::now() < give_up, "the agent never became ready");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    address
}
