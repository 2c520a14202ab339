//! The worker builder and handle: [`Config`], [`Worker`] (where a worker attaches: an
//! agent, an in-process router, or nothing on purpose) and the started worker's
//! [`WorkerHandle`] (its own requests and pushes, direct calls, `stop`).
//!
//! Each started worker is hosted by the runtime (`host`) and reached through an
//! [`Instance`], which the router (or the link to the agent) delivers steps to.

use std::sync::Arc;
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::{Actor, Context, Handler};
use damrey_service::credential::Secret;

use crate::deadline::deadline_after;
use crate::envelope::MAX_HOPS;
use crate::error::WorkerError;
use crate::fault::{Fault, Terminal};
use crate::host::Host;
use crate::instance::{Instance, Lost};
use crate::link::{AgentAddress, AgentLink};
use crate::message::Message;
use crate::router::Router;
use crate::spec::Mpu;

/// How a worker runs, as the seed writes it: `Config { retries, name, timeout }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Attempts to push a message onward before giving up.
    pub retries: u32,
    /// The worker's name; it must match a configured worker to be routed to.
    pub name: String,
    /// The longest one message may be processed; a longer step ends the line with `TIMEOUT`.
    pub timeout: Duration,
}

impl Config {
    /// A config named `name` with the defaults: 3 retries and a 5 s step timeout.
    pub fn named(name: impl Into<String>) -> Self {
        Config {
            name: name.into(),
            ..Config::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retries: 3,
            name: String::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Builds and starts a worker: `Worker::new(config).attach(&router).start(|| Add).await?`.
///
/// ```
/// use std::time::Duration;
/// use damrey_actors::prelude::*;
///
/// struct Add;
/// impl Actor for Add { type Context = Context<Self>; }
/// impl Handler<Message> for Add {
///     type Result = Message;
///     fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
///         let sum: i64 = msg.args.iter().filter_map(|a| a.parse::<i64>().ok()).sum();
///         Message::response(msg.kind, [sum.to_string()])
///     }
/// }
///
/// # actix::System::new().block_on(async {
/// let add = Worker::new(Config::named("add")).detached().start(|| Add).await.unwrap();
/// let reply = add.call(Message::request("sum", ["3", "4"]), Duration::from_secs(1)).await;
/// assert_eq!(reply, Message::response("sum", ["7"]));
/// add.stop().await;
/// # });
/// ```
pub struct Worker {
    config: Config,
    attachment: Attachment,
    token: Option<Secret>,
    tls: Option<Arc<rustls::ClientConfig>>,
    mpu: Option<Mpu>,
}

/// Where a worker's messages come from and its own requests go.
#[derive(Clone)]
enum Attachment {
    /// None chosen yet: starting fails.
    Unattached,
    /// Chosen: called directly only.
    Detached,
    Router(Router),
    Agent(String),
}

impl Worker {
    /// A worker with this config, not yet attached anywhere.
    pub fn new(config: Config) -> Self {
        Worker {
            config,
            attachment: Attachment::Unattached,
            token: None,
            tls: None,
            mpu: None,
        }
    }

    /// Attaches the worker to nothing, on purpose: it is only called directly
    /// ([`WorkerHandle::call`]), as in a unit test, and its own requests answer `ERROR`.
    pub fn detached(mut self) -> Self {
        self.attachment = Attachment::Detached;
        self
    }

    /// Attaches the worker to an in-process router (a mesh in one process); its `mpu`
    /// then comes from the router's config for this worker's name.
    pub fn attach(mut self, router: &Router) -> Self {
        self.attachment = Attachment::Router(router.clone());
        self
    }

    /// Attaches the worker to the agent at `host:port` over one persistent WebSocket;
    /// its `mpu` then comes from the agent's config for this worker's name. A lost
    /// connection is re-established with backoff until the worker stops.
    pub fn agent(mut self, agent: impl Into<String>) -> Self {
        self.attachment = Attachment::Agent(agent.into());
        self
    }

    /// The bearer token to present to the agent (its `DAMREY_TOKEN`).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = Secret::non_empty(token.map(Secret::from));
        self
    }

    /// Attaches to the agent over TLS (WSS) with `tls` (see [`crate::tls::client_config`]);
    /// plain WS when `None`.
    pub fn tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = tls;
        self
    }

    /// Caps the messages processed at once, overriding the configured `mpu`.
    pub fn mpu(mut self, mpu: u32) -> Self {
        self.mpu = Some(Mpu(mpu));
        self
    }

    /// Starts the actor made by `factory` on the current actix arbiter and, when attached,
    /// adds it to the router's (or the agent's) instances of this worker.
    ///
    /// # Errors
    /// [`WorkerError::Unattached`] when none of `agent`, `attach` or `detached` was
    /// called; [`WorkerError::NoSystem`] outside an actix system; [`WorkerError::UnknownWorker`]
    /// when attached to a router that has no config for `config.name`;
    /// [`WorkerError::Refused`] when the agent refuses the worker;
    /// [`WorkerError::Unreachable`] when nothing answers at the agent's address;
    /// [`WorkerError::NotReady`] when the agent still has no configs after
    /// [`crate::link::READY_WAIT`] (it has not heard from its proxy).
    pub async fn start<A, F>(self, factory: F) -> Result<WorkerHandle, WorkerError>
    where
        A: Actor<Context = Context<A>> + Handler<Message>,
        <A as Handler<Message>>::Result: MessageResponse<A, Message>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let arbiter = actix::Arbiter::try_current().ok_or(WorkerError::NoSystem)?;
        let name = self.config.name.clone();
        let (outbox, configured_mpu, link) = match self.attachment {
            Attachment::Unattached => return Err(WorkerError::Unattached(name)),
            Attachment::Detached => (Outbox::Detached, Mpu::UNLIMITED, None),
            Attachment::Router(router) => {
                let spec = router
                    .spec(&name)
                    .ok_or_else(|| WorkerError::UnknownWorker(name.clone()))?;
                (Outbox::Router(router), spec.mpu, None)
            }
            Attachment::Agent(agent) => {
                let address = AgentAddress {
                    agent,
                    token: self.token,
                    name: name.clone(),
                    tls: self.tls,
                };
                let (link, mpu, starter) = AgentLink::attach(address, self.config.retries).await?;
                (Outbox::Agent(link), Mpu(mpu), Some(starter))
            }
        };
        // An mpu set in code stays; the configured one follows config changes.
        let (mpu, follows_config) = match self.mpu {
            Some(mpu) => (mpu, false),
            None => (configured_mpu, true),
        };
        let instance = Instance::new(Host::start(
            &self.config.name,
            self.config.timeout,
            mpu,
            follows_config,
            arbiter,
            Arc::new(factory),
        ));
        match (&outbox, link) {
            (Outbox::Router(router), _) => router.attach(&name, instance.clone())?,
            (_, Some(starter)) => starter.serve(instance.clone()),
            _ => {}
        }
        Ok(WorkerHandle {
            config: self.config,
            outbox,
            instance,
        })
    }
}

/// Where a started worker's own requests go.
#[derive(Clone)]
enum Outbox {
    Detached,
    Router(Router),
    Agent(Arc<AgentLink>),
}

/// A started worker: its outbox (`request`, `push`), direct calls, counters and `stop`.
#[derive(Clone)]
pub struct WorkerHandle {
    config: Config,
    outbox: Outbox,
    instance: Instance,
}

impl WorkerHandle {
    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends a request from this worker: it goes to the worker of this worker's command
    /// for the message's type, along the line, and the line's one terminal reply comes
    /// back here. Never fails: problems come back as `ERROR`, `TIMEOUT` or `STOP`.
    pub async fn request(&self, message: Message, timeout: Duration) -> Message {
        self.request_terminal(message, timeout).await.message
    }

    /// [`WorkerHandle::request`], with the [`Fault`] behind an `ERROR` the runtime made
    /// (a front door answers it 5xx, a handler's `ERROR` 4xx).
    pub async fn request_terminal(&self, message: Message, timeout: Duration) -> Terminal {
        match &self.outbox {
            Outbox::Router(router) => {
                router
                    .request_from_terminal(&self.config.name, message, timeout)
                    .await
            }
            Outbox::Agent(link) => link.request(message, None, timeout).await,
            Outbox::Detached => self.detached(message),
        }
    }

    /// Puts a request to worker `to` — this worker itself included — as the start of a
    /// line, and waits for its terminal reply, with the [`Fault`] behind an `ERROR` the
    /// runtime made. A front door served by worker W starts W's own line this way, so
    /// W's step runs and is counted as every other (`http request => W => ...`).
    pub async fn request_at(&self, to: &str, message: Message, timeout: Duration) -> Terminal {
        match &self.outbox {
            Outbox::Router(router) => router.request_terminal(to, message, timeout).await,
            Outbox::Agent(link) => link.request(message, Some(to.to_owned()), timeout).await,
            Outbox::Detached => self.detached(message),
        }
    }

    /// The reply of a detached worker to its own request.
    fn detached(&self, message: Message) -> Terminal {
        Terminal::fault(
            message.kind,
            Fault::Unreachable,
            WorkerError::Detached(self.config.name.clone()).to_string(),
        )
    }

    /// Sends a message from this worker along its line without waiting for a reply.
    /// Each step of the line is still bounded by its worker's timeout, and the line by
    /// the hop limit, so the pushed line always ends.
    ///
    /// # Errors
    /// [`WorkerError::Detached`] when the worker is not attached anywhere.
    pub async fn push(&self, message: Message) -> Result<(), WorkerError> {
        let budget = self.config.timeout.saturating_mul(MAX_HOPS);
        match &self.outbox {
            Outbox::Router(router) => {
                let (router, name) = (router.clone(), self.config.name.clone());
                tokio::spawn(async move {
                    let reply = router.request_from(&name, message, budget).await;
                    tracing::debug!(worker = %name, %reply, "pushed line ended");
                });
                Ok(())
            }
            Outbox::Agent(link) => link.push(message, budget),
            Outbox::Detached => Err(WorkerError::Detached(self.config.name.clone())),
        }
    }

    /// Puts a message to this instance alone, bypassing routing, and returns what the
    /// handler made of it (or `ERROR`, `TIMEOUT`, `STOP`). This is how a single worker
    /// is tested.
    pub async fn call(&self, message: Message, timeout: Duration) -> Message {
        self.instance
            .process(message, deadline_after(timeout))
            .await
            .unwrap_or_else(Lost::into_error)
    }

    /// How many times the actor has been restarted after a panic.
    pub fn restarts(&self) -> u64 {
        self.instance.restarts()
    }

    /// Whether the worker is attached to an agent with its connection up.
    pub fn is_connected(&self) -> bool {
        match &self.outbox {
            Outbox::Agent(link) => link.is_connected(),
            Outbox::Router(_) => true,
            Outbox::Detached => false,
        }
    }

    /// Leaves the router or agent first, answers `STOP` to what is queued, lets what is
    /// in process finish (for at most the step timeout), then stops the actor. Attached
    /// to an agent, it then writes every result to the agent and closes the connection
    /// (for at most a second more), so a process may exit as soon as `stop` returns.
    pub async fn stop(&self) {
        match &self.outbox {
            Outbox::Router(router) => router.detach(&self.config.name, &self.instance),
            Outbox::Agent(link) => link.leave(),
            Outbox::Detached => {}
        }
        self.instance.stop().await;
        if let Outbox::Agent(link) = &self.outbox {
            link.close().await;
        }
    }
}
