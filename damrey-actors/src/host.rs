//! The actor host behind an in-process worker's [`Endpoint`]: it owns the user's actor,
//! feeds it one [`Message`] per step, and turns what goes wrong into the right terminal
//! tag — admission (the mpu cap), step timeouts, panic supervision and draining stop.
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
use crate::fault::panic_error;
use crate::instance::{Endpoint, Lost};
use crate::message::Message;
use crate::spec::Mpu;

/// Makes a fresh actor after a panic.
pub(crate) type Factory<A> = Arc<dyn Fn() -> A + Send + Sync>;

/// Hosts one user actor: admission (mpu), step timeouts, panic supervision and drain.
pub(crate) struct Host<A: Actor<Context = Context<A>>> {
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
    /// Starts the actor made by `factory` on `arbiter`, hosted under worker `name` with
    /// steps bounded by `step_timeout` and at most `mpu` at once (following the worker's
    /// config when `mpu_follows_config`).
    pub(crate) fn start(
        name: &str,
        step_timeout: Duration,
        mpu: Mpu,
        mpu_follows_config: bool,
        arbiter: ArbiterHandle,
        factory: Factory<A>,
    ) -> Arc<Self> {
        let addr = spawn_actor(&arbiter, factory.clone());
        Arc::new(Host {
            name: name.to_owned(),
            step_timeout,
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
                            return Ok(panic_error(kind, &self.name, " and was restarted"));
                        }
                        Verdict::FuturePanicked => return Ok(panic_error(kind, &self.name, "")),
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
