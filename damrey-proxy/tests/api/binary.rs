//! The real `damrey-proxy` binary: the embedded SQLite default, `-p`, and a clean exit on signals.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Api, free_port};

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if api.probe("/healthz").await == Some(200) {
            return;
        }
        assert!(Instant::now() < deadline, "the proxy never became healthy");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_in(dir: &std::path::Path, port: u16) -> Proxy {
    Proxy(
        Command::new(env!("CARGO_BIN_EXE_damrey-proxy"))
            .args(["-p", &port.to_string(), "--host", "127.0.0.1"])
            .current_dir(dir)
            // No database configured: the embedded SQLite file in the working directory.
            .env_remove("DATABASE_URL")
            .env_remove("DAMREY_DATABASE_URL")
            .env_remove("DAMREY_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting damrey-proxy"),
    )
}

async fn wait_for_exit(proxy: &mut Proxy) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the proxy did not exit");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(proxy: &Proxy, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[actix_web::test]
async fn the_binary_uses_an_sqlite_file_in_its_directory_and_exits_zero_on_sigterm_and_sigint() {
    let dir = std::env::temp_dir().join(format!(
        "damrey-proxy-bin-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let api = Api::new(&format!("http://127.0.0.1:{port}"), None);

    let mut proxy = start_in(&dir, port);
    wait_healthy(&api).await;
    assert!(dir.join("damrey-proxy.db").exists());
    assert_eq!(api.add(crate::helpers::SEED).await.status, 201);
    // A long wait on the change feed must not hold up the shutdown.
    let waiter = actix_web::rt::spawn({
        let api = api.clone();
        async move { api.workers_after(1, 30_000).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    signal(&proxy, "TERM");
    let status = wait_for_exit(&mut proxy).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(waiter.await.unwrap().status, 200);

    let mut proxy = start_in(&dir, port);
    wait_healthy(&api).await;
    assert_eq!(api.workers().await.body["workers"][0]["name"], "entry");
    signal(&proxy, "INT");
    assert_eq!(wait_for_exit(&mut proxy).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
