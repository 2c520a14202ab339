//! The real `damrey-proxy` binary: the embedded SQLite default (a file in its working
//! directory), and a clean exit on SIGTERM and SIGINT, with a long wait on the change
//! feed answered rather than holding up the shutdown; a request on an idle connection
//! while it is frozen.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{Proxy, TempDir, client, raw_http};

#[actix_rt::test]
async fn the_binary_uses_an_sqlite_file_in_its_directory_and_exits_zero_on_sigterm_and_sigint() {
    let dir = TempDir::new();
    let mut proxy = Proxy::start(&dir).await;
    assert!(dir.0.join("damrey-proxy.db").exists());
    proxy
        .add(json!({"mpu": "100", "name": "entry", "agent": "", "commands": [{"name": "test", "worker": "testWorker", "mpu": "1"}]}))
        .await;
    // A long wait on the change feed must not hold up the shutdown.
    let waiter = actix_rt::spawn({
        let url = format!("http://{}/workers/get?after=1&wait_ms=30000", proxy.address);
        async move {
            let response = client().get(url).send().await.expect("the proxy answers");
            response.status().as_u16()
        }
    });
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    proxy.process.signal("TERM");
    assert_eq!(proxy.process.wait_exit().await, Some(0));
    assert_eq!(waiter.await.unwrap(), 200);

    proxy.restart().await;
    let stored: Value = proxy.get_json("/workers/get").await;
    assert_eq!(stored["workers"][0]["name"], "entry");
    proxy.process.signal("INT");
    assert_eq!(proxy.process.wait_exit().await, Some(0));
}

#[actix_rt::test]
async fn a_request_on_an_idle_connection_of_a_proxy_frozen_longer_than_5_s_is_answered() {
    let dir = TempDir::new();
    let proxy = Proxy::start(&dir).await;
    let request = raw_http::request("GET", &proxy.address, "/healthz", "");
    let mut connection = TcpStream::connect(&proxy.address).await.unwrap();
    connection.write_all(request.as_bytes()).await.unwrap();
    let healthy = raw_http::read_response(&mut connection).await;
    assert_eq!(healthy.0, 200);

    // Idle, as an agent's pool keeps it; the next request is sent while the proxy is
    // frozen for longer than actix-web's default keep-alive.
    proxy.process.freeze().await;
    connection.write_all(request.as_bytes()).await.unwrap();
    actix_rt::time::sleep(Duration::from_secs(6)).await;
    proxy.process.signal("CONT");
    assert_eq!(raw_http::read_response(&mut connection).await, healthy);
}
