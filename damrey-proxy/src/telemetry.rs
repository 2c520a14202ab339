//! Logging: a `tracing` subscriber (RUST_LOG over a default of `info`) and request logs.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `info`; text or JSON lines.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is installed already.
pub fn init(format: LogFormat) -> Result<(), TryInitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = (format == LogFormat::Text).then(fmt::layer);
    let json = (format == LogFormat::Json).then(|| fmt::layer().json());
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
}

/// Middleware: one log event per request with its method, path, status and duration.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let result = next.call(req).await;
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(method, path, status, elapsed_ms, "request");
    result
}
