//! The routing core every agent uses: the [`Router`], its public API, and the state its
//! parts share. The rule of DESIGN §4 (accepted types, next worker, end of line,
//! terminal tags, hop limit), deadlines carried per hop, the choice among a worker's
//! instances, and the hand-off of a line to another agent through [`Remote`].
//!
//! A line is driven by a loop that owns the message: deliver it to an instance of the
//! next worker, look the result up in that worker's commands, and go on until the line
//! ends. When the next worker lives on another agent, the [`Envelope`] is handed to it
//! and that agent carries on; whoever ends the line sends the terminal reply straight
//! to the origin, whose router resolves the waiting request ([`Router::complete`]).
//!
//! The parts, from the bottom up (each builds on the ones before it only):
//! - `table`: the routing table — each worker's config, its instances here, the agents
//!   holding it elsewhere — and its copy-on-write changes;
//! - `choice`: the instance or agent a step goes to, among the holders, by outlier
//!   standing, load and agents suspected of being unreachable;
//! - `handoff`: the [`Remote`] trait, handing a line to another agent with resends, the
//!   terminal reply to the origin, and the requests pending at the origin;
//! - `line`: driving a line — the loop, the next worker (`next_of`), the waits for
//!   instances and configs, the hop limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::Either;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::FastMap;
use crate::deadline::deadline_after;
use crate::envelope::Envelope;
use crate::error::{SpecError, WorkerError};
use crate::fault::{Fault, Terminal};
use crate::instance::Instance;
use crate::message::Message;
use crate::route_counters::RouteCounts;
use crate::spec::{WorkerSpec, validate_name};

mod choice;
mod handoff;
mod line;
mod table;

use handoff::REPLY_SLACK;
pub use handoff::Remote;
use line::{Next, next_of};
use table::Table;

/// Extra attempts at a step whose instance was lost, unless set otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

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
    pending: Mutex<FastMap<Uuid, oneshot::Sender<Terminal>>>,
    /// Rotates the starting point among equally loaded instances.
    turn: AtomicUsize,
    /// Extra attempts at a step whose instance was lost.
    retries: AtomicU32,
    /// Agents that could not be reached lately, and until when other holders of a
    /// worker are preferred to them.
    suspects: Mutex<FastMap<String, Instant>>,
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
    closed: AtomicBool,
    /// Told when `closed` is set. Shared, so that a line's future holds its wait by a
    /// handle (`notified_owned`) and no lock is taken to start or end a line.
    on_close: Arc<Notify>,
    /// Bumped by every change of the table, so that lines waiting for an instance or
    /// for configs look again at once.
    changes: watch::Sender<u64>,
    /// Steps refused because no worker of their name is configured (not counted by
    /// name: any name can be asked for).
    not_configured: AtomicU64,
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
            id: Uuid::new_v4(),
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
                closed: AtomicBool::new(false),
                on_close: Arc::default(),
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
        // Set before the waits are told: a line that starts after the telling sees it.
        self.inner.closed.store(true, Ordering::Release);
        self.inner.on_close.notify_waiters();
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

    /// [`Router::request`], with the [`Fault`] behind an `ERROR` the runtime made. The
    /// deadline runs, and the line counts as active, from this call.
    ///
    /// # Panics
    /// Outside a Tokio runtime (actix's included): the deadline's timer is made at the
    /// call.
    ///
    /// Not an `async fn` (nor is [`Router::request_from_terminal`]): one keeps its
    /// arguments beside the line they are moved into, and every request in flight
    /// carries its future (issue 16's memory figures). The future holds a handle to
    /// the router, not a borrow: a caller spawns it as it is, rather than in a task
    /// that keeps what it was made from too.
    pub fn request_terminal(
        &self,
        to: &str,
        message: Message,
        timeout: Duration,
    ) -> impl Future<Output = Terminal> + use<> {
        self.clone()
            .drive_until(Line::new(to, message, deadline_after(timeout)))
    }

    /// Sends a message from worker `from` as W's own request: it goes to the worker of
    /// W's command for its type and the terminal reply comes back here.
    pub async fn request_from(&self, from: &str, message: Message, timeout: Duration) -> Message {
        self.request_from_terminal(from, message, timeout)
            .await
            .message
    }

    /// [`Router::request_from`], with the [`Fault`] behind an `ERROR` the runtime made.
    /// `from`'s config is read, and the deadline runs, from this call.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as [`Router::request_terminal`].
    pub fn request_from_terminal(
        &self,
        from: &str,
        message: Message,
        timeout: Duration,
    ) -> impl Future<Output = Terminal> + use<> {
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
            Ok(Next::Deliver(to, message)) => {
                Either::Left(self.request_terminal(&to, message, timeout))
            }
            Ok(Next::End(reply)) => Either::Right(std::future::ready(reply.into())),
            Err(reply) => Either::Right(std::future::ready(reply)),
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
        let reply = match self.clone().drive_guarded(line).await {
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
}
