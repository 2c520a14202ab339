//! Stopping the agent on SIGINT/SIGTERM ([`Shutdown::drain`]): refuse new `/call`s and
//! `/attach`es, tell the proxy (the heartbeat loop sends its farewell when the drain
//! starts), let the lines being driven finish for up to `drain_ms`, end the rest with
//! `STOP`, let those terminal replies go out, then close worker sessions and incoming
//! peer links and wait for the HTTP connections to end.
//!
//! The agent closes its WebSockets itself: each is a response that never ends, so
//! actix-web's own graceful stop would wait its whole timeout for idle workers.

use std::sync::Arc;
use std::time::Duration;

use actix_rt::signal::unix::{SignalKind, signal};
use damrey_actors::inflight::Entered;
use damrey_actors::{InFlight, Router};
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

/// How long, in all, the terminal replies, the sessions' close and the last HTTP
/// responses get once the drain time is over: on a healthy network they take
/// milliseconds, and an agent that stops must not hang on a frozen peer.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The agent's stop, as its parts see it. Cheap to clone; clones share everything.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Raised when the drain starts: new work is refused.
    draining: watch::Sender<bool>,
    /// Raised when the drain is over: worker sessions and peer links close.
    closing: watch::Sender<bool>,
    /// Terminal replies on their way after their line ended here: to another agent
    /// (until it acknowledges), or to a worker's own request.
    replies: InFlight,
    /// Open HTTP connections, WebSockets included.
    connections: InFlight,
}

/// A one-way flag of the [`Shutdown`]: once raised, it stays raised.
pub struct Flag(watch::Receiver<bool>);

impl Flag {
    /// Resolves once the flag is raised (at once if it was).
    pub async fn raised(&mut self) {
        // An error means the shutdown itself is gone: nothing is left to wait for.
        let _ = self.0.wait_for(|raised| *raised).await;
    }
}

impl Shutdown {
    /// Whether the agent is stopping and refuses new work.
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Raised when the drain starts.
    pub fn on_draining(&self) -> Flag {
        Flag(self.inner.draining.subscribe())
    }

    /// Raised when worker sessions and peer links must close.
    pub fn on_closing(&self) -> Flag {
        Flag(self.inner.closing.subscribe())
    }

    /// Counts a terminal reply on its way until the guard drops.
    pub fn reply(&self) -> Entered {
        self.inner.replies.enter()
    }

    /// Counts an open HTTP connection until the guard drops.
    pub fn connection(&self) -> Entered {
        self.inner.connections.enter()
    }

    /// Stops the agent's work in order: refuses new work at once, waits up to `drain`
    /// for the lines being driven, ends the rest with `STOP`, then waits (for at most
    /// [`FLUSH_TIMEOUT`] in all) for the terminal replies to go out and, once sessions
    /// and peer links are told to close, for the HTTP connections to end.
    pub async fn drain(&self, router: &Router, drain: Duration) {
        self.inner.draining.send_replace(true);
        if timeout(drain, router.idle()).await.is_err() {
            tracing::info!(
                lines = router.active_lines(),
                "drain time over; ending the lines left with STOP"
            );
        }
        router.close();
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        if timeout_at(deadline, self.inner.replies.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                replies = self.inner.replies.count(),
                "stopping with terminal replies not yet delivered"
            );
        }
        self.inner.closing.send_replace(true);
        if timeout_at(deadline, self.inner.connections.idle())
            .await
            .is_err()
        {
            tracing::info!(
                connections = self.inner.connections.count(),
                "stopping with HTTP connections still open"
            );
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers now, so that from here on neither kills the
/// process; the future resolves on the first of them.
///
/// # Errors
/// The handlers could not be installed.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received; stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
        }
    })
}

#[cfg(test)]
mod tests {
    use damrey_actors::prelude::{Actor, Context, Handler, ResponseFuture};
    use damrey_actors::{Config, Message, Worker, WorkerSpec};

    use super::*;

    /// Answers `["RESPONSE","nap",ms]` after sleeping `ms` milliseconds.
    struct Nap;

    impl Actor for Nap {
        type Context = Context<Self>;
    }

    impl Handler<Message> for Nap {
        type Result = ResponseFuture<Message>;

        fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Self::Result {
            Box::pin(async move {
                let ms = msg.args[0].parse().expect("a nap in milliseconds");
                actix_rt::time::sleep(Duration::from_millis(ms)).await;
                Message::response(msg.kind, msg.args)
            })
        }
    }

    async fn nap_router() -> Router {
        let router = Router::new([WorkerSpec::new("nap").command("nap", "")]).unwrap();
        Worker::new(Config::named("nap"))
            .attach(&router)
            .start(|| Nap)
            .await
            .unwrap();
        router
    }

    fn nap(ms: u64) -> Message {
        Message::request("nap", [ms.to_string()])
    }

    /// A nap of `ms` put to `router` and under way; its reply when it ends.
    async fn nap_in_flight(router: &Router, ms: u64) -> actix_rt::task::JoinHandle<Message> {
        let line = actix_rt::spawn({
            let router = router.clone();
            async move {
                router
                    .request("nap", nap(ms), Duration::from_secs(10))
                    .await
            }
        });
        tokio::task::yield_now().await;
        line
    }

    /// `waited` is `expected`, give or take the timer wheel's rounding of deadlines up
    /// to the next millisecond (the paused clock starts between two).
    fn assert_waited(waited: Duration, expected: Duration) {
        assert!(
            expected <= waited && waited <= expected + Duration::from_millis(1),
            "waited {waited:?}, expected {expected:?}"
        );
    }

    #[actix_rt::test]
    async fn a_line_shorter_than_the_drain_ends_with_its_reply_and_the_drain_with_it() {
        tokio::time::pause();
        let (router, shutdown) = (nap_router().await, Shutdown::default());
        let line = nap_in_flight(&router, 300).await;

        let started = Instant::now();
        shutdown.drain(&router, Duration::from_secs(5)).await;

        assert_waited(started.elapsed(), Duration::from_millis(300));
        assert_eq!(line.await.unwrap(), Message::response("nap", ["300"]));
        assert!(shutdown.is_draining());
    }

    #[actix_rt::test]
    async fn a_line_longer_than_the_drain_ends_with_stop_when_the_drain_time_is_over() {
        tokio::time::pause();
        let (router, shutdown) = (nap_router().await, Shutdown::default());
        let line = nap_in_flight(&router, 3_000).await;

        let started = Instant::now();
        shutdown.drain(&router, Duration::from_millis(500)).await;

        assert_waited(started.elapsed(), Duration::from_millis(500));
        assert_eq!(line.await.unwrap(), Message::stop());
    }

    #[actix_rt::test]
    async fn sessions_close_once_the_terminal_replies_went_out() {
        tokio::time::pause();
        let (router, shutdown) = (nap_router().await, Shutdown::default());
        let reply = shutdown.reply();
        actix_rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(reply);
        });
        let (mut closing, connection) = (shutdown.on_closing(), shutdown.connection());
        let session = actix_rt::spawn(async move {
            closing.raised().await;
            drop(connection);
            Instant::now()
        });

        let started = Instant::now();
        shutdown.drain(&router, Duration::from_secs(5)).await;

        assert_waited(session.await.unwrap() - started, Duration::from_millis(200));
        assert_waited(started.elapsed(), Duration::from_millis(200));
    }

    #[actix_rt::test]
    async fn replies_and_connections_that_never_end_are_given_up_after_the_flush_time() {
        tokio::time::pause();
        let (router, shutdown) = (nap_router().await, Shutdown::default());
        let (_stuck_reply, _idle_connection) = (shutdown.reply(), shutdown.connection());

        let started = Instant::now();
        shutdown.drain(&router, Duration::from_secs(5)).await;

        assert_waited(started.elapsed(), FLUSH_TIMEOUT);
    }
}
