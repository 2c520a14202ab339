//! Handing a line to another agent through [`Remote`]: one envelope per leg, resent
//! with backoff to the same agent while it may have taken it, to another holder when it
//! certainly did not; the terminal reply sent to the origin the same way; and the
//! requests that started here and wait for a reply from elsewhere.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Line, Router};
use crate::BoxFuture;
use crate::FastMap;
use crate::backoff::Backoff;
use crate::deadline::millis_left;
use crate::envelope::Envelope;
use crate::error::RemoteError;
use crate::fault::{Fault, Terminal};
use crate::message::Message;
use crate::route_counters::RouteCounters;

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

/// How a hand-off to another agent went.
pub(super) enum HandOff {
    /// Taken: the reply (at the origin), or `None` when another agent answers the origin.
    Done(Option<Terminal>),
    /// The agent certainly did not take the line, and another agent holds the worker; why.
    Unreachable(RemoteError),
}

/// Why an envelope was not acknowledged.
enum NotSent {
    /// The agent certainly did not take it, and another agent holds the worker; why.
    GoElsewhere(RemoteError),
    /// No attempt fits before the deadline any more.
    GaveUp {
        /// Whether the agent may have taken it all the same.
        maybe_taken: bool,
        /// The last attempt's failure.
        error: RemoteError,
    },
}

/// The first pause between two attempts at a hand-off or a reply.
const RESEND_FIRST: Duration = Duration::from_millis(25);
/// The longest pause between two attempts (plus its jitter).
const RESEND_CAP: Duration = Duration::from_millis(500);

/// How long after its deadline a terminal reply is still resent to the origin (the
/// origin's clock may run a little behind this agent's view of the deadline).
pub(super) const REPLY_SLACK: Duration = Duration::from_secs(1);

impl Router {
    /// Hands the line to `agent`. At the origin, waits for the reply that will come back.
    ///
    /// Resent with backoff until `agent` acknowledges it or the deadline nears. It goes
    /// to another agent holding the worker instead only when `agent` certainly did not
    /// take it (never reached): an agent that may have taken it is only ever resent the
    /// same leg, which it keeps once, so a step never runs twice; and an outage shorter
    /// than the deadline costs the line nothing but time. When no attempt can be made
    /// before the deadline, the line ends with `ERROR` naming the agent that could not
    /// be reached, or with `TIMEOUT` when it may have taken the line.
    pub(super) async fn hand_off(&self, agent: &str, line: &mut Line) -> HandOff {
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
            Err(NotSent::GoElsewhere(error)) => return HandOff::Unreachable(error),
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
                return Err(NotSent::GoElsewhere(error));
            }
            if !backoff.pause_before(line.deadline).await {
                return Err(NotSent::GaveUp { maybe_taken, error });
            }
        }
    }

    /// Sends the terminal reply of request `id` to its origin, resent with backoff until
    /// the origin acknowledges it or `until` passes (the origin answers `TIMEOUT` at
    /// its deadline, so a later reply would be dropped there anyway).
    pub(super) async fn send_reply(&self, origin: &str, id: Uuid, reply: Terminal, until: Instant) {
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
                Err(RemoteError::TooLarge { bytes, limit, .. }) => {
                    // The origin must hear something: that the reply would not fit.
                    reply = Terminal {
                        message: crate::frame::too_large(
                            &reply.message.kind,
                            "the line's reply",
                            bytes,
                            limit,
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

    pub(super) fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, FastMap<Uuid, oneshot::Sender<Terminal>>> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
