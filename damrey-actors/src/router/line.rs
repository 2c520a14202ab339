//! Driving a line: the loop that owns its message, delivers it to the instance (or
//! agent) chosen for each step, takes the outcome into the instance's standing, and
//! applies the worker's commands to the result (`next_of`) until the line ends — or
//! until its deadline, the hop limit, or the router's close; with the waits for an
//! instance or for configs that may be on their way.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use damrey_service::telemetry::error_chain;
use futures_util::FutureExt;
use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Timeout, timeout_at};
use tracing::Instrument;

use super::choice::{Destination, NoRoute};
use super::handoff::HandOff;
use super::table::INSTANCE_GRACE;
use super::{Line, Router, RouterInner};
use crate::envelope::MAX_HOPS;
use crate::fault::{Fault, Terminal};
use crate::instance::{Instance, is_panic_error};
use crate::message::{Message, Tag};
use crate::outlier::Outcome;
use crate::route_counters::{Rejection, RouteCounters};
use crate::spec::WorkerSpec;

/// How long before the line's deadline a step's `TIMEOUT` must arrive to be the
/// instance's own step timeout, a failure that counts towards ejection.
const STEP_TIMEOUT_MARGIN: Duration = Duration::from_millis(20);

/// How long a line handed over by another agent waits for an instance to (re)attach:
/// the sender chose this agent because instances were attached here.
const ATTACH_GRACE: Duration = Duration::from_secs(2);

/// How long after an agent's router first got configs a line waits for an instance:
/// the agent learns where other agents' instances are from the proxy within a heartbeat.
const STARTUP_GRACE: Duration = Duration::from_secs(3);

impl Router {
    /// [`Router::drive_guarded`], answering `TIMEOUT` for a line handed on. A mapped
    /// future rather than an `async fn`, which would keep its `line` argument beside
    /// the future it moved it into, for every line in flight.
    pub(super) fn drive_until(self, line: Line) -> impl Future<Output = Terminal> + use<> {
        self.drive_guarded(line)
            .map(|reply| reply.unwrap_or_else(|| Message::timeout().into()))
    }

    /// Drives a line, counted as active, until its deadline (`TIMEOUT`) or until the
    /// router closes (`STOP`); `None` when it was handed on to another agent. The
    /// future owns its router (a handle), so that a caller may spawn it as it is.
    pub(super) fn drive_guarded(
        self,
        line: Line,
    ) -> impl Future<Output = Option<Terminal>> + use<> {
        let deadline = line.deadline;
        Guarded {
            closed: self.inner.on_close.clone().notified_owned(),
            active: ActiveLine::new(self.inner.clone()),
            driven: timeout_at(deadline, self.drive(line)),
        }
    }

    /// Drives a line until it ends (`Some(reply)`) or is handed to another agent for
    /// an origin elsewhere (`None`). The origin's router waits for the reply itself.
    /// An `async move` block that uses `line` where it was captured: an `async fn`
    /// would copy its argument into a local and keep both.
    #[allow(clippy::manual_async_fn)] // the async fn it suggests keeps `line` twice
    fn drive(self, mut line: Line) -> impl Future<Output = Option<Terminal>> + use<> {
        async move {
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
                        // Boxed, as a hand-off is: a rare wait, whose timer and change
                        // wait would otherwise size every line's future (by 80 bytes).
                        Box::pin(async {
                            tokio::select! {
                                _ = changes.changed() => {}
                                () = tokio::time::sleep_until(until) => {}
                            }
                        })
                        .await;
                        continue;
                    }
                };
                let (instance, probe) = match destination {
                    Destination::Local(instance, probe) => (instance, probe),
                    // Boxed: the hand-off's state is the largest of the line's, and every
                    // line's future would carry it (1,936 bytes against 1,576 boxed).
                    Destination::Remote(agent) => {
                        match Box::pin(self.hand_off(&agent, &mut line)).await {
                            HandOff::Done(reply) => return reply,
                            HandOff::Unreachable(error) => {
                                // Another agent holds the worker: go there, and let other lines
                                // prefer the others for a while.
                                tracing::debug!(worker = %line.to, agent, error = %error_chain(&error), "hand-off failed over to another agent");
                                self.suspect(&agent);
                                line.unreachable.push(agent);
                                continue;
                            }
                        }
                    }
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
                let mut panicked = false;
                // Made in the span too: an endpoint may start the step when called.
                let processed = span
                    .in_scope(|| instance.process(line.message, line.deadline))
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
                        panicked = is_panic_error(reply, &line.to);
                        let outcome = if step_timed_out || panicked {
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
                    // A panic's `ERROR` says the server failed, not the request's data.
                    Ok(Next::End(reply)) if panicked => {
                        return Some(Terminal {
                            message: reply,
                            fault: Some(Fault::Panic),
                        });
                    }
                    Ok(Next::End(reply)) => return Some(reply.into()),
                    Err(reply) => return Some(reply),
                }
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
struct ActiveLine(Arc<RouterInner>);

pin_project! {
    /// A line's drive, until its deadline or the router's close, counted as active
    /// meanwhile ([`Router::drive_guarded`]). A future of its own rather than a
    /// `select!` in an `async fn`, which would keep the line a second time beside the
    /// drive it moved the line into, for every line in flight.
    struct Guarded<F> {
        #[pin]
        driven: Timeout<F>,
        #[pin]
        closed: OwnedNotified,
        active: ActiveLine,
    }
}

impl<F: Future<Output = Option<Terminal>>> Future for Guarded<F> {
    type Output = Option<Terminal>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The drive first: a line that ends as the router closes answers its reply.
        if let Poll::Ready(driven) = this.driven.poll(cx) {
            return Poll::Ready(match driven {
                Ok(reply) => reply,
                Err(_elapsed) => Some(Message::timeout().into()),
            });
        }
        // Closed before this line began waiting (it is never told), or told since.
        let stop = || Some(Message::stop().into());
        if this.active.0.closed.load(Ordering::Acquire) {
            return Poll::Ready(stop());
        }
        this.closed.poll(cx).map(|()| stop())
    }
}

impl ActiveLine {
    fn new(inner: Arc<RouterInner>) -> Self {
        inner.active.fetch_add(1, Ordering::AcqRel);
        ActiveLine(inner)
    }
}

impl Drop for ActiveLine {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What happens to a message leaving a worker.
pub(super) enum Next {
    /// It goes on to this worker as a `REQUEST`.
    Deliver(String, Message),
    /// The line ends with it.
    End(Message),
}

/// Applies a worker's commands to a message leaving it; `Err` is the `ERROR` that ends
/// the line when the worker lists no command for the message's type.
pub(super) fn next_of(spec: &WorkerSpec, message: Message) -> Result<Next, Terminal> {
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
