//! An instance as the router sees it: an [`Endpoint`] that turns a message into the
//! step's result, wrapped in an [`Instance`] with its health; [`Lost`] when a step did
//! not complete there; and whether a reply is the runtime's panic `ERROR` (its words
//! are declared in `damrey-wire`), which the router counts as the instance's failure
//! (`is_panic_error`).
//!
//! It knows nothing of the runtime: the router and a worker's link deliver steps to
//! instances; the host (an in-process worker) and the agent (a worker process attached
//! over the network) implement [`Endpoint`].

use std::sync::Arc;

use tokio::time::Instant;

use crate::BoxFuture;
use crate::fault::panicked_worker;
use crate::message::Message;
use crate::outlier::Health;
use crate::spec::Mpu;

/// One running instance of a worker, as the router sees it: something that turns a
/// message into the step's result. In-process workers are hosted by the runtime; an
/// agent wraps a worker process attached over the network in its own [`Endpoint`].
#[derive(Clone)]
pub struct Instance(Arc<dyn Endpoint>, Arc<Health>);

impl Instance {
    /// Wraps an endpoint so a router can deliver to it.
    pub fn new(endpoint: Arc<dyn Endpoint>) -> Self {
        Instance(endpoint, Arc::default())
    }

    /// The router's view of its health: ejection and recent step time.
    pub fn health(&self) -> &Arc<Health> {
        &self.1
    }

    /// Processes one step: the handler's result, or `ERROR`/`TIMEOUT`/`STOP`; or
    /// [`Lost`] when the instance went away before answering.
    pub fn process(
        &self,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, Lost>> {
        self.0.clone().process(message, deadline)
    }

    /// Messages queued or in process here; the router picks the least loaded instance.
    pub fn load(&self) -> usize {
        self.0.load()
    }

    /// Restarts after panics.
    pub fn restarts(&self) -> u64 {
        self.0.restarts()
    }

    /// Applies a changed `mpu` from the worker's config.
    pub fn set_mpu(&self, mpu: Mpu) {
        self.0.set_mpu(mpu)
    }

    /// Whether two handles are the same instance.
    pub fn same(&self, other: &Instance) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Stops taking messages: queued ones get `STOP`, those in process finish.
    pub async fn stop(&self) {
        self.0.clone().stop().await
    }
}

/// The step did not complete on this instance, and the message comes back so that it
/// can run on another one: the instance went away (its process or connection died)
/// before answering, or it was stopping and never started the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The step's message, as it was delivered.
    pub message: Message,
    /// The instance was stopping and did not start the step (rather than vanished).
    pub stopped: bool,
}

impl Lost {
    /// The instance went away before answering.
    pub fn gone(message: Message) -> Self {
        Lost {
            message,
            stopped: false,
        }
    }

    /// The instance was stopping and did not start the step.
    pub fn stopped(message: Message) -> Self {
        Lost {
            message,
            stopped: true,
        }
    }

    /// The terminal reply when no other instance can take the step: `STOP` for a
    /// stopping instance (DESIGN §5.5), else an `ERROR` that says the instance was lost.
    pub fn into_error(self) -> Message {
        if self.stopped {
            return Message::stop();
        }
        Message::error(
            self.message.kind,
            "the worker instance was lost before it answered",
        )
    }
}

/// What runs one worker step. Implementations must answer every call exactly once,
/// by the deadline: the handler's result, `ERROR`, `TIMEOUT` or `STOP` — or [`Lost`]
/// when the instance disappeared and the step may run elsewhere.
pub trait Endpoint: Send + Sync + 'static {
    /// Processes `message`, finishing by `deadline`. An implementation may start the
    /// step when called (the agent's worker session sends it then): await the future.
    fn process(
        self: Arc<Self>,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, Lost>>;
    /// Answers `STOP` to what is queued and lets what is in process finish.
    fn stop(self: Arc<Self>) -> BoxFuture<'static, ()>;
    /// Messages queued or in process.
    fn load(&self) -> usize;
    /// Restarts after panics.
    fn restarts(&self) -> u64 {
        0
    }
    /// The worker's configured `mpu` changed: cap the steps processed at once anew.
    fn set_mpu(&self, mpu: Mpu);
}

/// Whether `reply` is the `ERROR` the runtime answers when worker `worker`'s handler
/// panicked — the instance's fault, unlike an `ERROR` the handler returned about the
/// request; the outlier rules count it, and the line ends with [`Fault::Panic`].
pub(crate) fn is_panic_error(reply: &Message, worker: &str) -> bool {
    panicked_worker(reply) == Some(worker)
}
