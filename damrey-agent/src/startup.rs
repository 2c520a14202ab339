//! Building and running the agent: bind, router (from the config cache until the proxy
//! answers), peer links, proxy loops, HTTP server, and its stop on SIGINT/SIGTERM (see
//! [`crate::shutdown`]).

use std::sync::Arc;
use std::time::Duration;

use actix_rt::task::JoinHandle;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use damrey_actors::Router;
use damrey_service::telemetry;
use damrey_service::tls::{self, TlsError};

use crate::attach::SessionSettings;
use crate::auth;
use crate::cache::ConfigCache;
use crate::config::Settings;
use crate::known::KnownAgents;
use crate::peers::PeerLinks;

use crate::proxy_client::{self, ProxyClient};
use crate::routes::{self, AppState};
use crate::shutdown::{self, Shutdown};
use crate::stats::Registry;

/// What actix-web's own graceful stop may still wait, after the agent's drain, for a
/// connection that has not ended (an idle keep-alive one, or a last response to a slow
/// reader); it looks again every second.
const SERVER_STOP_TIMEOUT_S: u64 = 1;

/// A bound, ready-to-run agent.
pub struct Application {
    port: u16,
    /// Drained at the stop.
    router: Router,
    server: Server,
    shutdown: Shutdown,
    drain: Duration,
    /// Ends after the farewell heartbeat, which tells the proxy this agent is leaving.
    heartbeat: JoinHandle<()>,
}

/// An agent that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The TLS settings cannot be used.
    #[error("the TLS settings cannot be used")]
    Tls(#[from] TlsError),
    /// Only half of TLS is set: an agent serves and dials over TLS, or neither.
    #[error(
        "TLS is half set: give an agent its certificate and key (tls_cert, tls_key) and the \
         mesh's CA (tls_ca) together, or none of them; with {set} alone it would {half}"
    )]
    HalfTls {
        /// What is set.
        set: &'static str,
        /// What would go wrong.
        half: &'static str,
    },
    /// The port could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// What was asked for.
        address: String,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
}

/// Loads the configs kept on disk into the router, so the agent routes (and takes its
/// workers back) while the proxy is away. A cache that cannot be used is logged and
/// left for the proxy's next answer to replace: the agent then waits for the proxy.
fn route_from_cache(router: &Router, cache: &ConfigCache) {
    let path = cache.path().display();
    match cache.load() {
        Ok(Some(list)) => {
            let workers = list.workers.len();
            match router.set_cached_specs(list.workers) {
                Ok(()) => tracing::info!(
                    version = list.version,
                    workers,
                    %path,
                    "routing from the cached configs until the proxy answers"
                ),
                Err(error) => tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    %path,
                    "the config cache holds an invalid config; ignored"
                ),
            }
        }
        Ok(None) => tracing::info!(%path, "no config cache yet; ready once the proxy answers"),
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "config cache ignored; ready once the proxy answers"
        ),
    }
}

/// Warns when the agent's certificate does not name its advertised address `me`: its
/// peers then refuse every link to it (an address is known only once the port is bound,
/// so this is no start-up error: `-p 0` without `-a` advertises the port it got).
fn warn_unless_named(identity: &tls::Identity, me: &str) -> Result<(), TlsError> {
    let certificates = tls::certificates(&identity.cert)?;
    let named = certificates
        .first()
        .map(tls::agent_names)
        .unwrap_or_default();
    if !named.iter().any(|agent| agent == me) {
        tracing::warn!(
            agent = %me,
            certificate = %identity.cert.display(),
            named = ?named,
            remedy = tls::REMAKE,
            "this agent's certificate does not name its advertised address, so its peers \
             refuse links to it"
        );
    }
    Ok(())
}

impl Application {
    /// Binds the port (0 lets the OS choose), builds the router and starts the
    /// background loops that follow the proxy. Must run inside an actix system.
    ///
    /// # Errors
    /// [`StartupError::Bind`] when the port is taken, [`StartupError::Tls`] when a TLS
    /// file cannot be used.
    pub fn build(settings: Settings) -> Result<Application, StartupError> {
        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            damrey_service::connections::bind(&address).map_err(|source| StartupError::Bind {
                address: address.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        let me = if settings.advertise.is_empty() {
            format!("127.0.0.1:{port}")
        } else {
            settings.advertise.clone()
        };

        let cache = ConfigCache::new(&settings.state_dir, &me);
        let known = Arc::new(KnownAgents::remembered(
            me.clone(),
            ConfigCache::new(&settings.state_dir, &me),
        ));
        let identity = settings.tls_identity()?;
        match (identity.is_some(), settings.tls_ca.is_some()) {
            (true, false) => {
                return Err(StartupError::HalfTls {
                    set: "a certificate",
                    half: "serve HTTPS but dial its proxy and peers in plain text",
                });
            }
            (false, true) => {
                return Err(StartupError::HalfTls {
                    set: "a CA",
                    half: "dial over TLS but serve plain HTTP its peers cannot reach",
                });
            }
            _ => {}
        }
        let tls_client = settings.tls_client()?;
        let tls_server = match &identity {
            Some(identity) => Some(tls::server_config(identity, settings.tls_ca.as_deref())?),
            None => None,
        };
        let dialer = match (&settings.tls_ca, &identity) {
            (Some(ca), Some(identity)) => {
                warn_unless_named(identity, &me)?;
                Some(tls::AgentDialer::new(ca, Some(identity))?)
            }
            _ => None,
        };
        let links = PeerLinks::new(settings.own_token(), dialer);
        let router = Router::unloaded(me, Some(Arc::new(links)));
        router.set_retries(settings.retries);
        // Before the proxy's answer can arrive, so that the cache never overwrites it.
        route_from_cache(&router, &cache);

        let proxy_timeout = Duration::from_millis(settings.feed_wait_ms + 5_000);
        actix_rt::spawn(proxy_client::follow_configs(
            router.clone(),
            ProxyClient::new(
                &settings.proxy,
                settings.own_token(),
                proxy_timeout,
                tls_client.as_ref(),
            ),
            settings.feed_wait_ms,
            cache,
        ));
        // As long a wait as the configs': every change of the placement, an agent
        // found silent included, moves its version and ends the wait.
        actix_rt::spawn(proxy_client::follow_placement(
            router.clone(),
            ProxyClient::new(
                &settings.proxy,
                settings.own_token(),
                proxy_timeout,
                tls_client.as_ref(),
            ),
            settings.feed_wait_ms,
            known.clone(),
        ));
        let registry = Arc::new(Registry::default());
        let shutdown = Shutdown::default();
        let heartbeat = actix_rt::spawn(proxy_client::heartbeat(
            router.clone(),
            settings.stats.then(|| registry.clone()),
            ProxyClient::new(
                &settings.proxy,
                settings.own_token(),
                Duration::from_secs(2),
                tls_client.as_ref(),
            ),
            Duration::from_millis(settings.heartbeat_ms),
            shutdown.on_draining(),
        ));

        let state = AppState {
            router: router.clone(),
            seen: Arc::default(),
            known,
            sessions: SessionSettings {
                ping_every: Duration::from_millis(settings.ping_ms),
                registry,
                counting: settings.stats,
                outbox: Arc::default(),
                run: uuid::Uuid::new_v4(),
            },
            max_call: Duration::from_millis(settings.max_call_ms),
            shutdown: shutdown.clone(),
            peer_certificate_required: tls_server.is_some() && settings.tls_ca.is_some(),
        };
        let credentials = web::Data::new(settings.credentials());
        if !credentials.is_required() {
            tracing::warn!(
                host = %settings.host,
                "no credentials set: every endpoint is open (set DAMREY_TOKEN or the role tokens)"
            );
        }
        let connections = shutdown.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(credentials.clone())
                // Before any handler, so before any body is read or upgrade handled.
                .wrap(from_fn(auth::require_credential))
                .wrap(from_fn(telemetry::log_requests))
                .configure(routes::configure)
        })
        // Kept with the connection and dropped when it ends: the drain waits for them.
        .on_connect(move |connection, extensions| {
            extensions.insert(connections.connection());
            if let Some(client) = routes::peer::client_certificate(connection) {
                extensions.insert(client);
            }
        })
        .disable_signals()
        .keep_alive(damrey_service::connections::KEEP_ALIVE)
        // No Nagle on any accepted connection: worker and peer links among them carry
        // frames both ways, already gathered per wake-up (`damrey_service::tls::client`
        // sets it on the other end).
        .tcp_nodelay(true)
        .shutdown_timeout(SERVER_STOP_TIMEOUT_S);
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let https = tls_server.is_some();
        let server = match tls_server {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind {
            address: format!("port {port}"),
            source,
        })?
        .run();
        tracing::info!(port, https, agent = router.me(), proxy = %settings.proxy, "agent listening");
        Ok(Application {
            port,
            router,
            server,
            shutdown,
            drain: Duration::from_millis(settings.drain_ms),
            heartbeat,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then stops in order (see [`crate::shutdown`]):
    /// refuses new work and tells the proxy it is leaving, drains for up to `drain_ms`,
    /// answers what is left `STOP`, closes worker sessions and peer links, stops the
    /// HTTP server, and returns once the farewell heartbeat is sent.
    ///
    /// # Errors
    /// The signal handlers could not be installed, or the server's I/O failed.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stop_signal = shutdown::stop_signal()?;
        let handle = self.server.handle();
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => return served,
            () = stop_signal => {}
        }
        self.shutdown.drain(&self.router, self.drain).await;
        let (served, ()) = tokio::join!(server, handle.stop(true));
        if let Err(error) = self.heartbeat.await {
            tracing::warn!(error = %error, "the heartbeat loop failed");
        }
        served
    }
}
