//! What can go wrong starting or using containers.

use std::time::Duration;

/// A failure of this crate, saying what it was doing and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The docker command could not be run at all.
    #[error("could not run `docker {args}`: {source}")]
    DockerMissing {
        /// The arguments given to docker.
        args: String,
        /// Why it could not run.
        #[source]
        source: std::io::Error,
    },
    /// A docker command failed.
    #[error("`docker {args}` failed: {stderr}")]
    Docker {
        /// The arguments given to docker.
        args: String,
        /// What docker printed on stderr.
        stderr: String,
    },
    /// An image this mesh needs is not on this machine.
    #[error("image {image} is not on this machine: {hint}")]
    ImageMissing {
        /// The image's name.
        image: String,
        /// How to make it.
        hint: &'static str,
    },
    /// A container did not become ready in time.
    #[error("{what} was not ready after {waited:?}: {last}; its last log lines:\n{logs}")]
    NotReady {
        /// Which container.
        what: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last answer or error seen.
        last: String,
        /// The tail of its logs.
        logs: String,
    },
    /// The proxy refused a worker config.
    #[error("the proxy answered {status} to the config of {worker}: {body}")]
    Register {
        /// The worker whose config was refused.
        worker: String,
        /// The HTTP status.
        status: u16,
        /// The proxy's answer.
        body: String,
    },
    /// An HTTP request to the mesh failed.
    #[error("{what}: {reason}")]
    Http {
        /// Which request.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// A blocking docker step could not be run on the blocking pool.
    #[error("a docker step panicked or was cancelled: {0}")]
    Join(String),
}
