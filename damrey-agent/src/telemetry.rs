//! Logging: a `tracing` subscriber, `RUST_LOG` over a default of `info`, text or JSON lines.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber.
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
