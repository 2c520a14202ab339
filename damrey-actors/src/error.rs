//! The error types of `damrey-actors`, one per failure domain.

pub use damrey_wire::message::MessageError;
pub use damrey_wire::spec::SpecError;

/// A worker that could not start or could not reach its routing.
///
/// The `reason`s are text, not sources: a worker binary returns this error through
/// `anyhow` (`Send + Sync`), and awc's `WsClientError` and `ProtocolError`, which most
/// of them come from, are neither.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The mesh has no configuration for this worker name.
    #[error("no worker named {0:?} is configured")]
    UnknownWorker(String),
    /// A worker configuration is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The worker is not attached to a mesh or agent, so it cannot send.
    #[error("worker {0:?} is not attached to a mesh or agent")]
    Detached(String),
    /// The agent answered and refused the worker (its name is not configured, the token
    /// is wrong), or broke off the attach.
    #[error("agent {agent} refused the worker: {reason}")]
    Refused {
        /// The agent's `host:port`.
        agent: String,
        /// Why.
        reason: String,
    },
    /// Nothing answered at the agent's address.
    #[error("no agent answers at {agent} ({reason}); is the agent running there?")]
    Unreachable {
        /// The agent's `host:port`.
        agent: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The worker's TLS settings (its CA file) cannot be used.
    #[error("the worker's TLS settings cannot be used: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The worker was started attached to nothing: it could neither receive steps nor
    /// send its own requests.
    #[error(
        "worker {0:?} is attached to nothing: attach it to an agent with `.agent(\"host:port\")`, \
         to an in-process mesh with `.attach(&router)`, or call `.detached()` to call it \
         directly (tests)"
    )]
    Unattached(String),
    /// The agent kept answering that it has no configs yet (its proxy is unreachable and
    /// it has no cache), for as long as a starting worker waits.
    #[error("agent {agent} still had no worker configs after {waited:?}; is its proxy reachable?")]
    NotReady {
        /// The agent's `host:port`.
        agent: String,
        /// How long the worker waited.
        waited: std::time::Duration,
    },
    /// The message would not fit in one frame of the worker's link.
    #[error("the message is {bytes} bytes on the wire, over the {limit}-byte frame limit")]
    TooLarge {
        /// Its size on the wire.
        bytes: usize,
        /// The largest frame the link takes.
        limit: usize,
    },
    /// No actix system runs on this thread, so the worker has nowhere to live.
    #[error("a worker must be started inside an actix system")]
    NoSystem,
}

/// A hand-off to another agent (or a reply to one) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The agent certainly did not take the frame: it could not be reached, or the
    /// link closed before the frame was written.
    #[error("agent {agent} could not be reached: {reason}")]
    Unreachable {
        /// The agent's `host:port`.
        agent: String,
        /// Why.
        reason: String,
    },
    /// The frame would not fit in one frame of the link: no resend can help.
    #[error(
        "the message for agent {agent} is {bytes} bytes on the wire, over the {limit}-byte frame limit"
    )]
    TooLarge {
        /// The agent's `host:port`.
        agent: String,
        /// Its size on the wire.
        bytes: usize,
        /// The largest frame the link takes.
        limit: usize,
    },
    /// The agent restarted since the frame was written to it: its earlier run may have
    /// taken it, and the new one would not know, so it is not sent again.
    #[error("agent {agent} restarted while it may have held the line")]
    Restarted {
        /// The agent's `host:port`.
        agent: String,
    },
    /// The frame was written but not acknowledged: the agent may have taken it (it is
    /// frozen, slow, or the link broke after the write), so only a resend to the same
    /// agent is safe — its duplicate suppression keeps the frame once.
    #[error("agent {agent} did not acknowledge: {reason}")]
    Unacknowledged {
        /// The agent's `host:port`.
        agent: String,
        /// Why.
        reason: String,
    },
}

impl RemoteError {
    /// Whether the agent may have taken the frame.
    pub fn maybe_taken(&self) -> bool {
        matches!(
            self,
            RemoteError::Unacknowledged { .. } | RemoteError::Restarted { .. }
        )
    }

    /// Whether no resend can help (the frame is too large, or the agent that may have
    /// it restarted).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RemoteError::TooLarge { .. } | RemoteError::Restarted { .. }
        )
    }
}
