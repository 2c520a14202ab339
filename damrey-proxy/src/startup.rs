//! `Application`: opens the store, binds the port, serves, and shuts down on SIGINT/SIGTERM.

use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use damrey_service::tls::{self, TlsError};

use crate::alarms::{Evaluator, EvaluatorSettings};
use crate::auth;
use crate::config::Settings;
use crate::feed::{Feed, Topic};
use crate::monitor::Monitor;
use crate::registry::{self, Recorder};
use crate::routes::{self, AppState};
use crate::store::{Store, StoreError, StoreOptions};
use crate::webhook::{RetryPolicy, Webhook};
use damrey_service::telemetry;

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store could not be opened or migrated.
    #[error("opening the store failed")]
    Store(#[from] StoreError),
    /// The TLS settings cannot be used.
    #[error("the TLS settings cannot be used")]
    Tls(#[from] TlsError),
    /// The address could not be bound.
    #[error("binding {address} failed")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// A built proxy: the port is bound, the store is migrated; `run_until_stopped` serves.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    feed: Feed,
    placement: Feed,
    feed_poll: Duration,
    monitor: Monitor,
    evaluator: EvaluatorSettings,
    alarm_webhook: Option<String>,
}

impl Application {
    /// Opens and migrates the store named by `settings`, then binds the port.
    ///
    /// # Errors
    /// [`StartupError`] when the store or the port fails.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let store = Store::connect(&StoreOptions {
            url: settings.store_url(),
            max_connections: settings.max_connections,
            acquire_timeout: settings.acquire_timeout(),
            query_timeout: settings.query_timeout(),
        })
        .await?;
        Self::build_with_store(settings, store).await
    }

    /// Binds the port and serves `store`, which must be migrated.
    ///
    /// # Errors
    /// [`StartupError`] when the store does not answer or the port cannot be bound.
    pub async fn build_with_store(
        settings: Settings,
        store: Store,
    ) -> Result<Application, StartupError> {
        let feed = Feed::new(Topic::Configs, store.version().await?);
        let placement = Feed::new(Topic::Placement, store.placement_version().await?);
        let address = format!("{}:{}", settings.host, settings.port);
        let listener =
            damrey_service::connections::bind(&address).map_err(|source| StartupError::Bind {
                address: address.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: address.clone(),
                source,
            })?
            .port();
        let monitor = Monitor {
            store: store.clone(),
            agent_ttl: settings.agent_ttl(),
            retention: settings.stats_retention(),
        };
        let registry = Recorder::start(
            store.clone(),
            settings.agent_ttl(),
            settings.stats_every(),
            placement.clone(),
        );
        let state = web::Data::new(AppState {
            store: store.clone(),
            registry,
            feed: feed.clone(),
            placement: placement.clone(),
            agent_ttl: settings.agent_ttl(),
            monitor: monitor.clone(),
        });
        let credentials = web::Data::new(settings.credentials());
        if !credentials.is_required() {
            tracing::warn!(
                host = %settings.host,
                "no credentials set: every endpoint is open (set DAMREY_TOKEN or the role tokens)"
            );
        }
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(credentials.clone())
                .wrap(from_fn(auth::require_credential))
                .wrap(from_fn(telemetry::log_requests))
                .configure(routes::configure)
        })
        // Signals are ours: at shutdown, long waits on the change feed answer first.
        .disable_signals()
        .keep_alive(damrey_service::connections::KEEP_ALIVE)
        .shutdown_timeout(10);
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let tls = match settings.tls_identity()? {
            Some(identity) => Some(tls::server_config(&identity, None)?),
            None => None,
        };
        let https = tls.is_some();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(|source| StartupError::Bind { address, source })?
        .run();
        tracing::info!(port, https, backend = ?store.backend(), "damrey-proxy listening");
        Ok(Application {
            port,
            server,
            store,
            feed,
            placement,
            feed_poll: settings.feed_poll(),
            monitor,
            evaluator: settings.evaluator(),
            alarm_webhook: settings.alarm_webhook.clone(),
        })
    }

    /// The port bound (the OS's choice when the settings said `0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store served.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle that stops the server, as a signal would.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT or SIGTERM, then lets requests finish and closes the store.
    /// Meanwhile the alarm evaluator runs, posting to the webhook if one is set.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let pollers = [&self.feed, &self.placement]
            .map(|feed| tokio::spawn(feed.clone().poll(self.store.clone(), self.feed_poll)));
        let webhook = self
            .alarm_webhook
            .map(|url| Webhook::start(url, RetryPolicy::default()));
        let sweep = tokio::spawn(registry::sweep(
            self.store.clone(),
            self.monitor.agent_ttl,
            self.placement.clone(),
        ));
        let evaluator = tokio::spawn(Evaluator::new(self.monitor, self.evaluator, webhook).run());
        let handle = self.server.handle();
        let feeds = [self.feed.clone(), self.placement.clone()];
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            for feed in &feeds {
                feed.close();
            }
            handle.stop(true).await;
        });
        let result = self.server.await;
        for poller in &pollers {
            poller.abort();
        }
        evaluator.abort();
        sweep.abort();
        signals.abort();
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}

/// Resolves at the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
