//! Waiting for the signals that stop a process (SIGINT, and Docker's SIGTERM), for the
//! binaries that run workers (they stop their workers after it) and for the services.

/// Resolves on SIGINT or SIGTERM.
///
/// # Panics
/// When no SIGTERM handler can be installed (not on Unix, or no runtime).
pub async fn shutdown_signal() {
    let mut terminate =
        actix_rt::signal::unix::signal(actix_rt::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = actix_rt::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
