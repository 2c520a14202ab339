//! Worker sessions: a worker process attached over one WebSocket, seen by the router as
//! an [`Instance`] of its worker.
//!
//! Deliveries go out as `deliver` frames and their results come back as `result`
//! frames matched by step id. A session that closes (the process died or left) is
//! taken out of the rotation first; then its unanswered steps come back [`Lost`], so the
//! router runs them on another instance while retries and the deadline allow. Workers
//! are pinged; one that stops answering pings is dropped within three ping periods.
//! When the agent stops, it writes what is queued for the worker and closes the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_ws::AggregatedMessage;
use damrey_actors::deadline::deadline_after;
use damrey_actors::deadline::millis_left;
use damrey_actors::link::{Resolved, Waiters};
use damrey_actors::{BoxFuture, Endpoint, Fault, Instance, Lost, Message, Mpu, Router, Terminal};
use damrey_wire::binary::{Encoded, Form, FrameError, LinkFrame, read_message};
use damrey_wire::frame::MAX_FRAME;
use damrey_wire::frame::{Frame, too_large};
use futures_util::future::Either;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

use crate::outbox::{Arrival, OutboxLedger};
use crate::shutdown::Shutdown;
use crate::socket::{Connection, write};
use crate::stats::{InstanceStats, Registry};

/// Pings in a row a worker may leave unanswered before it is taken out of the rotation
/// (it is frozen or overloaded; its steps in process still wait for it).
const SILENT_PINGS: u32 = 3;

/// Pings in a row after which a silent worker is dropped for good and the steps it
/// holds are answered `ERROR` (not run elsewhere: it may still run them).
const GIVE_UP_PINGS: u32 = 30;

/// What a worker session takes from the agent's settings.
#[derive(Clone)]
pub struct SessionSettings {
    /// How often the worker is pinged.
    pub ping_every: Duration,
    /// Where the instance's stats are listed.
    pub registry: Arc<Registry>,
    /// Whether steps are counted.
    pub counting: bool,
    /// This agent process's run, told to workers in the welcome.
    pub run: Uuid,
    /// Worker processes' own requests and pushes by id, so a resent one runs once.
    pub outbox: Arc<OutboxLedger<SessionWriter>>,
}

/// What a session loop writes: a frame, or the agent's own request to close.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame, encoded in the session's form.
    Frame(Encoded),
    /// Close the session.
    Close,
}

/// Queues frames for one worker session, in the form agreed with the worker.
#[derive(Clone)]
pub struct SessionWriter {
    out: mpsc::UnboundedSender<Outgoing>,
    form: Form,
}

impl SessionWriter {
    /// `frame` in the session's form.
    fn encode(&self, frame: &Frame) -> Encoded {
        frame.encode(self.form)
    }

    /// Queues `frame`; `false` when the session is gone.
    fn send(&self, frame: &Frame) -> bool {
        self.send_encoded(self.encode(frame))
    }

    /// Queues a frame already encoded; `false` when the session is gone.
    fn send_encoded(&self, encoded: Encoded) -> bool {
        self.out.send(Outgoing::Frame(encoded)).is_ok()
    }

    /// Queues the terminal reply to the worker's request `id`; a reply too large for
    /// the session's frames (another worker's result, escaped for a JSON session, say)
    /// goes as the `ERROR` that says so, so that the worker hears once, and its link
    /// stays up.
    fn send_reply(&self, id: Uuid, reply: Terminal) {
        let frame = Frame::Reply {
            id,
            msg: reply.message,
            fault: reply.fault,
        };
        let encoded = self.encode(&frame);
        if !encoded.is_too_large() {
            self.send_encoded(encoded);
            return;
        }
        let Frame::Reply { msg, .. } = frame else {
            unreachable!("built as a reply just above")
        };
        let msg = too_large(
            &msg.kind,
            "the line's reply",
            encoded.len(),
            encoded.limit(),
        );
        self.send(&Frame::Reply {
            id,
            msg,
            fault: Some(Fault::Unreachable),
        });
    }
}

/// The agent's side of one attached worker process.
pub struct WorkerSession {
    worker: String,
    out: SessionWriter,
    steps: Waiters<Option<Message>>,
    /// What the agent counts for this instance (its in-flight count is the load).
    stats: Arc<InstanceStats>,
    /// Whether steps are counted (the in-flight count always is).
    counting: bool,
    closed: AtomicBool,
    /// Dropped for silence: it may still be running the steps it holds.
    gave_up: AtomicBool,
    /// The worker said `leave`: it is stopping and never comes back into the rotation.
    left: AtomicBool,
}

impl WorkerSession {
    /// Hands a step to the worker: what waiting for its result needs, or the step's
    /// outcome when it could not be handed over.
    ///
    /// Done before the step's future is made, not in it: the future, which every step in
    /// flight keeps on the heap, then holds only what it waits with.
    fn deliver(self: Arc<Self>, message: Message, deadline: Instant) -> Result<Delivered, Step> {
        let (id, rx) = self.steps.wait();
        // Looked at after the waiter exists: a session that closes later abandons it.
        if self.closed.load(Ordering::Acquire) {
            self.steps.forget(id);
            return Err(Err(Lost::gone(message)));
        }
        let frame = Frame::Deliver {
            id,
            ms: millis_left(deadline),
            msg: message,
        };
        let encoded = self.out.encode(&frame);
        let Frame::Deliver { msg: message, .. } = frame else {
            unreachable!("built as a delivery just above")
        };
        if encoded.is_too_large() {
            // The worker would drop the connection on it, and every step it holds.
            self.steps.forget(id);
            return Err(Ok(too_large(
                &message.kind,
                "the step's message",
                encoded.len(),
                encoded.limit(),
            )));
        }
        self.stats.tally.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.counting {
            self.stats.tally.received.fetch_add(1, Ordering::Relaxed);
        }
        let sent = self.out.send_encoded(encoded);
        let outstanding = Outstanding {
            session: Some(self),
            id,
            delivered: Instant::now(),
        };
        if !sent {
            outstanding.session().steps.forget(id);
            return Err(outstanding.settle(Err(Lost::gone(message))));
        }
        Ok(Delivered {
            outstanding,
            rx,
            message,
        })
    }

    /// The worker answered step `id` (`None`: it never started it). An orphaned step's
    /// answer only takes it out of flight.
    fn answered(&self, id: u64, answer: Option<Message>) {
        if self.steps.resolve(id, answer) == Resolved::Orphan {
            self.out_of_flight(1);
        }
    }

    /// Takes `steps` delivered steps out of the in-flight count.
    fn out_of_flight(&self, steps: usize) {
        let steps = u64::try_from(steps).unwrap_or(u64::MAX);
        self.stats
            .tally
            .in_flight
            .fetch_sub(steps, Ordering::Relaxed);
    }

    /// Waits for a delivered step's result, until `deadline`. A mapped future, not an
    /// `async fn`, which would keep its arguments twice.
    fn result(step: Delivered, deadline: Instant) -> impl Future<Output = Step> {
        let Delivered {
            outstanding,
            rx,
            message,
        } = step;
        timeout_at(deadline, rx).map(move |answer| {
            let session = outstanding.session();
            let outcome = match answer {
                Ok(Ok(Some(result))) => Ok(result),
                // The worker process is stopping and never started the step.
                Ok(Ok(None)) => Err(Lost::stopped(message)),
                // Dropped for silence, the worker may still run it: not run elsewhere.
                Ok(Err(_closed)) if session.gave_up.load(Ordering::Acquire) => Ok(Message::error(
                    message.kind,
                    format!(
                        "the {} instance stopped answering while it held this step",
                        session.worker
                    ),
                )),
                // The session closed and dropped the waiter: the process is gone and
                // the step never came back.
                Ok(Err(_closed)) => Err(Lost::gone(message)),
                Err(_elapsed) => {
                    // The only ending that leaves the waiter in the table.
                    session.steps.forget(outstanding.id);
                    Ok(Message::timeout())
                }
            };
            outstanding.settle(outcome)
        })
    }
}

/// A step's outcome: the worker's result (or `TIMEOUT`, or an `ERROR` of the session's),
/// or [`Lost`].
type Step = Result<Message, Lost>;

/// A step handed to the worker process, waiting for its result.
struct Delivered {
    outstanding: Outstanding,
    rx: oneshot::Receiver<Option<Message>>,
    /// Kept to run again elsewhere should the instance be lost.
    message: Message,
}

/// A delivered step's place in its session: waited on and counted in flight until it
/// is settled with an outcome (the worker's answer, `TIMEOUT` at the deadline, lost); or,
/// dropped unsettled (its line's future was dropped while it waited, as when the router
/// closes), until the worker answers it or the session ends: the worker still holds it
/// meanwhile.
struct Outstanding {
    /// `None` once settled or dropped: a flag of its own would cost every step in flight
    /// 8 bytes.
    session: Option<Arc<WorkerSession>>,
    id: u64,
    delivered: Instant,
}

impl Outstanding {
    /// The session the step is outstanding at.
    fn session(&self) -> &WorkerSession {
        self.session
            .as_deref()
            .expect("a step is settled only by `settle`, which consumes it")
    }

    /// Ends the step with `outcome`, counted, and takes it out of flight. Its waiter is
    /// out of the table by then: answered, abandoned with the session, or forgotten by
    /// the caller (a timeout, a frame that could not be queued), so that an answered
    /// step takes the table's lock once, not twice.
    fn settle(mut self, outcome: Step) -> Step {
        let session = self
            .session
            .take()
            .expect("a step is settled only by `settle`, which consumes it");
        if session.counting {
            match &outcome {
                Ok(answer) => session.stats.answered(answer.tag, self.delivered.elapsed()),
                Err(_lost) => {
                    session.stats.tally.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        session.out_of_flight(1);
        outcome
    }
}

impl Drop for Outstanding {
    /// Unsettled: the worker still holds the step, which leaves flight when its answer
    /// comes (`WorkerSession::answered`) or the session ends; or it answered already.
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && !session.steps.orphan(self.id)
        {
            session.out_of_flight(1);
        }
    }
}

impl Endpoint for WorkerSession {
    fn process(
        self: Arc<Self>,
        message: Message,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Message, Lost>> {
        match self.deliver(message, deadline) {
            Ok(step) => Box::pin(Self::result(step, deadline)),
            Err(outcome) => Box::pin(std::future::ready(outcome)),
        }
    }

    fn stop(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.out.out.send(Outgoing::Close);
        })
    }

    fn load(&self) -> usize {
        let in_flight = self.stats.tally.in_flight.load(Ordering::Relaxed);
        usize::try_from(in_flight).unwrap_or(usize::MAX)
    }

    fn set_mpu(&self, mpu: Mpu) {
        self.out.send(&Frame::Mpu { mpu: mpu.0 });
    }
}

/// Serves an accepted worker connection until it closes: registers the instance with
/// the router, answers the worker's own requests, and cleans up after it. Frames go out
/// in the form agreed with the worker.
pub async fn serve(
    router: Router,
    worker: String,
    mpu: u32,
    connection: Connection,
    settings: SessionSettings,
    shutdown: Shutdown,
) {
    let Connection {
        mut session,
        stream,
        form,
    } = connection;
    let mut closing = shutdown.on_closing();
    let ping_every = settings.ping_every;
    let (out, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let stats = settings.registry.register(&worker);
    let out = SessionWriter { out, form };
    let endpoint = Arc::new(WorkerSession {
        worker: worker.clone(),
        out: out.clone(),
        steps: Waiters::default(),
        stats: stats.clone(),
        counting: settings.counting,
        closed: AtomicBool::new(false),
        gave_up: AtomicBool::new(false),
        left: AtomicBool::new(false),
    });
    let instance = Instance::new(endpoint.clone());
    let _ = stats.health.set(instance.health().clone());
    let welcome = Frame::Welcome {
        mpu,
        run: settings.run,
    };
    if write(&mut session, [welcome.encode(form)]).await.is_err() {
        settings.registry.unregister(&stats);
        return;
    }
    if let Err(error) = router.attach(&worker, instance.clone()) {
        tracing::warn!(worker, error = %error, "attach refused after the handshake");
        settings.registry.unregister(&stats);
        let _ = session.close(None).await;
        return;
    }
    tracing::info!(worker, "worker attached");

    let mut stream = stream.max_frame_size(MAX_FRAME).aggregate_continuations();
    let mut ping = tokio::time::interval(ping_every);
    // After a pause of this agent itself (SIGSTOP), ping again rather than count the
    // missed periods against the worker.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered_pings = 0u32;
    // Out of the rotation for not answering pings; its steps in process wait for it.
    let mut silent = false;
    'serve: loop {
        let heard = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    read_message(false, text.as_bytes(), |frame| {
                        on_frame(&router, &endpoint, &instance, &settings.outbox, &shutdown, frame);
                    });
                    true
                }
                Some(Ok(AggregatedMessage::Binary(bytes))) => {
                    read_message(true, &bytes, |frame| {
                        on_frame(&router, &endpoint, &instance, &settings.outbox, &shutdown, frame);
                    });
                    true
                }
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        break;
                    }
                    true
                }
                Some(Ok(AggregatedMessage::Pong(_))) => true,
                Some(Ok(AggregatedMessage::Close(_))) | Some(Err(_)) | None => break,
            },
            outgoing = out_rx.recv() => {
                let Some(first) = outgoing else { break };
                // Write everything already queued before going back to waiting, binary
                // frames joined into messages of up to `BATCH`.
                let mut close = false;
                let frames = std::iter::once(first)
                    .chain(std::iter::from_fn(|| out_rx.try_recv().ok()))
                    .map_while(|next| match next {
                        Outgoing::Frame(encoded) => Some(encoded),
                        Outgoing::Close => {
                            close = true;
                            None
                        }
                    });
                if write(&mut session, frames).await.is_err() {
                    break 'serve;
                }
                if close {
                    break 'serve;
                }
                false
            },
            _ = closing.raised() => {
                // Replies to the worker's own requests are queued by now: send them first.
                let frames = std::iter::from_fn(|| match out_rx.try_recv() {
                    Ok(Outgoing::Frame(encoded)) => Some(encoded),
                    _ => None,
                });
                let _ = write(&mut session, frames).await;
                break;
            }
            _ = ping.tick() => {
                if unanswered_pings >= GIVE_UP_PINGS {
                    tracing::warn!(worker, "worker silent for too long; dropping it");
                    // It may still run what it holds if it ever wakes: not run elsewhere.
                    endpoint.gave_up.store(true, Ordering::Release);
                    break;
                }
                if unanswered_pings >= SILENT_PINGS && !silent {
                    // Frozen or overloaded: new steps go elsewhere, but the ones it holds
                    // wait for it (within their deadlines) rather than run twice.
                    tracing::warn!(worker, "worker stopped answering pings; out of the rotation until it answers");
                    router.detach(&worker, &instance);
                    silent = true;
                }
                if session.ping(b"").await.is_err() {
                    break;
                }
                unanswered_pings += 1;
                false
            }
        };
        if heard {
            unanswered_pings = 0;
            if silent {
                silent = false;
                // A worker that said `leave` meanwhile stays out.
                if !endpoint.left.load(Ordering::Acquire) {
                    if router.attach(&worker, instance.clone()).is_err() {
                        break;
                    }
                    tracing::info!(worker, "worker answers again; back in the rotation");
                }
            }
        }
    }
    // Out of the rotation first, then hand back what it never answered: the
    // connection closed, so the process is gone and none of it can run twice.
    router.detach(&worker, &instance);
    settings.registry.unregister(&stats);
    endpoint.closed.store(true, Ordering::Release);
    endpoint.out_of_flight(endpoint.steps.abandon_all());
    let _ = session.close(None).await;
    tracing::info!(worker = endpoint.worker, "worker detached");
}

fn on_frame(
    router: &Router,
    endpoint: &Arc<WorkerSession>,
    instance: &Instance,
    outbox: &Arc<OutboxLedger<SessionWriter>>,
    shutdown: &Shutdown,
    frame: Result<Frame, FrameError>,
) {
    let out = &endpoint.out;
    match frame {
        Ok(Frame::Result { id, msg }) => endpoint.answered(id, Some(msg)),
        Ok(Frame::Unstarted { id }) => endpoint.answered(id, None),
        Ok(Frame::Request { id, ms, msg, to }) => match outbox.arrive(id, out.clone()) {
            Arrival::New => {
                // The line is made here, not in the task: the task then holds only the
                // line, not also the message, names and deadline it was made from.
                let timeout = Duration::from_millis(ms);
                let until = deadline_after(timeout);
                let line = match to {
                    Some(to) => Either::Left(router.request_terminal(&to, msg, timeout)),
                    None => {
                        Either::Right(router.request_from_terminal(&endpoint.worker, msg, timeout))
                    }
                };
                let outbox = outbox.clone();
                let replying = shutdown.reply();
                // Mapped, not awaited in an async block, which would keep the line twice.
                actix_rt::spawn(line.map(move |reply| {
                    if let Some(out) = outbox.finish(id, Some(reply.clone()), until) {
                        out.send_reply(id, reply);
                    }
                    drop(replying);
                }));
            }
            // Resent over this connection: the running line answers here.
            Arrival::Running => {}
            Arrival::Done(reply) => {
                let reply = reply.unwrap_or_else(|| Message::stop().into());
                out.send_reply(id, reply);
            }
        },
        Ok(Frame::Push { id, ms, msg }) => {
            out.send(&Frame::Pushed { id });
            if outbox.arrive(id, out.clone()) == Arrival::New {
                // Made here, as a request's line is.
                let timeout = Duration::from_millis(ms);
                let until = deadline_after(timeout);
                let line = router.request_from_terminal(&endpoint.worker, msg, timeout);
                let (endpoint, outbox) = (endpoint.clone(), outbox.clone());
                actix_rt::spawn(line.map(move |reply| {
                    outbox.finish(id, None, until);
                    tracing::debug!(worker = endpoint.worker, reply = %reply.message, "pushed line ended");
                }));
            }
        }
        Ok(Frame::Restarts { total }) => {
            endpoint
                .stats
                .tally
                .restarts
                .store(total, Ordering::Relaxed);
        }
        Ok(Frame::Leave) => {
            endpoint.left.store(true, Ordering::Release);
            router.detach(&endpoint.worker, instance);
        }
        Ok(other) => tracing::warn!(
            worker = endpoint.worker,
            ?other,
            "unexpected frame from a worker"
        ),
        Err(error) => {
            tracing::warn!(worker = endpoint.worker, error = %error, "unreadable frame from a worker")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_actors::Tag;

    /// A session as `serve` makes it, with the queue its loop would write from.
    fn session() -> (Arc<WorkerSession>, mpsc::UnboundedReceiver<Outgoing>) {
        let (out, out_rx) = mpsc::unbounded_channel();
        let session = Arc::new(WorkerSession {
            worker: "square".to_owned(),
            out: SessionWriter {
                out,
                form: Form::Binary,
            },
            steps: Waiters::default(),
            stats: Registry::default().register("square"),
            counting: true,
            closed: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
            left: AtomicBool::new(false),
        });
        (session, out_rx)
    }

    /// A step's message.
    fn step() -> Message {
        Message::new(Tag::Request, "integers", ["3"])
    }

    /// The worker's result for [`step`].
    fn nine() -> Option<Message> {
        Some(Message::response("integers", ["9"]))
    }

    /// A deadline no step of these tests reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    /// What `serve` does when the session's connection ends.
    fn close(session: &WorkerSession) {
        session.closed.store(true, Ordering::Release);
        session.out_of_flight(session.steps.abandon_all());
    }

    #[tokio::test]
    async fn a_step_whose_line_is_dropped_counts_in_flight_until_its_worker_answers() {
        let (session, mut out_rx) = session();
        let waiting = session.clone().process(step(), far());
        // Delivered when called: queued for the worker and counted in flight.
        assert!(matches!(out_rx.try_recv(), Ok(Outgoing::Frame(_))));
        assert_eq!(session.load(), 1);

        // The router closed, say: the line's future, and the step's in it, are dropped.
        // The worker still holds the step, so it still counts as load...
        drop(waiting);
        assert_eq!(session.load(), 1);
        // ...until the worker answers it.
        session.answered(0, nine());
        assert_eq!(session.load(), 0);
        // Once: a late duplicate of the answer changes nothing.
        session.answered(0, nine());
        assert_eq!(session.load(), 0);

        // The instance takes the next step as before, and its result settles it.
        let next = session.clone().process(step(), far());
        assert_eq!(session.load(), 1);
        session.answered(1, nine());
        assert_eq!(next.await.expect("the worker answered"), nine().unwrap());
        assert_eq!(session.load(), 0);
        assert_eq!(session.stats.tally.responses.load(Ordering::Relaxed), 1);

        // Answered before the line's future heard it, then dropped: out of flight at once.
        let heard_late = session.clone().process(step(), far());
        session.answered(2, nine());
        assert_eq!(session.load(), 1);
        drop(heard_late);
        assert_eq!(session.load(), 0);

        // A dropped step the worker never answers is out of flight when the session ends.
        drop(session.clone().process(step(), far()));
        assert_eq!(session.load(), 1);
        close(&session);
        assert_eq!(session.load(), 0);
        // And one dropped after the session ended, once.
        session.closed.store(false, Ordering::Release);
        let waiting = session.clone().process(step(), far());
        close(&session);
        drop(waiting);
        assert_eq!(session.load(), 0);
    }

    #[tokio::test]
    async fn every_ending_of_a_step_takes_it_out_of_flight_once() {
        let (session, out_rx) = session();
        let tally = &session.stats.tally;

        // Answered.
        let answered = session.clone().process(step(), far());
        session.answered(0, nine());
        assert!(answered.await.is_ok());
        assert_eq!(session.load(), 0);

        // Not started by a stopping worker: lost, to run elsewhere.
        let unstarted = session.clone().process(step(), far());
        session.answered(1, None);
        assert!(unstarted.await.is_err_and(|lost| lost.stopped));
        assert_eq!(session.load(), 0);

        // Out of time.
        let late = session
            .clone()
            .process(step(), Instant::now() + Duration::from_millis(10));
        assert_eq!(late.await.expect("a TIMEOUT").tag, Tag::Timeout);
        assert_eq!(session.load(), 0);
        assert!(
            !session.steps.orphan(2),
            "the timed-out step's waiter is left"
        );
        assert_eq!(tally.timeouts.load(Ordering::Relaxed), 1);

        // The connection ended while the worker held it: lost, to run elsewhere.
        let held = session.clone().process(step(), far());
        close(&session);
        assert!(held.await.is_err_and(|lost| !lost.stopped));
        assert_eq!(session.load(), 0);
        // And a step for a closed session is lost when handed over.
        assert!(session.clone().process(step(), far()).await.is_err());
        assert_eq!(session.load(), 0);

        // Held by a worker dropped for silence: an ERROR, not run elsewhere.
        session.closed.store(false, Ordering::Release);
        let held = session.clone().process(step(), far());
        session.gave_up.store(true, Ordering::Release);
        close(&session);
        assert_eq!(held.await.expect("an ERROR").tag, Tag::Error);
        assert_eq!(session.load(), 0);
        assert_eq!(tally.errors.load(Ordering::Relaxed), 1);

        // The session's queue is gone: lost when handed over.
        session.closed.store(false, Ordering::Release);
        session.gave_up.store(false, Ordering::Release);
        drop(out_rx);
        let unsent = session.clone().process(step(), far());
        assert!(unsent.await.is_err_and(|lost| !lost.stopped));
        assert_eq!(session.load(), 0);
        assert!(!session.steps.orphan(6), "the unsent step's waiter is left");
        assert_eq!(tally.retries.load(Ordering::Relaxed), 3);
    }
}
