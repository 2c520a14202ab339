//! Test support: fresh databases, `spawn_app()`, an API client and a TCP forwarder.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::Method;
use actix_web::web::Bytes;
use damrey_proxy::store::{Backend, StoreOptions};
use damrey_proxy::{Application, Settings, Store};
use serde_json::Value;
use sqlx::{Connection, Executor};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The seed's worker JSON.
pub const SEED: &str = r#"{"mpu":"100","name":"entry","agent":"","commands":[{"name":"test","worker":"testWorker","mpu":"1"}]}"#;

/// The seed's worker as the proxy writes it back.
pub fn seed_stored() -> Value {
    serde_json::json!({"name":"entry","agent":"","mpu":"100","commands":[{"name":"test","worker":"testWorker","mpu":"1"}]})
}

/// The `warnings` of a list that holds the seed's worker: it sends to `testWorker`,
/// which no config names.
pub fn seed_warnings() -> Value {
    serde_json::json!({"entry": [r#"type "test" goes to worker testWorker, which is not configured"#]})
}

/// A worker JSON named `name`.
pub fn worker(name: &str, mpu: u32) -> Value {
    serde_json::json!({"name": name, "agent": "", "mpu": mpu.to_string(), "commands": [{"name": "t", "worker": "", "mpu": "0"}]})
}

/// A database that exists for one test: a Postgres database or a SQLite file.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// Which engine holds it.
    pub backend: Backend,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { dir: PathBuf },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; a short-lived one of our own does the SQL.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        sqlx::any::install_default_drivers();
                        if let Ok(mut admin) = sqlx::AnyConnection::connect(&admin_url).await {
                            let _ = admin
                                .execute(
                                    format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)
                                        .as_str(),
                                )
                                .await;
                            let _ = admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// The Postgres server the tests run against, if any: the one `DATABASE_URL` names;
/// without `DATABASE_URL`, one in a container when Docker is here (started once for the
/// whole test binary, removed when it exits); else none, and the tests use SQLite.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let required = std::env::var("DAMREY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Some(url)
        }
        Some(url) if required => panic!(
            "DAMREY_REQUIRE_POSTGRES=1 but DATABASE_URL={url:?} is not a postgres:// URL; \
             the Postgres store tests must run in CI"
        ),
        Some(_) => None,
        None => postgres_in_container(required),
    }
}

/// Postgres in a test container, started by the first test that asks; `None` when
/// Docker is not usable here (a panic when `required`).
fn postgres_in_container(required: bool) -> Option<String> {
    static CONTAINER: OnceLock<Option<damrey_testcontainers::Postgres>> = OnceLock::new();
    CONTAINER
        .get_or_init(|| match damrey_testcontainers::docker_available() {
            Ok(()) => Some(damrey_testcontainers::Postgres::start().unwrap_or_else(|e| {
                panic!("DATABASE_URL is not set and Docker is here, but Postgres did not start in a container: {e}")
            })),
            Err(e) if required => panic!(
                "DAMREY_REQUIRE_POSTGRES=1 but DATABASE_URL is not set and Docker is not usable ({e}); \
                 set DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres or start Docker"
            ),
            Err(_) => None,
        })
        .as_ref()
        .map(|postgres| postgres.url().to_owned())
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL has a scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let query = path
        .split_once('?')
        .map(|(_, query)| format!("?{query}"))
        .unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// `url` with its host and port replaced by `host_port`.
pub fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL has a scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{host_port}/{path}")
}

/// The `host:port` of a URL (5432 when the port is left out).
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL has a scheme").1;
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    }
}

/// A new, empty database for one test: on Postgres when `DATABASE_URL` names it, else SQLite.
pub async fn fresh_database() -> TestDb {
    sqlx::any::install_default_drivers();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match postgres_url() {
        Some(admin_url) => {
            let name = format!("damrey_proxy_test_{unique}");
            let mut admin = sqlx::AnyConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "DATABASE_URL={admin_url:?} names Postgres, but it cannot be reached: {e}"
                    )
                });
            admin
                .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
                .await
                .expect("CREATE DATABASE for the test");
            admin.close().await.unwrap();
            TestDb {
                url: with_database(&admin_url, &name),
                backend: Backend::Postgres,
                cleanup: Cleanup::Postgres { admin_url, name },
            }
        }
        None => {
            let dir = std::env::temp_dir().join(format!("damrey-proxy-test-{unique}"));
            std::fs::create_dir_all(&dir).unwrap();
            TestDb {
                url: format!("sqlite://{}?mode=rwc", dir.join("proxy.db").display()),
                backend: Backend::Sqlite,
                cleanup: Cleanup::Sqlite { dir },
            }
        }
    }
}

/// Settings for a test app on `db`: loopback, port 0, one HTTP worker, fast feed
/// polling, and every heartbeat's samples stored (the tests of sampling set their own).
pub fn test_settings(database_url: &str) -> Settings {
    Settings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        database_url: Some(database_url.to_owned()),
        http_workers: 1,
        max_connections: 5,
        feed_poll_ms: 50,
        stats_every_ms: 0,
        ..Settings::default()
    }
}

/// A migrated store on `db`, outside any app.
pub async fn open_store(db: &TestDb) -> Store {
    Store::connect(&StoreOptions {
        url: db.url.clone(),
        max_connections: 5,
        acquire_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(10),
    })
    .await
    .expect("opening the test store")
}

/// A running proxy.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The app's store (shares its pool).
    pub store: Store,
    /// A client for the app.
    pub api: Api,
    /// The database, shared with other apps of the same test.
    pub db: Arc<TestDb>,
    handle: ServerHandle,
}

impl TestApp {
    /// Stops the server and waits until it has stopped.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }

    /// Another app on the same database, with the same settings otherwise.
    pub async fn another(&self) -> TestApp {
        spawn_on(self.db.clone(), |_| {}).await
    }

    /// Another app on the same database with settings changed by `tweak`.
    pub async fn another_with(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_on(self.db.clone(), tweak).await
    }
}

/// A proxy on a fresh database, default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A proxy on a fresh database with settings changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_on(Arc::new(fresh_database().await), tweak).await
}

/// A proxy on `db` with settings changed by `tweak`.
pub async fn spawn_on(db: Arc<TestDb>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&db.url);
    tweak(&mut settings);
    let token = settings
        .token
        .as_ref()
        .map(|token| token.expose().to_owned());
    let app = Application::build(settings)
        .await
        .expect("building the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        api: Api::new(&address, token),
        address,
        store,
        db,
        handle,
    }
}

/// A reply: its status, its body as JSON and its headers.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body; every answer of the proxy is JSON.
    pub body: Value,
    /// The headers.
    pub headers: actix_web::http::header::HeaderMap,
}

impl Reply {
    /// The `error` field of an error body.
    pub fn error(&self) -> &str {
        self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field in {}", self.body))
    }
}

/// A client with one method per endpoint.
#[derive(Clone)]
pub struct Api {
    address: String,
    token: Option<String>,
    client: awc::Client,
}

impl Api {
    /// A client for `address` that sends `token` as its bearer token when set.
    pub fn new(address: &str, token: Option<String>) -> Api {
        Api {
            address: address.to_owned(),
            token,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(20))
                .finish(),
        }
    }

    /// The same client without a token, or with another one.
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Any request: `body` is sent as is, with `content_type` if given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(content_type) = content_type {
            request = request.insert_header(("content-type", content_type));
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send_body(body.into()).await;
        read(response).await
    }

    /// Any request, its answer as it is: status and body bytes, JSON or not.
    pub async fn raw(&self, method: Method, path: &str, json: &'static str) -> (u16, Bytes) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .insert_header(("content-type", "application/json"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send_body(json).await.expect("the proxy answers");
        let body = response
            .body()
            .limit(1 << 20)
            .await
            .expect("reading the body");
        (response.status().as_u16(), body)
    }

    /// The status of `GET path`, or `None` when nothing listens yet.
    pub async fn probe(&self, path: &str) -> Option<u16> {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await;
        response.ok().map(|response| response.status().as_u16())
    }

    /// A POST of `body` in chunks, without Content-Length.
    pub async fn post_chunked(&self, path: &str, body: Vec<u8>) -> Reply {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(8 * 1024)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        let mut request = self
            .client
            .post(format!("{}{path}", self.address))
            .insert_header(("content-type", "application/json"));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        read(
            request
                .send_stream(futures_util::stream::iter(chunks))
                .await,
        )
        .await
    }

    /// POST `json` (a string, sent as is) to `path` as application/json.
    pub async fn post(&self, path: &str, json: impl Into<String>) -> Reply {
        self.request(Method::POST, path, Some("application/json"), json.into())
            .await
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST /worker/add`.
    pub async fn add(&self, json: impl ToString) -> Reply {
        self.post("/worker/add", json.to_string()).await
    }

    /// `POST /worker/del`.
    pub async fn del(&self, json: impl ToString) -> Reply {
        self.post("/worker/del", json.to_string()).await
    }

    /// `POST /worker/chg`.
    pub async fn chg(&self, json: impl ToString) -> Reply {
        self.post("/worker/chg", json.to_string()).await
    }

    /// `GET /workers/get`.
    pub async fn workers(&self) -> Reply {
        self.get("/workers/get").await
    }

    /// `GET /workers/get?after=N&wait_ms=M`.
    pub async fn workers_after(&self, after: i64, wait_ms: u64) -> Reply {
        self.get(&format!("/workers/get?after={after}&wait_ms={wait_ms}"))
            .await
    }

    /// `GET /workers/{name}`.
    pub async fn worker(&self, name: &str) -> Reply {
        self.get(&format!("/workers/{name}")).await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Reply {
        self.get("/healthz").await
    }

    /// `POST /agents/heartbeat`.
    pub async fn heartbeat(&self, json: impl ToString) -> Reply {
        self.post("/agents/heartbeat", json.to_string()).await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> Reply {
        self.get("/readyz").await
    }

    /// `GET /agents`.
    pub async fn agents(&self) -> Reply {
        self.get("/agents").await
    }

    /// `GET /agents?after=V&wait_ms=M`.
    pub async fn agents_after(&self, after: i64, wait_ms: u64) -> Reply {
        self.get(&format!("/agents?after={after}&wait_ms={wait_ms}"))
            .await
    }

    /// The placement version `GET /agents` answers now.
    pub async fn placement_version(&self) -> i64 {
        let reply = self.agents().await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["version"]
            .as_i64()
            .unwrap_or_else(|| panic!("no version in {reply:?}"))
    }

    /// `POST /agents/forget`.
    pub async fn forget(&self, agent: &str) -> Reply {
        self.post(
            "/agents/forget",
            serde_json::json!({ "agent": agent }).to_string(),
        )
        .await
    }

    /// `GET /workers/stats`, with `?window_ms=N` when given.
    pub async fn stats(&self, window_ms: Option<u64>) -> Reply {
        match window_ms {
            Some(window_ms) => {
                self.get(&format!("/workers/stats?window_ms={window_ms}"))
                    .await
            }
            None => self.get("/workers/stats").await,
        }
    }

    /// `GET /alarms` (active) or `GET /alarms?all=true` (history).
    pub async fn alarms(&self, all: bool) -> Reply {
        self.get(if all { "/alarms?all=true" } else { "/alarms" })
            .await
    }

    /// `GET path` of an answer that is text, not JSON: its status, content type and text.
    pub async fn get_text(&self, path: &str) -> (u16, String, String) {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.expect("the proxy answers");
        let body = response
            .body()
            .limit(1 << 20)
            .await
            .expect("reading the body");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            response.status().as_u16(),
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// The current config version.
    pub async fn version(&self) -> i64 {
        let reply = self.workers().await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body["version"].as_i64().unwrap()
    }
}

async fn read<S>(response: Result<awc::ClientResponse<S>, awc::error::SendRequestError>) -> Reply
where
    S: futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>> + Unpin,
{
    let mut response = response.expect("the proxy answers every request");
    let bytes = response
        .body()
        .limit(1 << 20)
        .await
        .expect("reading the body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "the answer ({}) is not JSON: {e}: {:?}",
            response.status(),
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status: response.status().as_u16(),
        body,
        headers: response.headers().clone(),
    }
}

/// A TCP forwarder between the app and Postgres that can cut every connection and
/// refuse new ones, as a database restart does from the proxy's side, or stall them,
/// as a network partition does.
pub struct Forwarder {
    /// The port to connect to instead of the database's.
    pub port: u16,
    state: Arc<Mutex<ForwarderState>>,
    stalled: Arc<tokio::sync::watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

struct ForwarderState {
    open: bool,
    links: Vec<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding 127.0.0.1:PORT to `target`.
    pub async fn start(target: String) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ForwarderState {
            open: true,
            links: Vec::new(),
        }));
        let stalled = Arc::new(tokio::sync::watch::Sender::new(false));
        let (shared, stall) = (state.clone(), stalled.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !shared.lock().unwrap().open {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut stalled = stall.subscribe();
                let link = tokio::spawn(async move {
                    let stalled_now = *stalled.borrow();
                    if stalled_now {
                        // Hold the connection and never answer.
                        std::future::pending::<()>().await;
                    }
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = async { stalled.wait_for(|stalled| *stalled).await.is_ok() } => {
                            // Keep both sockets open and silent until aborted.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                shared.lock().unwrap().links.push(link);
            }
        });
        Forwarder {
            port,
            state,
            stalled,
            accept,
        }
    }

    /// Closes every forwarded connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.open = false;
        for link in state.links.drain(..) {
            link.abort();
        }
    }

    /// Keeps every connection open but forwards nothing, on old and new connections.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Forwards again; connections that were stalled are closed, as a healed network
    /// would find them broken.
    pub fn restore(&self) {
        if self.stalled.send_replace(false) {
            for link in self.state.lock().unwrap().links.drain(..) {
                link.abort();
            }
        }
        self.state.lock().unwrap().open = true;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// One instance's stats for a heartbeat: `counters` are received, responses, errors,
/// timeouts, stops, retries, restarts and in_flight; `buckets` are (index, count) pairs.
pub fn instance_report(
    worker: &str,
    instance: u64,
    counters: [u64; 8],
    buckets: &[(usize, u64)],
    sum_us: u64,
) -> Value {
    let mut counts = vec![0u64; damrey_wire::report::LATENCY_BUCKETS];
    for (bucket, count) in buckets {
        counts[*bucket] = *count;
    }
    let [
        received,
        responses,
        errors,
        timeouts,
        stops,
        retries,
        restarts,
        in_flight,
    ] = counters;
    serde_json::json!({
        "worker": worker, "instance": instance, "received": received, "responses": responses,
        "errors": errors, "timeouts": timeouts, "stops": stops, "retries": retries,
        "restarts": restarts, "in_flight": in_flight,
        "latency": {"sum_us": sum_us, "counts": counts}
    })
}

/// A heartbeat of `agent` with `instances` as (worker, count) and `stats`.
pub fn heartbeat_json(agent: &str, instances: &[(&str, u32)], stats: Vec<Value>) -> String {
    let instances: Vec<Value> = instances
        .iter()
        .map(|(worker, count)| serde_json::json!({"worker": worker, "count": count}))
        .collect();
    serde_json::json!({"agent": agent, "instances": instances, "stats": stats}).to_string()
}

/// [`heartbeat_json`] with the `routing` section: worker name → its routing counters.
pub fn heartbeat_with_routing(
    agent: &str,
    instances: &[(&str, u32)],
    stats: Vec<Value>,
    routing: Value,
) -> String {
    let mut heartbeat: Value =
        serde_json::from_str(&heartbeat_json(agent, instances, stats)).unwrap();
    heartbeat["routing"] = routing;
    heartbeat.to_string()
}

/// Polls `check` every 50 ms until it gives `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}
