//! The worker runtime: [`Config`], the [`Worker`] builder, supervision, step timeouts,
//! the mpu cap, draining stop, and the worker's own outbox ([`WorkerHandle`]).
//!
//! Each started worker is hosted by an [`Instance`]: it owns the user's actor, feeds it
//! one [`Message`] per step, and turns what goes wrong into the right terminal tag.
//!
//! Supervision: a handler that panics kills its actor; the host notices (the actor's
//! mailbox closes), answers the message the actor was processing `ERROR`, starts a new
//! actor from the factory on the same arbiter, and hands the messages that were queued
//! behind the panicking one to the new actor — they had not started, so nothing runs twice.
//! A panic inside a handler's own future (`ResponseFuture`) leaves the actor alive: that
//! message alone is answered `ERROR`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix::dev::channel;
use actix::dev::{MessageResponse, Request};
use actix::{Actor, Addr, ArbiterHandle, Context, Handler};
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};

use crate::BoxFuture;
use crate::admission::{Admission, Slot};
use crate::deadline::deadline_after;
use crate::error::WorkerError;
use crate::fault::{Fault, Terminal};
use crate::link::{AgentAddress, AgentLink};
use crate::message::Message;
use crate::outlier::Health;
use crate::routing::{MAX_HOPS, Router};
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
    token: Option<String>,
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
        self.token = token.filter(|token| !token.is_empty());
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
            &self.config,
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
    /// Processes `message`, finishing by `deadline`.
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

/// Makes a fresh actor after a panic.
type Factory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// Hosts one user actor: admission (mpu), step timeouts, panic supervision and drain.
struct Host<A: Actor<Context = Context<A>>> {
    name: String,
    step_timeout: Duration,
    factory: Factory<A>,
    arbiter: ArbiterHandle,
    /// The mpu cap.
    admission: Arc<Admission>,
    /// Whether the cap follows the worker's config (else it was set in code).
    mpu_follows_config: bool,
    /// Queued or in process.
    load: AtomicUsize,
    /// In process (admitted past the limiter).
    busy: AtomicUsize,
    restarts: AtomicU64,
    stopping: AtomicBool,
    idle: Notify,
    state: Mutex<HostState<A>>,
}

struct HostState<A: Actor> {
    /// Bumped at each restart.
    generation: u64,
    /// `None` once stopped.
    addr: Option<Addr<A>>,
    next_seq: u64,
    /// Messages handed to the actor and not yet answered: sequence number → generation.
    /// The actor's mailbox is FIFO, so the oldest one of a dead generation is the one
    /// whose handler panicked.
    outstanding: BTreeMap<u64, u64>,
    /// The message found guilty for the death of a generation: (generation, sequence).
    culprit: Option<(u64, u64)>,
}

/// A message handed to the actor.
struct Dispatched<A>
where
    A: Actor<Context = Context<A>> + Handler<Message>,
{
    seq: u64,
    generation: u64,
    /// Boxed because a step that times out hands it to a task that waits for the actor.
    request: Pin<Box<Request<A, Message>>>,
    /// A copy kept when other messages were ahead in the mailbox: if the actor dies
    /// before reaching this one, it goes to the restarted actor.
    retry: Option<Message>,
}

/// What a closed mailbox meant for one message.
enum Verdict {
    /// The actor died processing this message.
    Culprit,
    /// The actor died before reaching this message: hand it to the new actor.
    Retry,
    /// The actor lives: the handler's own future panicked.
    FuturePanicked,
    /// The worker is stopping.
    Stopped,
}

impl<A> Host<A>
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
{
    fn start(
        config: &Config,
        mpu: Mpu,
        mpu_follows_config: bool,
        arbiter: ArbiterHandle,
        factory: Factory<A>,
    ) -> Arc<Self> {
        let addr = spawn_actor(&arbiter, factory.clone());
        Arc::new(Host {
            name: config.name.clone(),
            step_timeout: config.timeout,
            factory,
            arbiter,
            admission: Admission::new(mpu),
            mpu_follows_config,
            load: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            idle: Notify::new(),
            state: Mutex::new(HostState {
                generation: 0,
                addr: Some(addr),
                next_seq: 0,
                outstanding: BTreeMap::new(),
                culprit: None,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, HostState<A>> {
        // Nothing panics while the lock is held, but a poisoned lock still holds
        // consistent data, so keep going rather than cascade the panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One step: the handler's result, `ERROR`, `TIMEOUT` or `STOP` — or [`Lost`] when
    /// the instance is stopping and the step never started, so that it may run elsewhere.
    async fn run_step(
        self: Arc<Self>,
        message: Message,
        deadline: Instant,
    ) -> Result<Message, Lost> {
        let _load = Counted::new(&self.load);
        let slot = match timeout_at(deadline, self.admission.admit()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(Lost::stopped(message)),
            Err(_elapsed) => return Ok(Message::timeout()),
        };
        if self.stopping.load(Ordering::Acquire) {
            return Err(Lost::stopped(message));
        }
        let admitted = Admitted::new(self.clone(), slot);
        let step_deadline = deadline.min(deadline_after(self.step_timeout));
        let kind = message.kind.clone();
        let mut next = message;
        loop {
            let Some(mut dispatched) = self.dispatch(next) else {
                return Ok(Message::stop());
            };
            let answer = Answered {
                host: self.clone(),
                seq: dispatched.seq,
            };
            match timeout_at(step_deadline, &mut dispatched.request).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(_closed)) => {
                    match self.after_closed(dispatched.generation, dispatched.seq) {
                        Verdict::Culprit => {
                            return Ok(panicked(kind, &self.name, " and was restarted"));
                        }
                        Verdict::FuturePanicked => return Ok(panicked(kind, &self.name, "")),
                        Verdict::Stopped => return Ok(Message::stop()),
                        Verdict::Retry => match dispatched.retry {
                            Some(message) => next = message,
                            None => {
                                return Ok(Message::error(
                                    kind,
                                    format!(
                                        "worker {} restarted before processing this message",
                                        self.name
                                    ),
                                ));
                            }
                        },
                    }
                }
                Err(_elapsed) => {
                    // The actor is still at it: keep its slot taken until it really ends,
                    // so mpu keeps counting the work the actor is doing.
                    tokio::spawn(async move {
                        let _ = dispatched.request.await;
                        drop(answer);
                        drop(admitted);
                    });
                    return Ok(Message::timeout());
                }
            }
        }
    }

    fn dispatch(&self, message: Message) -> Option<Dispatched<A>> {
        let mut state = self.state();
        let generation = state.generation;
        let seq = state.next_seq;
        let retry = (!state.outstanding.is_empty()).then(|| message.clone());
        let request = Box::pin(state.addr.as_ref()?.send(message));
        state.next_seq += 1;
        state.outstanding.insert(seq, generation);
        Some(Dispatched {
            seq,
            generation,
            request,
            retry,
        })
    }

    fn after_closed(&self, generation: u64, seq: u64) -> Verdict {
        if self.stopping.load(Ordering::Acquire) {
            return Verdict::Stopped;
        }
        let mut state = self.state();
        let alive =
            state.generation == generation && state.addr.as_ref().is_some_and(Addr::connected);
        if alive {
            return Verdict::FuturePanicked;
        }
        if state.culprit.is_none_or(|(dead, _)| dead != generation) {
            state.culprit = state
                .outstanding
                .iter()
                .find(|&(_, &g)| g == generation)
                .map(|(&oldest, _)| (generation, oldest));
        }
        if state.generation == generation {
            state.generation += 1;
            state.addr = Some(spawn_actor(&self.arbiter, self.factory.clone()));
            self.restarts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(worker = %self.name, generation, "worker panicked; restarted from its factory");
        }
        if state.culprit == Some((generation, seq)) {
            Verdict::Culprit
        } else {
            Verdict::Retry
        }
    }

    async fn drain(self: Arc<Self>) {
        self.stopping.store(true, Ordering::Release);
        self.admission.close();
        let deadline = deadline_after(self.step_timeout);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.busy.load(Ordering::Acquire) == 0 {
                break;
            }
            if timeout_at(deadline, idle).await.is_err() {
                tracing::warn!(worker = %self.name, "stop: in-process messages did not finish within the step timeout");
                break;
            }
        }
        // Dropping the last address stops the actor once its mailbox is empty.
        self.state().addr = None;
    }
}

impl<A> Endpoint for Host<A>
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
{
    fn process(
        self: Arc<Self>,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, Lost>> {
        Box::pin(self.run_step(message, deadline))
    }

    fn stop(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.drain())
    }

    fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn set_mpu(&self, mpu: Mpu) {
        if self.mpu_follows_config {
            self.admission.set_limit(mpu);
        }
    }
}

/// The `ERROR` the runtime answers for a step whose handler panicked.
fn panicked(kind: String, worker: &str, then: &str) -> Message {
    Message::error(
        kind,
        format!("worker {worker} {PANICKED} processing this message{then}"),
    )
}

/// The words that mark a runtime's panic `ERROR` (see [`is_panic_error`]).
const PANICKED: &str = "panicked";

/// Whether `reply` is the `ERROR` the runtime answers when worker `worker`'s handler
/// panicked — the instance's fault, unlike an `ERROR` the handler returned about the
/// request. (A handler could return the same words; the outlier rules only count it.)
pub(crate) fn is_panic_error(reply: &Message, worker: &str) -> bool {
    reply.tag == crate::message::Tag::Error
        && reply.args.first().is_some_and(|reason| {
            reason
                .strip_prefix("worker ")
                .and_then(|rest| rest.strip_prefix(worker))
                .and_then(|rest| rest.strip_prefix(' '))
                .is_some_and(|rest| rest.starts_with(PANICKED))
        })
}

/// Starts an actor from `factory` on `arbiter` with a mailbox that never pushes back:
/// the host's limiter does admission, and an unbounded mailbox keeps the order of
/// `send` calls the order of processing.
fn spawn_actor<A>(arbiter: &ArbiterHandle, factory: Factory<A>) -> Addr<A>
where
    A: Actor<Context = Context<A>>,
{
    let (tx, rx) = channel::channel(usize::MAX >> 3);
    arbiter.spawn_fn(move || {
        let ctx = Context::with_receiver(rx);
        actix_rt::spawn(ctx.into_future(factory()));
    });
    Addr::new(tx)
}

/// Counts one unit in an atomic for as long as it lives.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A message past the admission: holds its mpu slot and counts as busy.
struct Admitted<A: Actor<Context = Context<A>>> {
    host: Arc<Host<A>>,
    _slot: Slot,
}

impl<A: Actor<Context = Context<A>>> Admitted<A> {
    fn new(host: Arc<Host<A>>, slot: Slot) -> Self {
        host.busy.fetch_add(1, Ordering::AcqRel);
        Admitted { host, _slot: slot }
    }
}

impl<A: Actor<Context = Context<A>>> Drop for Admitted<A> {
    fn drop(&mut self) {
        if self.host.busy.fetch_sub(1, Ordering::AcqRel) == 1
            && self.host.stopping.load(Ordering::Acquire)
        {
            self.host.idle.notify_waiters();
        }
    }
}

/// Removes a dispatched message from the outstanding table once it is answered.
struct Answered<A: Actor<Context = Context<A>>> {
    host: Arc<Host<A>>,
    seq: u64,
}

impl<A: Actor<Context = Context<A>>> Drop for Answered<A> {
    fn drop(&mut self) {
        let mut state = self.host.state.lock().unwrap_or_else(|p| p.into_inner());
        state.outstanding.remove(&self.seq);
    }
}
