//! The NATS baseline of the mesh bench: a local `nats-server` (Debian's package) and the
//! example line played over NATS request/reply by three service processes, each this
//! bench binary run again with [`SERVICE`] set. `entry` gets `a b` (whitespace-separated
//! integers), checks them, requests `add` with the same payload and `square` with the
//! sum, and answers `(a+b)^2`; the arithmetic is the example workers' (checked `i64`), and
//! a failure is answered `ERROR <reason>`.

use std::process::Command;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

use damrey_mesh_tests::process::{Process, TempDir};
use damrey_mesh_tests::wait::{PATIENCE, eventually_seen};

/// Set in a service process's environment: the service this bench binary plays.
pub const SERVICE: &str = "DAMREY_BENCH_NATS_SERVICE";
/// Set beside [`SERVICE`]: the server's address.
const SERVER: &str = "DAMREY_BENCH_NATS_SERVER";
/// The services of the line, each its own process, subscribed to the subject of its name.
const SERVICES: [&str; 3] = ["entry", "add", "square"];
/// How long a request waits for its reply, as the bench's Damrey calls do.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `nats-server` is on the `PATH`.
pub fn server_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
    })
}

/// A local `nats-server` with the three services subscribed, and the bench's client of
/// it; every process is killed when dropped.
pub struct Nats {
    server: Process,
    services: Vec<Process>,
    client: async_nats::Client,
    /// The server's config file.
    _dir: TempDir,
}

impl Nats {
    /// Starts the server on a port of the OS's choosing and the services, and waits until
    /// the line answers.
    ///
    /// # Panics
    /// When a process cannot start or the line never answers 49.
    pub async fn start() -> Nats {
        let dir = TempDir::new();
        let config = dir.0.join("nats.conf");
        // Port -1: the OS chooses, the server's log says which. The payload limit is
        // raised from 1 MB so that a 1 MiB argument fits, as it should in Damrey.
        std::fs::write(&config, "listen: \"127.0.0.1:-1\"\nmax_payload: 4MB\n")
            .expect("the server's config is written");
        let mut server = Process::spawn(
            "nats-server",
            Command::new("nats-server").arg("-c").arg(&config),
        );
        let address = format!("nats://127.0.0.1:{}", server.bound_port().await);
        let bench = std::env::current_exe().expect("this bench");
        let services = SERVICES
            .iter()
            .map(|service| {
                Process::spawn(
                    service,
                    Command::new(&bench)
                        .env(SERVICE, service)
                        .env(SERVER, &address),
                )
            })
            .collect();
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(&address)
            .await
            .expect("the bench connects to nats-server");
        let nats = Nats {
            server,
            services,
            client,
            _dir: dir,
        };
        eventually_seen(PATIENCE, "the NATS line answers 49", || async {
            match nats.request(Bytes::from_static(b"3 4")).await {
                Ok(reply) if reply == "49" => Ok(()),
                Ok(reply) => Err(String::from_utf8_lossy(&reply).into_owned()),
                Err(error) => Err(error),
            }
        })
        .await;
        nats
    }

    /// The processes doing the line's work: the server and the three services.
    pub fn processes(&self) -> Vec<&Process> {
        std::iter::once(&self.server)
            .chain(&self.services)
            .collect()
    }

    /// Requests `(a+b)^2` of `payload` (`a b`) from `entry`: the reply's payload.
    ///
    /// # Errors
    /// Why no reply came (no responders, a timeout...).
    pub async fn request(&self, payload: Bytes) -> Result<Bytes, String> {
        request(&self.client, "entry", payload).await
    }

    /// A caller for the load generator that puts `payload` to `entry`.
    pub fn caller(
        &self,
        payload: Bytes,
    ) -> impl Fn() -> LocalBoxFuture<'static, Bytes> + Clone + use<> {
        let client = self.client.clone();
        move || {
            let (client, payload) = (client.clone(), payload.clone());
            Box::pin(async move {
                request(&client, "entry", payload)
                    .await
                    .unwrap_or_else(|error| panic!("a NATS request failed: {error}"))
            })
        }
    }
}

/// A request to `subject`: the reply's payload, or why none came.
async fn request(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
) -> Result<Bytes, String> {
    client
        .request(subject.to_owned(), payload)
        .await
        .map(|reply| reply.payload)
        .map_err(|error| error.to_string())
}

/// Plays `service` of the line on one thread (as a Damrey worker process runs) until the
/// server goes away: `add` and `square` answer in turn, `entry` runs a task per request.
///
/// # Panics
/// When the server cannot be reached, or `service` is not one of the line's.
pub fn serve(service: &str) {
    let address = std::env::var(SERVER).expect("the server's address is set");
    let service = service.to_owned();
    actix_rt::System::new().block_on(async move {
        let client = async_nats::connect(&address)
            .await
            .expect("the service connects to nats-server");
        let mut requests = client
            .subscribe(service.clone())
            .await
            .expect("the service subscribes");
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply else {
                continue;
            };
            let payload = request.payload;
            let answer = match service.as_str() {
                "entry" => {
                    let client = client.clone();
                    actix_rt::spawn(async move {
                        let answer = entry(&client, payload).await;
                        let _ = client.publish(reply_to, answer).await;
                    });
                    continue;
                }
                "add" => answer(integers::<2>(&payload).and_then(|[a, b]| {
                    a.checked_add(b)
                        .ok_or_else(|| format!("{a} + {b} overflows"))
                })),
                "square" => answer(
                    integers::<1>(&payload)
                        .and_then(|[n]| n.checked_mul(n).ok_or_else(|| format!("{n}^2 overflows"))),
                ),
                other => panic!("no NATS service is named {other}"),
            };
            let _ = client.publish(reply_to, answer).await;
        }
    });
}

/// The `entry` service's answer to `payload`: the line's result, or the first `ERROR`.
async fn entry(client: &async_nats::Client, payload: Bytes) -> Bytes {
    if let Err(reason) = integers::<2>(&payload) {
        return error(&reason);
    }
    let sum = match request(client, "add", payload).await {
        Ok(sum) if !sum.starts_with(b"ERROR") => sum,
        Ok(error) => return error,
        Err(reason) => return self::error(&reason),
    };
    request(client, "square", sum)
        .await
        .unwrap_or_else(|reason| error(&reason))
}

/// The payload answering `result`.
fn answer(result: Result<i64, String>) -> Bytes {
    match result {
        Ok(value) => Bytes::from(value.to_string()),
        Err(reason) => error(&reason),
    }
}

fn error(reason: &str) -> Bytes {
    Bytes::from(format!("ERROR {reason}"))
}

/// Exactly `N` integers of `payload` separated by ASCII whitespace (as the example's
/// workers read theirs), or what is wrong with them.
fn integers<const N: usize>(payload: &[u8]) -> Result<[i64; N], String> {
    let text = std::str::from_utf8(payload).map_err(|_| "the payload is not text".to_owned())?;
    let mut words = text.split_ascii_whitespace();
    let mut values = [0; N];
    for value in &mut values {
        let word = words
            .next()
            .ok_or_else(|| format!("wants {N} integer argument(s)"))?;
        *value = word
            .parse()
            .map_err(|_| format!("{word:?} is not an integer"))?;
    }
    match words.next() {
        Some(_) => Err(format!("wants {N} integer argument(s)")),
        None => Ok(values),
    }
}
