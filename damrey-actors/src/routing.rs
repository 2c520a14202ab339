//! The routing core every agent uses: the rule of DESIGN §4 (accepted types, next worker,
//! end of line, terminal tags, hop limit), deadlines carried per hop, the choice among a
//! worker's instances, and the hand-off of a line to another agent through [`Remote`].
//!
//! A line is driven by a loop that owns the message: deliver it to an instance of the
//! next worker, look the result up in that worker's commands, and go on until the line
//! ends. When the next worker lives on another agent, the [`Envelope`] is handed to it
//! and that agent carries on; whoever ends the line sends the terminal reply straight
//! to the origin, whose router resolves the waiting request ([`Router::complete`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;
use uuid::Uuid;

use crate::BoxFuture;
use crate::backoff::Backoff;
use crate::deadline::{deadline_after, millis_left};
use crate::error::{RemoteError, SpecError, WorkerError};
use crate::fault::{Fault, Terminal};
use crate::id::fresh_id;
use crate::message::{Message, Tag};
use crate::outlier::{self, Choice, Outcome, Overload, Standing};
use crate::route_counters::{Rejection, RouteCounters, RouteCounts};
use crate::spec::{WorkerSpec, validate_name};
use crate::worker::{Instance, is_panic_error};

/// The most worker steps one line may take; a longer line ends with `ERROR`.
pub const MAX_HOPS: u32 = 64;

/// Extra attempts at a step whose instance was lost, unless set otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

/// A line in transit between agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Identifies the request end to end.
    pub id: Uuid,
    /// Which hand-off of the line this is (1 for the first): a line may pass the same
    /// agent several times, so receivers drop an `(id, leg)` they have seen — a resend
    /// of one hand-off — and take every new leg.
    pub leg: u32,
    /// The worker the message goes to.
    pub to: String,
    /// The agent (`host:port`) that waits for the terminal reply.
    pub origin: String,
    /// Time left before the request's deadline, in milliseconds.
    pub remaining_ms: u64,
    /// Worker steps taken so far.
    pub hops: u32,
    /// The message, as the plain JSON list.
    pub message: Message,
}

/// How a router reaches other agents: one attempt per call. The agent implements it
/// over its persistent connections and suppresses duplicates by `(id, leg)` on the
/// receiving side; the router decides when to resend, to whom, and how long to wait.
pub trait Remote: Send + Sync + 'static {
    /// Hands `envelope` to the agent at `agent`, which continues the line there.
    /// Resolves once that agent has acknowledged it, or with why not
    /// ([`RemoteError::maybe_taken`] tells whether it may have arrived anyway).
    fn forward(
        &self,
        agent: &str,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), RemoteError>>;

    /// Sends the terminal `reply` of request `id` (with its [`Fault`] when the runtime
    /// made it) to its `origin` agent, once.
    fn reply(
        &self,
        origin: &str,
        id: Uuid,
        reply: Terminal,
    ) -> BoxFuture<'static, Result<(), RemoteError>>;
}

/// The routing table and the line driver. Cheap to clone; clones share everything.
///
/// In one process it is a whole mesh: start workers attached to it and put requests to
/// any of them.
///
/// ```
/// use std::time::Duration;
/// use damrey_actors::prelude::*;
///
/// struct Echo;
/// impl Actor for Echo { type Context = Context<Self>; }
/// impl Handler<Message> for Echo {
///     type Result = Message;
///     fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
///         Message::response(msg.kind, msg.args)
///     }
/// }
///
/// # actix::System::new().block_on(async {
/// let router = Router::new([WorkerSpec::new("echo").command("say", "")]).unwrap();
/// Worker::new(Config::named("echo")).attach(&router).start(|| Echo).await.unwrap();
/// let reply = router.request("echo", Message::request("say", ["hi"]), Duration::from_secs(1)).await;
/// assert_eq!(reply, Message::response("say", ["hi"]));
/// # });
/// ```
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    /// This agent's address; empty in a single-process mesh.
    me: String,
    remote: Option<Arc<dyn Remote>>,
    table: RwLock<Arc<Table>>,
    /// Requests that started here and were handed to another agent.
    pending: Mutex<HashMap<Uuid, oneshot::Sender<Terminal>>>,
    /// Rotates the starting point among equally loaded instances.
    turn: AtomicUsize,
    /// Extra attempts at a step whose instance was lost.
    retries: AtomicU32,
    /// Agents that could not be reached lately, and until when other holders of a
    /// worker are preferred to them.
    suspects: Mutex<HashMap<String, Instant>>,
    /// Whether configs were ever set (from the proxy or a cache): until then the router
    /// knows nothing, and must not answer as if a worker were not configured.
    loaded: AtomicBool,
    /// Whether the configs are the proxy's (not only a cache that may be stale): until
    /// then a worker or type the configs lack may have been added meanwhile.
    confirmed: AtomicBool,
    /// Lines being driven here (requests started here, and lines handed over).
    active: AtomicUsize,
    /// Told when `active` drops to zero.
    idle: Notify,
    /// Set by [`Router::close`]: every line still driven here ends with `STOP`.
    closed: watch::Sender<bool>,
    /// Bumped by every change of the table, so that lines waiting for an instance or
    /// for configs look again at once.
    changes: watch::Sender<u64>,
    /// Steps refused because no worker of their name is configured (not counted by
    /// name: any name can be asked for).
    not_configured: AtomicU64,
}

#[derive(Clone, Default)]
struct Table {
    routes: HashMap<String, Route>,
    /// When configs were first set.
    loaded_at: Option<Instant>,
}

#[derive(Clone, Default)]
struct Route {
    spec: Option<Arc<WorkerSpec>>,
    local: Vec<Instance>,
    /// Agents known to hold instances of this worker.
    remote: Vec<String>,
    /// When the worker last went from some instances (here or elsewhere) to none.
    emptied_at: Option<Instant>,
    /// Agents that stopped being listed as holders lately, and when: an agent that is
    /// draining (it left the proxy's list first) still runs what is handed to it, and a
    /// line already under way may need its instances to finish.
    departed: Vec<(String, Instant)>,
    /// Its routing events (shared by every copy of the table).
    counters: Arc<RouteCounters>,
}

impl Route {
    fn has_instances(&self) -> bool {
        !self.local.is_empty() || !self.remote.is_empty()
    }
}

/// How a hand-off to another agent went.
enum HandOff {
    /// Taken: the reply (at the origin), or `None` when another agent answers the origin.
    Done(Option<Terminal>),
    /// The agent certainly did not take the line, and another agent holds the worker; why.
    Unreachable(String),
}

/// Why an envelope was not acknowledged.
enum NotSent {
    /// The agent certainly did not take it, and another agent holds the worker; why.
    GoElsewhere(String),
    /// No attempt fits before the deadline any more.
    GaveUp {
        /// Whether the agent may have taken it all the same.
        maybe_taken: bool,
        /// The last attempt's failure.
        error: RemoteError,
    },
}

/// Why a step cannot be routed.
enum NoRoute {
    /// The worker is unknown (`None`) or does not take the type: a final `ERROR`.
    Invalid(Option<Rejection>, String),
    /// No configs were loaded yet: nothing is known, so the line waits for them.
    NotLoaded,
    /// The worker has no instance now; one may attach soon.
    NoInstance {
        /// When the worker lost its last instance, if it had any.
        emptied_at: Option<Instant>,
    },
    /// Every instance that could take the step has a full queue, or one that would
    /// not start it before its deadline: a final `ERROR` at once, saying so.
    Overloaded(String),
}

/// What a worker's instances on this agent offer a step.
enum LocalPick {
    /// This one; `true` when it is the probe of an instance on probation.
    Chosen(Instance, bool),
    /// Every instance is out of the rotation (ejected for failing).
    AllEjected,
    /// None would start the step in time; why.
    Overloaded(String),
    /// No instance here.
    Empty,
}

/// How long an agent that could not be reached is passed over while others hold the worker.
const SUSPECT_FOR: Duration = Duration::from_secs(1);

/// How long before the line's deadline a step's `TIMEOUT` must arrive to be the
/// instance's own step timeout, a failure that counts towards ejection.
const STEP_TIMEOUT_MARGIN: Duration = Duration::from_millis(20);

/// How long a line handed over by another agent waits for an instance to (re)attach:
/// the sender chose this agent because instances were attached here.
const ATTACH_GRACE: Duration = Duration::from_secs(2);

/// How long after a worker lost its last instance a line waits, within its deadline,
/// for an instance to (re)appear rather than answer `no live instance` at once: a
/// worker process or an agent restarting, or a link healing, takes about this long.
const INSTANCE_GRACE: Duration = Duration::from_secs(10);

/// How long after an agent's router first got configs a line waits for an instance:
/// the agent learns where other agents' instances are from the proxy within a heartbeat.
const STARTUP_GRACE: Duration = Duration::from_secs(3);

/// The first pause between two attempts at a hand-off or a reply, and the longest.
const RESEND_FIRST: Duration = Duration::from_millis(25);
const RESEND_CAP: Duration = Duration::from_millis(500);

/// How long after its deadline a terminal reply is still resent to the origin (the
/// origin's clock may run a little behind this agent's view of the deadline).
const REPLY_SLACK: Duration = Duration::from_secs(1);

/// Where the current step goes.
enum Destination {
    /// An instance here; `true` when the step is its probation probe.
    Local(Instance, bool),
    Remote(String),
}

/// One line being driven.
struct Line {
    /// Came from another agent, which believed the next worker's instances are here.
    handed_over: bool,
    /// When the line arrived here.
    arrived: Instant,
    /// Agents this line could not reach; not tried again while others hold the worker.
    unreachable: Vec<String>,
    /// The line's message id: made here for a line that starts here, the envelope's for
    /// one handed over; logs and hand-offs carry it.
    id: Uuid,
    /// Hand-offs so far (see [`Envelope::leg`]).
    leg: u32,
    to: String,
    /// The agent waiting for the terminal reply; `None` when the request started here
    /// and this very drive waits for it.
    origin: Option<String>,
    hops: u32,
    deadline: Instant,
    message: Message,
}

impl Line {
    fn new(to: &str, message: Message, deadline: Instant) -> Self {
        Line {
            handed_over: false,
            arrived: Instant::now(),
            unreachable: Vec::new(),
            id: fresh_id(),
            leg: 0,
            to: to.to_owned(),
            origin: None,
            hops: 0,
            deadline,
            message,
        }
    }
}

impl Router {
    /// A single-process router with these worker configs.
    ///
    /// # Errors
    /// The first invalid config.
    pub fn new(specs: impl IntoIterator<Item = WorkerSpec>) -> Result<Self, SpecError> {
        Router::with_remote(String::new(), None, specs)
    }

    /// A router for the agent at `me` (`host:port`) that reaches other agents through `remote`.
    ///
    /// # Errors
    /// The first invalid config.
    pub fn with_remote(
        me: impl Into<String>,
        remote: Option<Arc<dyn Remote>>,
        specs: impl IntoIterator<Item = WorkerSpec>,
    ) -> Result<Self, SpecError> {
        let router = Router::unloaded(me, remote);
        router.set_specs(specs)?;
        Ok(router)
    }

    /// A router for the agent at `me` that has no configs yet (it waits for the proxy
    /// or its disk cache): until [`Router::set_specs`] is first called, lines wait for
    /// configs within their deadline rather than call a worker unconfigured.
    pub fn unloaded(me: impl Into<String>, remote: Option<Arc<dyn Remote>>) -> Self {
        Router {
            inner: Arc::new(RouterInner {
                me: me.into(),
                remote,
                table: RwLock::new(Arc::default()),
                pending: Mutex::default(),
                turn: AtomicUsize::new(0),
                retries: AtomicU32::new(DEFAULT_RETRIES),
                suspects: Mutex::default(),
                loaded: AtomicBool::new(false),
                confirmed: AtomicBool::new(false),
                active: AtomicUsize::new(0),
                idle: Notify::new(),
                closed: watch::Sender::new(false),
                changes: watch::Sender::new(0),
                not_configured: AtomicU64::new(0),
            }),
        }
    }

    /// Sets how many more times a step is tried on another instance when its instance
    /// is lost (the agent's `-r`).
    pub fn set_retries(&self, retries: u32) {
        self.inner.retries.store(retries, Ordering::Relaxed);
    }

    fn retries(&self) -> u32 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// Replaces every worker config at once (instances stay attached).
    ///
    /// # Errors
    /// The first invalid config; then nothing changes.
    pub fn set_specs(&self, specs: impl IntoIterator<Item = WorkerSpec>) -> Result<(), SpecError> {
        self.replace_specs(specs, true)
    }

    /// Sets configs kept from an earlier run (an agent's disk cache) until the proxy's
    /// arrive: lines route by them, but a worker or type they lack may have been
    /// configured since, so such a line waits for the proxy's configs (within its
    /// deadline) instead of being told it is not configured.
    ///
    /// # Errors
    /// The first invalid config; then nothing changes.
    pub fn set_cached_specs(
        &self,
        specs: impl IntoIterator<Item = WorkerSpec>,
    ) -> Result<(), SpecError> {
        self.replace_specs(specs, false)
    }

    /// Whether the configs came from the proxy (not only from a cache).
    pub fn is_confirmed(&self) -> bool {
        self.inner.confirmed.load(Ordering::Acquire)
    }

    fn replace_specs(
        &self,
        specs: impl IntoIterator<Item = WorkerSpec>,
        confirmed: bool,
    ) -> Result<(), SpecError> {
        let specs: Vec<WorkerSpec> = specs.into_iter().collect();
        for spec in &specs {
            spec.validate()?;
        }
        let mut mpu_changed = Vec::new();
        self.update(|table| {
            let mut before = HashMap::new();
            for (name, route) in table.routes.iter_mut() {
                if let Some(old) = route.spec.take() {
                    before.insert(name.clone(), old.mpu);
                }
            }
            for spec in specs {
                let name = spec.name.clone();
                let route = table.routes.entry(name).or_default();
                if before
                    .get(&spec.name)
                    .is_some_and(|before| *before != spec.mpu)
                {
                    mpu_changed.extend(
                        route
                            .local
                            .iter()
                            .map(|instance| (instance.clone(), spec.mpu)),
                    );
                }
                route.spec = Some(Arc::new(spec));
            }
            table.loaded_at.get_or_insert_with(Instant::now);
            // Before the change is published, so that a line woken by it sees it.
            self.inner.loaded.store(true, Ordering::Release);
            self.inner.confirmed.store(confirmed, Ordering::Release);
        });
        // Attached instances take a changed mpu at once, not when they next attach.
        for (instance, mpu) in mpu_changed {
            instance.set_mpu(mpu);
        }
        Ok(())
    }

    /// Whether the router has configs (set at least once, possibly to none): an agent
    /// is ready once it has them, from the proxy or from its disk cache.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    /// Lines being driven here now: requests put to this router and lines handed over
    /// by other agents, until each one's terminal reply is sent or it is handed on.
    pub fn active_lines(&self) -> usize {
        self.inner.active.load(Ordering::Acquire)
    }

    /// Every configured worker's routing events, by name.
    pub fn route_counts(&self) -> Vec<(String, RouteCounts)> {
        self.table()
            .routes
            .iter()
            .filter(|(_, route)| route.spec.is_some())
            .map(|(name, route)| (name.clone(), route.counters.counts()))
            .collect()
    }

    /// Every configured worker's instances here that are out of full rotation for
    /// failing (ejected, or on probation after an ejection), and how long the one out
    /// longest has been out.
    pub fn ejected_instances(&self) -> Vec<(String, usize, Duration)> {
        let now = Instant::now();
        self.table()
            .routes
            .iter()
            .filter(|(_, route)| route.spec.is_some())
            .map(|(name, route)| {
                let out: Vec<Duration> = route
                    .local
                    .iter()
                    .filter_map(|instance| instance.health().out_for(now))
                    .collect();
                let longest = out.iter().max().copied().unwrap_or_default();
                (name.clone(), out.len(), longest)
            })
            .collect()
    }

    /// Steps refused because no worker of their name was configured.
    pub fn not_configured(&self) -> u64 {
        self.inner.not_configured.load(Ordering::Relaxed)
    }

    fn count(&self, worker: &str, event: impl FnOnce(&RouteCounters)) {
        if let Some(route) = self.table().routes.get(worker) {
            event(&route.counters);
        }
    }

    fn count_rejection(&self, worker: &str, why: Option<Rejection>) {
        match why {
            Some(why) => self.count(worker, |counters| counters.rejected(why)),
            None => {
                self.inner.not_configured.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A receiver that sees every change of the routing table (configs, local
    /// instances, other agents' instances): `changed().await` wakes on the next one.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Resolves once no line is being driven here.
    pub async fn idle(&self) {
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active_lines() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Ends every line still driven here with `STOP` now, and every later one at once:
    /// a request put here gets `STOP`, a line handed over sends `STOP` to its origin.
    /// An agent calls it when its drain time is over, so that no caller is left
    /// without a terminal reply.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// The config of worker `name`.
    pub fn spec(&self, name: &str) -> Option<Arc<WorkerSpec>> {
        self.table().routes.get(name)?.spec.clone()
    }

    /// Sets the agents known to hold instances of worker `name`.
    pub fn set_remote_instances(&self, name: &str, agents: Vec<String>) {
        self.update(|table| table.routes.entry(name.to_owned()).or_default().remote = agents);
    }

    /// Replaces, for every worker at once, the agents known to hold its instances.
    pub fn set_all_remote_instances(&self, mut agents: HashMap<String, Vec<String>>) {
        self.update(|table| {
            for (name, route) in table.routes.iter_mut() {
                route.remote = agents.remove(name).unwrap_or_default();
            }
            for (name, holders) in agents {
                table.routes.entry(name).or_default().remote = holders;
            }
        });
    }

    /// How many worker configs the router has.
    pub fn configs(&self) -> usize {
        self.table()
            .routes
            .values()
            .filter(|route| route.spec.is_some())
            .count()
    }

    /// Every worker with local instances, and how many.
    pub fn local_counts(&self) -> Vec<(String, usize)> {
        self.table()
            .routes
            .iter()
            .filter(|(_, route)| !route.local.is_empty())
            .map(|(name, route)| (name.clone(), route.local.len()))
            .collect()
    }

    /// This router's agent address (empty in a single-process mesh).
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// Adds a local instance of worker `name`.
    ///
    /// # Errors
    /// [`WorkerError::UnknownWorker`] when no config names it.
    pub fn attach(&self, name: &str, instance: Instance) -> Result<(), WorkerError> {
        validate_name("name", name)?;
        let mut known = false;
        self.update(|table| {
            if let Some(route) = table
                .routes
                .get_mut(name)
                .filter(|route| route.spec.is_some())
            {
                route.local.push(instance);
                known = true;
            }
        });
        if known {
            Ok(())
        } else {
            Err(WorkerError::UnknownWorker(name.to_owned()))
        }
    }

    /// Removes a local instance of worker `name`; messages already given to it finish there.
    pub fn detach(&self, name: &str, instance: &Instance) {
        self.update(|table| {
            if let Some(route) = table.routes.get_mut(name) {
                route.local.retain(|attached| !attached.same(instance));
            }
        });
    }

    /// Puts a request to worker `to` and waits for the line's one terminal reply, or
    /// `TIMEOUT` when `timeout` passes first.
    pub async fn request(&self, to: &str, message: Message, timeout: Duration) -> Message {
        self.request_terminal(to, message, timeout).await.message
    }

    /// [`Router::request`], with the [`Fault`] behind an `ERROR` the runtime made.
    pub async fn request_terminal(
        &self,
        to: &str,
        message: Message,
        timeout: Duration,
    ) -> Terminal {
        let line = Line::new(to, message, deadline_after(timeout));
        self.drive_until(line).await
    }

    /// Sends a message from worker `from` as W's own request: it goes to the worker of
    /// W's command for its type and the terminal reply comes back here.
    pub async fn request_from(&self, from: &str, message: Message, timeout: Duration) -> Message {
        self.request_from_terminal(from, message, timeout)
            .await
            .message
    }

    /// [`Router::request_from`], with the [`Fault`] behind an `ERROR` the runtime made.
    pub async fn request_from_terminal(
        &self,
        from: &str,
        message: Message,
        timeout: Duration,
    ) -> Terminal {
        let next = self
            .spec(from)
            .ok_or_else(|| {
                Terminal::fault(
                    message.kind.clone(),
                    Fault::Config,
                    format!("no worker named {from:?} is configured"),
                )
            })
            .and_then(|spec| next_of(&spec, message));
        match next {
            Ok(Next::Deliver(to, message)) => self.request_terminal(&to, message, timeout).await,
            Ok(Next::End(reply)) => reply.into(),
            Err(reply) => reply,
        }
    }

    /// Continues a line handed over by another agent. When the line ends here, the
    /// terminal reply goes to the envelope's origin.
    pub async fn accept(&self, envelope: Envelope) {
        let origin = envelope.origin.clone();
        let id = envelope.id;
        let deadline = deadline_after(Duration::from_millis(envelope.remaining_ms));
        let line = Line {
            handed_over: true,
            id,
            leg: envelope.leg,
            // Even when the line came back to the agent it started at: the drive that
            // waits for the reply is the one that handed it off first, not this one.
            origin: Some(envelope.origin),
            hops: envelope.hops,
            ..Line::new(&envelope.to, envelope.message, deadline)
        };
        let reply = match self.drive_guarded(line).await {
            Some(reply) => reply,
            // Handed on to another agent, which will answer the origin.
            None => return,
        };
        self.send_reply(&origin, id, reply, deadline + REPLY_SLACK)
            .await;
    }

    /// Resolves request `id` that started here with its terminal reply; a reply for a
    /// request that already ended (deadline passed) is dropped.
    pub fn complete(&self, id: Uuid, reply: Terminal) -> bool {
        let waiter = self.pending().remove(&id);
        waiter.is_some_and(|waiter| waiter.send(reply).is_ok())
    }

    /// Requests that started here and wait on another agent.
    pub fn pending_requests(&self) -> usize {
        self.pending().len()
    }

    async fn drive_until(&self, line: Line) -> Terminal {
        self.drive_guarded(line)
            .await
            .unwrap_or_else(|| Message::timeout().into())
    }

    /// Drives a line, counted as active, until its deadline (`TIMEOUT`) or until the
    /// router closes (`STOP`); `None` when it was handed on to another agent.
    async fn drive_guarded(&self, line: Line) -> Option<Terminal> {
        let _active = ActiveLine::new(&self.inner);
        let deadline = line.deadline;
        let mut closed = self.inner.closed.subscribe();
        tokio::select! {
            biased;
            driven = timeout_at(deadline, self.drive(line)) => match driven {
                Ok(reply) => reply,
                Err(_elapsed) => Some(Message::timeout().into()),
            },
            _ = closed.wait_for(|closed| *closed) => Some(Message::stop().into()),
        }
    }

    /// Drives a line until it ends (`Some(reply)`) or is handed to another agent for
    /// an origin elsewhere (`None`). The origin's router waits for the reply itself.
    async fn drive(&self, mut line: Line) -> Option<Terminal> {
        let mut attempts = 0;
        let mut changes = self.inner.changes.subscribe();
        loop {
            if Instant::now() >= line.deadline {
                return Some(Message::timeout().into());
            }
            if line.hops >= MAX_HOPS {
                return Some(Terminal::fault(
                    line.message.kind,
                    Fault::Config,
                    format!(
                        "the line reached the limit of {MAX_HOPS} hops at worker {}; check the configs for a loop",
                        line.to
                    ),
                ));
            }
            // Seen before looking, so that a change made after the look wakes the wait.
            changes.borrow_and_update();
            let (spec, destination) = match self.choose(&line) {
                Ok(found) => found,
                Err(NoRoute::Invalid(..)) if !self.is_confirmed() => {
                    // Cached configs may predate this worker or type: wait for the
                    // proxy's, within the deadline.
                    let _ = changes.changed().await;
                    continue;
                }
                Err(NoRoute::Invalid(why, reason)) => {
                    self.count_rejection(&line.to, why);
                    return Some(Terminal::fault(line.message.kind, Fault::Config, reason));
                }
                Err(NoRoute::Overloaded(reason)) => {
                    self.count_rejection(&line.to, Some(Rejection::Overloaded));
                    return Some(Terminal::fault(
                        line.message.kind,
                        Fault::Overloaded,
                        reason,
                    ));
                }
                Err(NoRoute::NotLoaded) => {
                    // Until the first configs arrive nothing is known; the deadline
                    // bounds the wait.
                    let _ = changes.changed().await;
                    continue;
                }
                Err(NoRoute::NoInstance { emptied_at }) => {
                    let until = self.instance_wait_until(&line, emptied_at);
                    if Instant::now() >= until {
                        // The lines handed off from here failed for agents that
                        // are gone from the table now: start afresh with them.
                        if !line.unreachable.is_empty() {
                            line.unreachable.clear();
                            continue;
                        }
                        self.count_rejection(&line.to, Some(Rejection::NoInstance));
                        return Some(Terminal::fault(
                            line.message.kind,
                            Fault::NoInstance,
                            format!("worker {} has no live instance", line.to),
                        ));
                    }
                    tokio::select! {
                        _ = changes.changed() => {}
                        () = tokio::time::sleep_until(until) => {}
                    }
                    continue;
                }
            };
            let (instance, probe) = match destination {
                Destination::Local(instance, probe) => (instance, probe),
                Destination::Remote(agent) => match self.hand_off(&agent, &mut line).await {
                    HandOff::Done(reply) => return reply,
                    HandOff::Unreachable(reason) => {
                        // Another agent holds the worker: go there, and let other lines
                        // prefer the others for a while.
                        tracing::debug!(worker = %line.to, agent, reason, "hand-off failed over to another agent");
                        self.suspect(&agent);
                        line.unreachable.push(agent);
                        continue;
                    }
                },
            };
            let span = tracing::debug_span!(
                "step",
                message_id = %line.id,
                worker = %line.to,
                kind = %line.message.kind
            );
            let ahead = instance.load();
            let started = Instant::now();
            let probing = ProbeGuard(probe.then(|| instance.clone()));
            let processed = instance
                .process(line.message, line.deadline)
                .instrument(span.clone())
                .await;
            drop(probing);
            span.in_scope(|| match &processed {
                Ok(reply) => tracing::debug!(reply = %reply.tag, "step done"),
                Err(lost) => tracing::debug!(stopped = lost.stopped, "instance lost"),
            });
            match &processed {
                Ok(reply) => {
                    // A TIMEOUT well before the deadline is the worker's step timeout; one
                    // near it (the worker's clock, and the millisecond the deadline
                    // travels in, may run a little ahead) says as much about the request
                    // as about the instance, and counts as neither.
                    let before_deadline = Instant::now() + STEP_TIMEOUT_MARGIN < line.deadline;
                    let step_timed_out = reply.tag == Tag::Timeout && before_deadline;
                    if reply.tag != Tag::Timeout || before_deadline {
                        instance.health().sample(started.elapsed(), ahead, spec.mpu);
                    }
                    let outcome = if step_timed_out || is_panic_error(reply, &line.to) {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    };
                    if reply.tag != Tag::Timeout || before_deadline {
                        self.record_step(&line.to, &spec, &instance, outcome);
                    }
                }
                Err(lost) if !lost.stopped => {
                    self.record_step(&line.to, &spec, &instance, Outcome::Failure);
                }
                Err(_stopped) => {}
            }
            let result = match processed {
                Ok(result) => result,
                Err(lost) if attempts < self.retries() => {
                    // The instance died before answering, or was stopping and never
                    // started the step: run it elsewhere.
                    attempts += 1;
                    self.count(&line.to, RouteCounters::rerouted);
                    tracing::debug!(worker = %line.to, attempts, stopped = lost.stopped, "instance lost; retrying the step");
                    line.message = lost.message;
                    continue;
                }
                Err(lost) => {
                    // `STOP` for a stopping instance; an `ERROR` for a lost one.
                    let fault = (!lost.stopped).then_some(Fault::Unreachable);
                    return Some(Terminal {
                        message: lost.into_error(),
                        fault,
                    });
                }
            };
            attempts = 0;
            line.hops += 1;
            match next_of(&spec, result) {
                Ok(Next::Deliver(to, message)) => {
                    line.to = to;
                    line.message = message;
                    line.unreachable.clear();
                }
                Ok(Next::End(reply)) => return Some(reply.into()),
                Err(reply) => return Some(reply),
            }
        }
    }

    /// Until when a line waits for an instance of a worker that has none: a while after
    /// the worker lost its last one, after the configs were loaded, or after another
    /// agent handed the line here — never past the line's deadline.
    fn instance_wait_until(&self, line: &Line, emptied_at: Option<Instant>) -> Instant {
        let mut until = line.arrived;
        if line.handed_over {
            until = until.max(line.arrived + ATTACH_GRACE);
        }
        if let Some(emptied_at) = emptied_at {
            until = until.max(emptied_at + INSTANCE_GRACE);
        }
        // A router in one process has no other agents to learn about.
        if let Some(loaded_at) = self
            .table()
            .loaded_at
            .filter(|_| self.inner.remote.is_some())
        {
            until = until.max(loaded_at + STARTUP_GRACE);
        }
        until.min(line.deadline)
    }

    /// Finds worker `to`'s config and the instance or agent for this step.
    ///
    /// Instances here come first: one on probation takes the step as its probe, else the
    /// least loaded in rotation that can start it before the line's deadline. When every
    /// one here is ejected or overloaded, the step goes to another agent holding the
    /// worker — unless the line was handed here by another agent, which would only bounce
    /// it back — else to an ejected instance (the last ones are still used) or `ERROR`.
    fn choose(&self, line: &Line) -> Result<(Arc<WorkerSpec>, Destination), NoRoute> {
        let (to, kind, unreachable) = (&line.to, &line.message.kind, &line.unreachable);
        if !self.is_loaded() {
            return Err(NoRoute::NotLoaded);
        }
        let table = self.table();
        let Some((route, spec)) = table
            .routes
            .get(to)
            .and_then(|route| Some((route, route.spec.clone()?)))
        else {
            return Err(NoRoute::Invalid(
                None,
                format!("no worker named {to:?} is configured"),
            ));
        };
        if spec.find_command(kind).is_none() {
            return Err(NoRoute::Invalid(
                Some(Rejection::UnknownType),
                format!("worker {to} does not accept type {kind:?}"),
            ));
        }
        let me = &self.inner.me;
        let pinned_elsewhere = !spec.agent.is_empty() && spec.agent != *me;
        let destination = if pinned_elsewhere {
            (!unreachable.contains(&spec.agent)).then(|| Destination::Remote(spec.agent.clone()))
        } else {
            let local = self.pick_local(&spec, &route.local, line.deadline, false);
            if let LocalPick::Chosen(instance, probe) = local {
                Some(Destination::Local(instance, probe))
            } else {
                let none_here = matches!(local, LocalPick::Empty);
                let elsewhere = spec.agent.is_empty() && (none_here || !line.handed_over);
                match (
                    elsewhere
                        .then(|| self.pick_remote(route, unreachable, none_here))
                        .flatten(),
                    local,
                ) {
                    (Some(agent), _) => Some(Destination::Remote(agent)),
                    // Every instance here is out of the rotation and no other agent
                    // takes the line: the ejected ones serve what they can, still within
                    // admission (queue bound and deadline).
                    (None, LocalPick::AllEjected) => {
                        match self.pick_local(&spec, &route.local, line.deadline, true) {
                            LocalPick::Chosen(instance, _) => {
                                Some(Destination::Local(instance, false))
                            }
                            LocalPick::Overloaded(reason) => {
                                return Err(NoRoute::Overloaded(reason));
                            }
                            LocalPick::Empty | LocalPick::AllEjected => None,
                        }
                    }
                    (None, LocalPick::Overloaded(reason)) => {
                        return Err(NoRoute::Overloaded(reason));
                    }
                    (None, _) => None,
                }
            }
        };
        match destination {
            Some(destination) => Ok((spec, destination)),
            None => Err(NoRoute::NoInstance {
                emptied_at: route.emptied_at,
            }),
        }
    }

    /// The instance here for a step of worker `spec` due by `deadline` (see
    /// [`Router::choose`]); with `ejected_too`, instances out of the rotation are taken
    /// as serving (the fallback when every one is out).
    fn pick_local(
        &self,
        spec: &WorkerSpec,
        local: &[Instance],
        deadline: Instant,
        ejected_too: bool,
    ) -> LocalPick {
        if local.is_empty() {
            return LocalPick::Empty;
        }
        let now = Instant::now();
        let rules = spec.outlier_rules();
        let admits = |instance: &Instance| {
            outlier::admit(
                instance.load(),
                spec.mpu,
                instance.health().step_time(),
                rules.max_queue,
                now,
                deadline,
            )
        };
        let mut serving = Vec::with_capacity(local.len());
        for instance in local {
            let choice = if ejected_too {
                Choice::Serving
            } else {
                instance.health().choice(now)
            };
            match choice {
                Choice::Serving => serving.push(instance.clone()),
                Choice::Probe if admits(instance).is_ok() && instance.health().claim_probe(now) => {
                    return LocalPick::Chosen(instance.clone(), true);
                }
                Choice::Probe | Choice::Out => {}
            }
        }
        if serving.is_empty() {
            return LocalPick::AllEjected;
        }
        let (fit, unfit): (Vec<Instance>, Vec<Instance>) = serving
            .into_iter()
            .partition(|instance| admits(instance).is_ok());
        if let Some(instance) = self.least_loaded(&fit) {
            return LocalPick::Chosen(instance, false);
        }
        let least = unfit
            .iter()
            .min_by_key(|instance| instance.load())
            .expect("serving instances that do not fit are the unfit ones");
        let reason = match admits(least) {
            Err(Overload::QueueFull { queued }) => format!(
                "worker {} is overloaded: {queued} steps wait at its least loaded instance here, the most its queue holds (outlier.max_queue {})",
                spec.name, rules.max_queue
            ),
            Err(Overload::TooLate { queued, wait }) => format!(
                "worker {} is overloaded: {queued} steps wait at its least loaded instance here, and this one would start in about {} ms, after its deadline",
                spec.name,
                wait.as_millis()
            ),
            Ok(()) => format!("worker {} is overloaded", spec.name),
        };
        LocalPick::Overloaded(reason)
    }

    /// Another agent for a step of a worker held elsewhere: one that is not suspected of
    /// being unreachable, in turn; when no holder is listed and `departed_too` (no
    /// instance here at all), the one that left last.
    fn pick_remote(
        &self,
        route: &Route,
        unreachable: &[String],
        departed_too: bool,
    ) -> Option<String> {
        let me = &self.inner.me;
        let reachable: Vec<&String> = route
            .remote
            .iter()
            .filter(|agent| *agent != me && !unreachable.contains(agent))
            .collect();
        let trusted: Vec<&String> = {
            let suspects = self.suspects();
            let now = Instant::now();
            let trusted = |agent: &&String| suspects.get(*agent).is_none_or(|until| *until <= now);
            reachable.iter().copied().filter(trusted).collect()
        };
        let others = if trusted.is_empty() {
            reachable
        } else {
            trusted
        };
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        if others.is_empty() {
            // No holder is listed: the one that left last may still be draining, and
            // run what a line under way needs (else it refuses, and the line waits).
            if !departed_too {
                return None;
            }
            route
                .departed
                .iter()
                .rev()
                .map(|(agent, _)| agent)
                .find(|agent| *agent != me && !unreachable.contains(agent))
                .cloned()
        } else {
            Some(others[turn % others.len()].clone())
        }
    }

    /// Where `instance` stands among the holders of worker `to`: `None` when it is no
    /// longer attached here (a vanished instance is not ejected: it is gone), else
    /// whether another holder is in rotation — another instance here that is serving, or
    /// another agent not suspected of being unreachable (for a worker not pinned).
    fn others_routable(&self, to: &str, instance: &Instance) -> Option<bool> {
        let table = self.table();
        let route = table.routes.get(to)?;
        if !route.local.iter().any(|other| other.same(instance)) {
            return None;
        }
        let unpinned = route
            .spec
            .as_ref()
            .is_some_and(|spec| spec.agent.is_empty());
        let suspects = self.suspects();
        let now = Instant::now();
        let trusted = |agent: &String| suspects.get(agent).is_none_or(|until| *until <= now);
        Some(
            route.local.iter().any(|other| {
                !other.same(instance) && other.health().standing() == Standing::Serving
            }) || (unpinned
                && route
                    .remote
                    .iter()
                    .any(|agent| *agent != self.inner.me && trusted(agent))),
        )
    }

    /// Takes how a step on `instance` ended into its health, and counts an ejection.
    fn record_step(&self, line_to: &str, spec: &WorkerSpec, instance: &Instance, outcome: Outcome) {
        let rules = spec.outlier_rules();
        // Only a failure can eject, so only a failure looks at the other holders: a
        // success (nearly every step) takes no table or suspects lock here.
        let others = match outcome {
            Outcome::Success => false,
            Outcome::Failure => match self.others_routable(line_to, instance) {
                Some(others) => others,
                None => return,
            },
        };
        if instance
            .health()
            .record(outcome, &rules, others, Instant::now())
        {
            self.count(line_to, RouteCounters::ejected);
            tracing::warn!(worker = %line_to, ejections = instance.health().ejections(), "instance ejected from the rotation for failing");
        }
    }

    /// Whether an instance of worker `to` is attached here, or an agent other than
    /// `agent` (and those this line could not reach) is known to hold one, so that a
    /// hand-off may go there instead.
    fn another_holder(&self, to: &str, agent: &str, unreachable: &[String]) -> bool {
        let table = self.table();
        let Some(route) = table.routes.get(to) else {
            return false;
        };
        let pinned = route
            .spec
            .as_ref()
            .is_some_and(|spec| !spec.agent.is_empty());
        !pinned
            && (!route.local.is_empty()
                || route.remote.iter().any(|other| {
                    other != agent && *other != self.inner.me && !unreachable.contains(other)
                }))
    }

    fn least_loaded(&self, instances: &[Instance]) -> Option<Instance> {
        match instances {
            [] => None,
            [only] => Some(only.clone()),
            _ => {
                let start = self.inner.turn.fetch_add(1, Ordering::Relaxed);
                (0..instances.len())
                    .map(|i| &instances[(start + i) % instances.len()])
                    .min_by_key(|instance| instance.load())
                    .cloned()
            }
        }
    }

    /// Hands the line to `agent`. At the origin, waits for the reply that will come back.
    ///
    /// Resent with backoff until `agent` acknowledges it or the deadline nears. It goes
    /// to another agent holding the worker instead only when `agent` certainly did not
    /// take it (never reached): an agent that may have taken it is only ever resent the
    /// same leg, which it keeps once, so a step never runs twice; and an outage shorter
    /// than the deadline costs the line nothing but time. When no attempt can be made
    /// before the deadline, the line ends with `ERROR` naming the agent that could not
    /// be reached, or with `TIMEOUT` when it may have taken the line.
    async fn hand_off(&self, agent: &str, line: &mut Line) -> HandOff {
        let kind = &line.message.kind;
        let Some(remote) = self.inner.remote.clone() else {
            return HandOff::Done(Some(Terminal::fault(
                kind.clone(),
                Fault::Config,
                format!(
                    "worker {} lives on agent {agent}, and this router reaches no other agent",
                    line.to
                ),
            )));
        };
        let id = line.id;
        line.leg += 1;
        let waiting = line.origin.is_none().then(|| {
            let (tx, rx) = oneshot::channel();
            self.pending().insert(id, tx);
            Pending {
                router: self,
                id,
                rx,
            }
        });
        let mut waiting = waiting;
        let sent = match waiting.as_mut() {
            // At the origin the reply may come (from whichever agent ends the line)
            // before the ack does.
            Some(waiting) => tokio::select! {
                biased;
                reply = &mut waiting.rx => {
                    return HandOff::Done(Some(reply.unwrap_or_else(|_| Message::stop().into())));
                }
                sent = self.send_envelope(remote.as_ref(), agent, line, id) => sent,
            },
            None => self.send_envelope(remote.as_ref(), agent, line, id).await,
        };
        match sent {
            Ok(()) => {}
            Err(NotSent::GoElsewhere(reason)) => return HandOff::Unreachable(reason),
            Err(NotSent::GaveUp {
                maybe_taken: false,
                error,
            }) => {
                return HandOff::Done(Some(Terminal::fault(
                    line.message.kind.clone(),
                    Fault::Unreachable,
                    error.to_string(),
                )));
            }
            // The agent may carry the line on: the origin waits for its reply until the
            // deadline, and answers `TIMEOUT` itself if none comes.
            Err(NotSent::GaveUp {
                maybe_taken: true, ..
            }) => {}
        }
        HandOff::Done(match waiting {
            Some(mut waiting) => Some(
                (&mut waiting.rx)
                    .await
                    .unwrap_or_else(|_| Message::stop().into()),
            ),
            None => None,
        })
    }

    /// Sends the line's envelope to `agent`, resent with backoff until it is
    /// acknowledged, it should go to another holder, or no attempt fits before the
    /// deadline any more.
    async fn send_envelope(
        &self,
        remote: &dyn Remote,
        agent: &str,
        line: &Line,
        id: Uuid,
    ) -> Result<(), NotSent> {
        let mut backoff = Backoff::new(RESEND_FIRST, RESEND_CAP);
        let (mut attempts, mut maybe_taken) = (0u32, false);
        loop {
            let envelope = Envelope {
                id,
                leg: line.leg,
                to: line.to.clone(),
                origin: line.origin.clone().unwrap_or_else(|| self.inner.me.clone()),
                remaining_ms: millis_left(line.deadline),
                hops: line.hops,
                message: line.message.clone(),
            };
            let Err(error) = remote.forward(agent, envelope).await else {
                return Ok(());
            };
            attempts += 1;
            maybe_taken |= error.maybe_taken();
            if error.is_final() {
                return Err(NotSent::GaveUp { maybe_taken, error });
            }
            self.count(&line.to, RouteCounters::handoff_retry);
            if !error.maybe_taken() {
                // Other lines prefer other holders while this one cannot be reached.
                self.suspect(agent);
            }
            tracing::debug!(message_id = %id, agent, attempt = attempts, error = %error, "hand-off failed");
            if !maybe_taken && self.another_holder(&line.to, agent, &line.unreachable) {
                return Err(NotSent::GoElsewhere(error.to_string()));
            }
            if !backoff.pause_before(line.deadline).await {
                return Err(NotSent::GaveUp { maybe_taken, error });
            }
        }
    }

    /// Sends the terminal reply of request `id` to its origin, resent with backoff until
    /// the origin acknowledges it or `until` passes (the origin answers `TIMEOUT` at
    /// its deadline, so a later reply would be dropped there anyway).
    async fn send_reply(&self, origin: &str, id: Uuid, reply: Terminal, until: Instant) {
        if origin == self.inner.me {
            self.complete(id, reply);
            return;
        }
        let Some(remote) = &self.inner.remote else {
            tracing::warn!(message_id = %id, agent = origin, "no remote to send a reply to");
            return;
        };
        let mut backoff = Backoff::new(RESEND_FIRST, RESEND_CAP);
        let mut reply = reply;
        loop {
            let error = match remote.reply(origin, id, reply.clone()).await {
                Ok(()) => return,
                Err(RemoteError::TooLarge { bytes, .. }) => {
                    // The origin must hear something: that the reply would not fit.
                    reply = Terminal {
                        message: crate::link::too_large(
                            &reply.message.kind,
                            "the line's reply",
                            bytes,
                        ),
                        fault: Some(Fault::Unreachable),
                    };
                    continue;
                }
                Err(error) => error,
            };
            if !backoff.pause_before(until).await {
                tracing::warn!(message_id = %id, agent = origin, error = %error, "terminal reply lost");
                return;
            }
        }
    }

    fn table(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Changes the table (copy on write) and wakes the lines waiting for a change.
    fn update(&self, change: impl FnOnce(&mut Table)) {
        let mut guard = self
            .inner
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut table = Table::clone(&guard);
        change(&mut table);
        let now = Instant::now();
        for (name, route) in table.routes.iter_mut() {
            let before = guard.routes.get(name);
            if before.is_some_and(Route::has_instances) && !route.has_instances() {
                route.emptied_at = Some(now);
            }
            let gone = before
                .into_iter()
                .flat_map(|before| &before.remote)
                .filter(|agent| !route.remote.contains(agent))
                .map(|agent| (agent.clone(), now))
                .collect::<Vec<_>>();
            route.departed.extend(gone);
            let remote = &route.remote;
            route.departed.retain(|(agent, since)| {
                now.duration_since(*since) < INSTANCE_GRACE && !remote.contains(agent)
            });
        }
        *guard = Arc::new(table);
        drop(guard);
        self.inner.changes.send_modify(|version| *version += 1);
    }

    /// Marks `agent` as unreachable for a second.
    fn suspect(&self, agent: &str) {
        let mut suspects = self.suspects();
        let now = Instant::now();
        suspects.retain(|_, until| *until > now);
        suspects.insert(agent.to_owned(), now + SUSPECT_FOR);
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inner
            .suspects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Terminal>>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Gives back the probation probe of an instance when its step ends, whatever the
/// ending (the line may give up at its deadline while the step is under way).
struct ProbeGuard(Option<Instance>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if let Some(instance) = &self.0 {
            instance.health().release_probe();
        }
    }
}

/// Counts one line as active for as long as it lives.
struct ActiveLine<'a>(&'a RouterInner);

impl<'a> ActiveLine<'a> {
    fn new(inner: &'a RouterInner) -> Self {
        inner.active.fetch_add(1, Ordering::AcqRel);
        ActiveLine(inner)
    }
}

impl Drop for ActiveLine<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A request waiting at its origin; leaves the pending table however the wait ends.
struct Pending<'a> {
    router: &'a Router,
    id: Uuid,
    rx: oneshot::Receiver<Terminal>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.router.pending().remove(&self.id);
    }
}

/// What happens to a message leaving a worker.
enum Next {
    /// It goes on to this worker as a `REQUEST`.
    Deliver(String, Message),
    /// The line ends with it.
    End(Message),
}

/// Applies a worker's commands to a message leaving it; `Err` is the `ERROR` that ends
/// the line when the worker lists no command for the message's type.
fn next_of(spec: &WorkerSpec, message: Message) -> Result<Next, Terminal> {
    if message.ends_line() {
        return Ok(Next::End(message));
    }
    match spec.next_worker(&message.kind) {
        Some("") => Ok(Next::End(message)),
        Some(next) => Ok(Next::Deliver(
            next.to_owned(),
            Message {
                tag: Tag::Request,
                ..message
            },
        )),
        None => Err(Terminal::fault(
            message.kind.clone(),
            Fault::Config,
            format!(
                "worker {} has no command for type {:?}",
                spec.name, message.kind
            ),
        )),
    }
}
