//! The link between a worker process and its local agent, the worker's side of it
//! (attach, deliveries, the outbox, ping/pong, reconnection with backoff) over one
//! persistent WebSocket that carries [`Frame`]s; and the WebSocket helpers the agent's
//! links share with it ([`ClientSocket`], [`offer_binary`], [`agreed_form`],
//! [`write_batch`], [`Waiters`]).
//!
//! The worker connects to `ws://AGENT/attach/NAME` (with `Authorization: Bearer` when a
//! token is set, and offering the binary form of frames, [`damrey_wire::binary`]). The agent refuses with 401 (bad token), 404 (no such worker) or 503
//! (no configs yet: it has not heard from its proxy and has no cache) before the
//! upgrade, or accepts and sends [`Frame::Welcome`] first. A 503 is waited out: a
//! starting worker tries again with backoff for up to [`READY_WAIT`], a reconnecting
//! one for as long as it runs.
//!
//! A worker that stops sends `leave`, lets its steps finish, writes their results, and
//! closes the WebSocket with a close frame, so no result is left in a queue when its
//! process exits. A step's result goes out only on the connection that delivered the
//! step: the agent's step ids are per connection, and it has already run a step whose
//! connection closed somewhere else.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_http::ws;
use damrey_service::credential::Secret;
use damrey_wire::binary::{
    BATCH, BINARY, Encoded, FORM_HEADER, Form, FrameError, LinkFrame, coalesce, read_message,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

use crate::FastMap;
use crate::backoff::Backoff;
use crate::deadline::deadline_after;
use crate::error::WorkerError;
use crate::fault::{Fault, Terminal};
use crate::frame::MAX_FRAME;
use crate::frame::{Frame, too_large};
use crate::inflight::InFlight;
use crate::instance::Instance;
use crate::message::Message;
use crate::outbox::Outbox;
use crate::spec::Mpu;

/// The longest a starting worker waits for an agent that has no configs yet. An agent
/// gets them within a second of reaching its proxy, so this bridges a proxy that is
/// restarting (or an agent and its proxy started together) but not a proxy that is
/// gone: then the worker fails with [`WorkerError::NotReady`] and says so.
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// The waits between attempts to attach (at start, to an agent that is not ready, and
/// when reconnecting).
const ATTACH_BACKOFF: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// Why one attempt to attach failed.
enum AttachFailure {
    /// The agent has no configs yet (503); it will once its proxy answers.
    NotReady,
    /// Refused, or nothing answered.
    Refused(WorkerError),
}

/// Where and how a worker attaches.
#[derive(Clone)]
pub(crate) struct AgentAddress {
    pub(crate) agent: String,
    pub(crate) token: Option<Secret>,
    pub(crate) name: String,
    /// Attaches over WSS with this config.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl AgentAddress {
    /// Connects and waits for the welcome; returns the socket, the worker's mpu and the
    /// form of the connection's frames.
    async fn connect(&self) -> Result<(ClientSocket, Welcome), AttachFailure> {
        let refused = |reason: String| {
            AttachFailure::Refused(WorkerError::Refused {
                agent: self.agent.clone(),
                reason,
            })
        };
        let url = format!(
            "{}://{}/attach/{}",
            crate::tls::ws_scheme(self.tls.is_some()),
            self.agent,
            self.name
        );
        let mut request = crate::tls::client(Duration::from_secs(5), self.tls.as_ref())
            .ws(url)
            .max_frame_size(MAX_FRAME);
        request = offer_binary(request);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let (response, mut socket) = request.connect().await.map_err(|error| match error {
            awc::error::WsClientError::InvalidResponseStatus(status) if status.as_u16() == 401 => {
                refused("the agent refused the token".to_owned())
            }
            awc::error::WsClientError::InvalidResponseStatus(status) if status.as_u16() == 403 => {
                refused("the agent refused the token: it is not a worker's".to_owned())
            }
            awc::error::WsClientError::InvalidResponseStatus(status) if status.as_u16() == 404 => {
                refused(format!(
                    "the agent has no config for worker {:?}; register it with the proxy \
                     first (`damrey worker add`, or POST /worker/add)",
                    self.name
                ))
            }
            awc::error::WsClientError::InvalidResponseStatus(status) if status.as_u16() == 503 => {
                AttachFailure::NotReady
            }
            // A TLS handshake that fails is an answer, not silence: say so.
            awc::error::WsClientError::SendRequest(awc::error::SendRequestError::Connect(
                awc::error::ConnectError::Io(error),
            )) if error.kind() == std::io::ErrorKind::InvalidData => {
                refused(format!("the TLS handshake with the agent failed: {error}"))
            }
            awc::error::WsClientError::SendRequest(awc::error::SendRequestError::Connect(
                error,
            )) => AttachFailure::Refused(WorkerError::Unreachable {
                agent: self.agent.clone(),
                reason: error.to_string(),
            }),
            other => refused(other.to_string()),
        })?;
        let form = agreed_form(response.headers());
        loop {
            let (binary, payload) = match socket.next().await {
                Some(Ok(ws::Frame::Text(payload))) => (false, payload),
                Some(Ok(ws::Frame::Binary(payload))) => (true, payload),
                Some(Ok(ws::Frame::Ping(bytes))) => {
                    let _ = socket.send(ws::Message::Pong(bytes)).await;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(refused(error.to_string())),
                None => return Err(refused("the agent closed the connection".to_owned())),
            };
            // The agent writes its welcome on its own, before anything else, so nothing
            // else is in this message.
            let mut welcome = None;
            read_message(binary, &payload, |frame| {
                if let (None, Ok(Frame::Welcome { mpu, run })) = (welcome, frame) {
                    welcome = Some(Welcome { mpu, run, form });
                }
            });
            return welcome
                .map(|welcome| (socket, welcome))
                .ok_or_else(|| refused("the agent did not welcome the worker".to_owned()));
        }
    }
}

/// What the agent says when it takes a worker.
#[derive(Debug, Clone, Copy)]
struct Welcome {
    mpu: u32,
    run: Uuid,
    /// How this connection's frames are written.
    form: Form,
}

/// How long a stopping worker gives its last results and the close handshake: the
/// agent is local, so this only matters when it is frozen or gone.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A client WebSocket, as awc opens it.
pub type ClientSocket = actix_codec::Framed<awc::BoxedSocket, ws::Codec>;

/// Offers the binary form of frames on a WebSocket request ([`damrey_wire::binary`]).
pub fn offer_binary(request: awc::ws::WebsocketsRequest) -> awc::ws::WebsocketsRequest {
    request.set_header(FORM_HEADER, BINARY)
}

/// The form of frames agreed, from the headers of the answer to a request that
/// offered binary: JSON unless the other side said binary too.
pub fn agreed_form(headers: &awc::http::header::HeaderMap) -> Form {
    Form::agreed(headers.get(FORM_HEADER).map(|value| value.as_bytes()))
}

/// Writes `first` and whatever else is already queued, then flushes once: under load
/// many frames leave in one write, and binary ones in one WebSocket message.
///
/// # Errors
/// The socket failed.
pub async fn write_batch(
    socket: &mut ClientSocket,
    first: Encoded,
    queued: &mut mpsc::UnboundedReceiver<Encoded>,
) -> Result<(), ws::ProtocolError> {
    write_all(socket, drain(first, queued)).await
}

/// `first` and whatever else is already queued after it.
fn drain(
    first: Encoded,
    queued: &mut mpsc::UnboundedReceiver<Encoded>,
) -> impl Iterator<Item = Encoded> + '_ {
    std::iter::once(first).chain(std::iter::from_fn(|| queued.try_recv().ok()))
}

/// Feeds `frames` to the socket and flushes once.
async fn write_all(
    socket: &mut ClientSocket,
    frames: impl IntoIterator<Item = Encoded>,
) -> Result<(), ws::ProtocolError> {
    feed(socket, frames).await?;
    socket.flush().await
}

/// Feeds `frames` to the socket, binary ones joined, without flushing (as the agent's
/// side does on its sessions, `damrey_agent::socket::write`).
async fn feed(
    socket: &mut ClientSocket,
    frames: impl IntoIterator<Item = Encoded>,
) -> Result<(), ws::ProtocolError> {
    for message in coalesce(frames, BATCH) {
        socket.feed(ws_message(message)).await?;
    }
    Ok(())
}

/// The WebSocket message that carries an encoded frame (or joined binary frames).
fn ws_message(encoded: Encoded) -> ws::Message {
    match encoded {
        Encoded::Text(text) => ws::Message::Text(text.into()),
        Encoded::Binary(bytes) => ws::Message::Binary(bytes.into()),
    }
}

/// Callers waiting for one answer each (a step's outcome), by a number handed out here.
/// A caller that gives up while the other side still holds its number may leave it
/// orphaned ([`Waiters::orphan`]): its answer, when it comes, is dropped and said to
/// be an orphan's, so that whoever counts the work the other side holds counts it until
/// then.
pub struct Waiters<T = Message> {
    next: AtomicU64,
    /// `None` for an orphaned number.
    waiting: Mutex<FastMap<u64, Option<oneshot::Sender<T>>>>,
}

/// What [`Waiters::resolve`] found for a number.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Its caller's (the caller may have stopped listening without saying so).
    Waiter,
    /// An orphaned number: its caller had given up, and the answer is dropped.
    Orphan,
    /// No such number: answered, forgotten or abandoned already.
    Unknown,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
        }
    }
}

impl<T> Waiters<T> {
    /// A new number and the receiver its answer will arrive on.
    pub fn wait(&self) -> (u64, oneshot::Receiver<T>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id, Some(tx));
        (id, rx)
    }

    /// Hands `answer` to the caller waiting on `id`, if any is still waiting; what it
    /// found for `id` (an orphan's answer is for its counting only).
    pub fn resolve(&self, id: u64, answer: T) -> Resolved {
        let found = self.waiting().remove(&id);
        match found {
            Some(Some(waiter)) => {
                let _ = waiter.send(answer);
                Resolved::Waiter
            }
            Some(None) => Resolved::Orphan,
            None => Resolved::Unknown,
        }
    }

    /// Stops waiting on `id` (its caller gave up), orphaned or not: an orphan forgotten
    /// is never reported, so this is for numbers whose ending is counted already.
    pub fn forget(&self, id: u64) {
        self.waiting().remove(&id);
    }

    /// Stops waiting on `id`, but keeps the number until its answer comes: `true` when
    /// it is orphaned so, `false` when no answer is to come (it came already, or the
    /// number was forgotten or abandoned). Decided under the table's lock, so that an
    /// answer racing with this call is seen by exactly one of the two.
    pub fn orphan(&self, id: u64) -> bool {
        match self.waiting().get_mut(&id) {
            Some(waiter) => {
                *waiter = None;
                true
            }
            None => false,
        }
    }

    /// Drops every waiter (their receivers see the sender gone); how many of the numbers
    /// dropped were orphans.
    pub fn abandon_all(&self) -> usize {
        let mut waiting = self.waiting();
        let orphans = waiting.values().filter(|waiter| waiter.is_none()).count();
        waiting.clear();
        orphans
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, FastMap<u64, Option<oneshot::Sender<T>>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The worker's side of the link: shared by the handle and the connection task.
pub(crate) struct AgentLink {
    address: AgentAddress,
    /// Frames to send, encoded.
    out: mpsc::UnboundedSender<Encoded>,
    /// Whether the current connection's frames are binary (else JSON): the form agreed
    /// with the agent, set at each connect before anything is queued for it.
    binary: AtomicBool,
    outbox: Outbox,
    stopping: AtomicBool,
    connected: AtomicBool,
    /// Steps delivered whose result is not queued yet.
    steps: InFlight,
    /// Set by [`AgentLink::close`]: write what is queued and close the connection.
    closing: watch::Sender<bool>,
    /// Set when the connection task has ended for good.
    finished: watch::Sender<bool>,
}

impl AgentLink {
    /// Attaches to the agent: returns the link and the worker's configured mpu.
    /// The connection is served (and re-established when lost) by a task on the
    /// current arbiter, which feeds deliveries to `instance` once it is set.
    pub(crate) async fn attach(
        address: AgentAddress,
        retries: u32,
    ) -> Result<(Arc<AgentLink>, u32, LinkStarter), WorkerError> {
        let (socket, welcome) = when_ready(&address.agent, READY_WAIT, ATTACH_BACKOFF, || {
            address.connect()
        })
        .await?;
        let (out, out_rx) = mpsc::unbounded_channel();
        let link = Arc::new(AgentLink {
            address,
            out,
            binary: AtomicBool::new(welcome.form == Form::Binary),
            outbox: Outbox::new(retries, welcome.run),
            stopping: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            steps: InFlight::default(),
            closing: watch::Sender::new(false),
            finished: watch::Sender::new(false),
        });
        let starter = LinkStarter {
            link: link.clone(),
            socket,
            out_rx,
        };
        Ok((link, welcome.mpu, starter))
    }

    /// Sends a request through the agent, along the worker's line or starting at
    /// worker `to`; one terminal reply.
    pub(crate) async fn request(
        &self,
        message: Message,
        to: Option<String>,
        timeout: Duration,
    ) -> Terminal {
        let deadline = deadline_after(timeout);
        let kind = message.kind.clone();
        let (id, rx, frame) = self.outbox.request(message, to, deadline);
        let encoded = self.encode(&frame);
        if encoded.is_too_large() {
            self.outbox.forget(id);
            // The request's own data is too large: the caller's error.
            return too_large(&kind, "the request", encoded.len(), encoded.limit()).into();
        }
        if self.out.send(encoded).is_err() {
            self.outbox.forget(id);
            return Terminal::fault(
                kind,
                Fault::Unreachable,
                "the worker's link to its agent is closed",
            );
        }
        let reply = timeout_at(deadline, rx).await;
        self.outbox.forget(id);
        match reply {
            Ok(Ok(reply)) => reply,
            // The worker stopped with the request unanswered.
            Ok(Err(_dropped)) => Message::stop().into(),
            Err(_elapsed) => Message::timeout().into(),
        }
    }

    /// Sends a message along the worker's line through the agent, no reply wanted; the
    /// line may take up to `budget`.
    pub(crate) fn push(&self, message: Message, budget: Duration) -> Result<(), WorkerError> {
        let (id, frame) = self.outbox.push(message, deadline_after(budget));
        let encoded = self.encode(&frame);
        if encoded.is_too_large() {
            self.outbox.forget(id);
            return Err(WorkerError::TooLarge {
                bytes: encoded.len(),
                limit: encoded.limit(),
            });
        }
        self.out
            .send(encoded)
            .map_err(|_| WorkerError::Detached(self.address.name.clone()))
    }

    /// Tells the agent to stop routing here, and stops reconnecting.
    pub(crate) fn leave(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.out.send(self.encode(&Frame::Leave));
    }

    /// The form of the current connection's frames.
    fn form(&self) -> Form {
        if self.binary.load(Ordering::Acquire) {
            Form::Binary
        } else {
            Form::Json
        }
    }

    /// `frame` in the form of the current connection.
    fn encode(&self, frame: &Frame) -> Encoded {
        frame.encode(self.form())
    }

    /// Queues a frame of the outbox again, on a new connection, in its form; one that no
    /// longer fits is refused ([`AgentLink::refuse`]).
    fn queue_again(&self, frame: Frame) {
        let encoded = self.encode(&frame);
        if encoded.is_too_large() {
            self.refuse(frame, &encoded);
        } else {
            let _ = self.out.send(encoded);
        }
    }

    /// A frame queued before a reconnect is in the form of the connection it was made
    /// for; should the agent have come back as another build, with the other form, it
    /// goes again in `form` (or is refused, when it no longer fits).
    fn in_form(&self, encoded: Encoded, form: Form) -> Option<Encoded> {
        if encoded.form() == form {
            return Some(encoded);
        }
        let frame = match &encoded {
            Encoded::Text(text) => Frame::from_json(text.as_bytes()).ok(),
            Encoded::Binary(record) => Frame::from_binary(record).next().and_then(Result::ok),
        }?;
        let again = frame.encode(form);
        if again.is_too_large() {
            self.refuse(frame, &again);
            return None;
        }
        Some(again)
    }

    /// Answers a frame of the outbox that does not fit the link's frames (`encoded`): a
    /// request gets the `ERROR` that says so, as its caller would have at once; a push,
    /// whose caller was told it was queued, is dropped and logged.
    fn refuse(&self, frame: Frame, encoded: &Encoded) {
        let (bytes, limit) = (encoded.len(), encoded.limit());
        match frame {
            Frame::Request { id, msg, .. } => {
                let error = too_large(&msg.kind, "the request", bytes, limit);
                self.outbox.answered(id, Some(error.into()));
            }
            Frame::Push { id, msg, .. } => {
                tracing::error!(worker = %self.address.name, kind = %msg.kind, bytes, limit, "a push no longer fits the agent's frames; dropped");
                self.outbox.answered(id, None);
            }
            other => tracing::warn!(?other, "a frame no longer fits the agent's frames"),
        }
    }

    /// Once the steps delivered so far have their results queued, writes everything
    /// queued, closes the connection with a close frame and waits for the agent's; all
    /// within [`CLOSE_TIMEOUT`]. Called after [`AgentLink::leave`] and the drain.
    pub(crate) async fn close(&self) {
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        if timeout_at(deadline, self.steps.idle()).await.is_err() {
            tracing::warn!(worker = %self.address.name, steps = self.steps.count(), "stop: closing with steps still unanswered");
        }
        self.closing.send_replace(true);
        let mut finished = self.finished.subscribe();
        if timeout_at(deadline, finished.wait_for(|finished| *finished))
            .await
            .is_err()
        {
            tracing::warn!(worker = %self.address.name, agent = %self.address.agent, "stop: the agent did not close the connection in time");
        }
    }

    /// Whether the connection to the agent is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// Starts serving a freshly attached link once the local instance exists.
pub(crate) struct LinkStarter {
    link: Arc<AgentLink>,
    socket: ClientSocket,
    out_rx: mpsc::UnboundedReceiver<Encoded>,
}

impl LinkStarter {
    /// Spawns the connection task on the current arbiter.
    pub(crate) fn serve(self, instance: Instance) {
        actix_rt::spawn(serve_link(self.link, self.socket, self.out_rx, instance));
    }
}

/// Serves connections one after the other until the worker stops.
async fn serve_link(
    link: Arc<AgentLink>,
    mut socket: ClientSocket,
    mut out_rx: mpsc::UnboundedReceiver<Encoded>,
    instance: Instance,
) {
    loop {
        serve_connection(&link, socket, &mut out_rx, &instance).await;
        link.connected.store(false, Ordering::Release);
        // What the agent did not answer goes again on the next connection, within the
        // resends and deadlines; the rest gets its one reply now.
        link.outbox.connection_lost();
        if link.stopping.load(Ordering::Acquire) {
            break;
        }
        tracing::warn!(worker = %link.address.name, agent = %link.address.agent, "lost the agent; reconnecting");
        match reconnect(&link).await {
            Some((fresh, welcome)) => {
                socket = fresh;
                // What was queued while the agent was away goes out from the outbox
                // instead, with the time left now; what a restarted agent may have
                // run before it forgot it is answered rather than sent again.
                while out_rx.try_recv().is_ok() {}
                link.binary
                    .store(welcome.form == Form::Binary, Ordering::Release);
                for frame in link.outbox.reconnected(welcome.run) {
                    link.queue_again(frame);
                }
                // The config may have changed while the worker was away.
                instance.set_mpu(Mpu(welcome.mpu));
            }
            None => break,
        }
        link.connected.store(true, Ordering::Release);
        tracing::info!(worker = %link.address.name, agent = %link.address.agent, "attached again");
    }
    link.finished.send_replace(true);
}

/// Tries `attempt` until the agent is ready, waiting with `backoff` between tries, for
/// at most `limit`: the last try is made at the limit.
async fn when_ready<T, F, Fut>(
    agent: &str,
    limit: Duration,
    mut backoff: Backoff,
    mut attempt: F,
) -> Result<T, WorkerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttachFailure>>,
{
    let started = Instant::now();
    let mut told = false;
    loop {
        match attempt().await {
            Ok(attached) => return Ok(attached),
            Err(AttachFailure::Refused(error)) => return Err(error),
            Err(AttachFailure::NotReady) => {
                let waited = started.elapsed();
                let left = limit.saturating_sub(waited);
                if left.is_zero() {
                    return Err(WorkerError::NotReady {
                        agent: agent.to_owned(),
                        waited,
                    });
                }
                if !told {
                    tracing::info!(agent, "the agent has no configs yet; waiting for them");
                    told = true;
                }
                actix_rt::time::sleep(backoff.next_pause().min(left)).await;
            }
        }
    }
}

/// Reconnects with exponential backoff and jitter until it works or the worker stops;
/// an agent that is not ready (it restarted while its proxy is away, with no cache)
/// is waited out like one that is down.
///
/// The pauses stay short (up to a quarter second, plus jitter): while the worker is
/// away, lines wait for it within their deadlines, and a restarted agent should have
/// its workers back well within one. Only this worker's local agent is dialled.
async fn reconnect(link: &AgentLink) -> Option<(ClientSocket, Welcome)> {
    let mut closing = link.closing.subscribe();
    let attempts = async {
        let mut backoff = Backoff::new(RECONNECT_FIRST, RECONNECT_CAP);
        let mut attempt = 0u32;
        loop {
            if link.stopping.load(Ordering::Acquire) {
                return None;
            }
            actix_rt::time::sleep(backoff.next_pause()).await;
            attempt += 1;
            match link.address.connect().await {
                Ok(attached) => return Some(attached),
                Err(AttachFailure::NotReady) => {
                    tracing::debug!(attempt, "reconnect: the agent has no configs yet");
                }
                Err(AttachFailure::Refused(error)) => {
                    tracing::debug!(attempt, error = %error, "reconnect failed");
                }
            }
        }
    };
    tokio::select! {
        socket = attempts => socket,
        _ = closing.wait_for(|closing| *closing) => None,
    }
}

/// The first pause before reconnecting to the agent, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_CAP: Duration = Duration::from_millis(250);

/// Serves one connection until it closes, or until the worker closes it.
async fn serve_connection(
    link: &Arc<AgentLink>,
    mut socket: ClientSocket,
    out_rx: &mut mpsc::UnboundedReceiver<Encoded>,
    instance: &Instance,
) {
    // Results of this connection's steps; dropped with it (see the module's docs).
    let (results, mut results_rx) = mpsc::unbounded_channel::<Encoded>();
    let form = link.form();
    let mut closing = link.closing.subscribe();
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(ws::Frame::Text(payload))) => read_message(false, &payload, |frame| {
                    on_frame(link, instance, &results, frame);
                }),
                Some(Ok(ws::Frame::Binary(payload))) => read_message(true, &payload, |frame| {
                    on_frame(link, instance, &results, frame);
                }),
                Some(Ok(ws::Frame::Ping(bytes))) => {
                    if socket.send(ws::Message::Pong(bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(ws::Frame::Close(reason))) => {
                    // Answer the agent's close, so that it can let the connection go.
                    let _ = timeout_at(
                        Instant::now() + CLOSE_TIMEOUT,
                        socket.send(ws::Message::Close(reason)),
                    )
                    .await;
                    return;
                }
                Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            outgoing = out_rx.recv() => {
                let Some(frame) = outgoing else { return };
                let frames = drain(frame, out_rx).filter_map(|frame| link.in_form(frame, form));
                if write_all(&mut socket, frames).await.is_err() {
                    return;
                }
            }
            Some(result) = results_rx.recv() => {
                if write_batch(&mut socket, result, &mut results_rx).await.is_err() {
                    return;
                }
            }
            _ = closing.wait_for(|closing| *closing) => {
                let deadline = Instant::now() + CLOSE_TIMEOUT;
                if timeout_at(deadline, close_connection(&mut socket, out_rx, &mut results_rx))
                    .await
                    .is_err()
                {
                    tracing::debug!(agent = %link.address.agent, "the close handshake did not finish in time");
                }
                return;
            }
        }
    }
}

/// Handles one frame from the agent: a delivery runs on the instance and its result
/// is queued on `results`, this connection's.
fn on_frame(
    link: &Arc<AgentLink>,
    instance: &Instance,
    results: &mpsc::UnboundedSender<Encoded>,
    frame: Result<Frame, FrameError>,
) {
    match frame {
        Ok(Frame::Deliver { id, ms, msg }) => {
            let step = link.steps.enter();
            let (link, instance, results) = (link.clone(), instance.clone(), results.clone());
            actix_rt::spawn(async move {
                let deadline = deadline_after(Duration::from_millis(ms));
                let restarts_before = instance.restarts();
                let frame = match instance.process(msg, deadline).await {
                    Ok(msg) => Frame::Result { id, msg },
                    // Stopping, it never started the step: another may run it.
                    Err(lost) if lost.stopped => Frame::Unstarted { id },
                    Err(lost) => Frame::Result {
                        id,
                        msg: lost.into_error(),
                    },
                };
                let mut encoded = link.encode(&frame);
                if encoded.is_too_large() {
                    let Frame::Result { msg, .. } = &frame else {
                        unreachable!("only a result can be that large")
                    };
                    let msg = too_large(
                        &msg.kind,
                        "the step's result",
                        encoded.len(),
                        encoded.limit(),
                    );
                    encoded = link.encode(&Frame::Result { id, msg });
                }
                let _ = results.send(encoded);
                let total = instance.restarts();
                if total != restarts_before {
                    let _ = link.out.send(link.encode(&Frame::Restarts { total }));
                }
                drop(step);
            });
        }
        Ok(Frame::Reply { id, msg, fault }) => link.outbox.answered(
            id,
            Some(Terminal {
                message: msg,
                fault,
            }),
        ),
        Ok(Frame::Pushed { id }) => link.outbox.answered(id, None),
        Ok(Frame::Mpu { mpu }) => instance.set_mpu(Mpu(mpu)),
        Ok(other) => tracing::warn!(?other, "unexpected frame from the agent"),
        Err(error) => tracing::warn!(error = %error, "unreadable frame from the agent"),
    }
}

/// Writes every frame already queued, sends a close frame, and waits for the agent's.
async fn close_connection(
    socket: &mut ClientSocket,
    out_rx: &mut mpsc::UnboundedReceiver<Encoded>,
    results_rx: &mut mpsc::UnboundedReceiver<Encoded>,
) {
    let results = std::iter::from_fn(|| results_rx.try_recv().ok());
    let queued: Vec<Encoded> = results
        .chain(std::iter::from_fn(|| out_rx.try_recv().ok()))
        .collect();
    if feed(socket, queued).await.is_err() {
        return;
    }
    let normal = ws::CloseReason::from(ws::CloseCode::Normal);
    if socket.send(ws::Message::Close(Some(normal))).await.is_err() {
        return;
    }
    // Frames the agent sent before it read ours (a delivery it will count as lost) are
    // of no use any more.
    while let Some(Ok(frame)) = socket.next().await {
        if matches!(frame, ws::Frame::Close(_)) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn refused() -> WorkerError {
        WorkerError::Refused {
            agent: "h:1".to_owned(),
            reason: "no".to_owned(),
        }
    }

    #[test]
    fn an_orphaned_number_is_reported_once_by_whichever_of_answer_and_abandon_comes() {
        let waiters = Waiters::<u32>::default();
        // Answered: the caller hears it, and the number is done.
        let (answered, mut rx) = waiters.wait();
        assert_eq!(waiters.resolve(answered, 1), Resolved::Waiter);
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(!waiters.orphan(answered), "no answer is to come");
        // Orphaned: its answer is the orphan's, once.
        let (orphaned, rx) = waiters.wait();
        drop(rx);
        assert!(waiters.orphan(orphaned));
        assert_eq!(waiters.resolve(orphaned, 2), Resolved::Orphan);
        assert_eq!(waiters.resolve(orphaned, 2), Resolved::Unknown);
        // Orphaned and never answered: abandoning says so; a forgotten one is not.
        let (never, _rx) = waiters.wait();
        assert!(waiters.orphan(never));
        let (forgotten, _rx) = waiters.wait();
        waiters.forget(forgotten);
        let (waiting, _rx) = waiters.wait();
        assert_eq!(waiters.abandon_all(), 1);
        assert_eq!(waiters.resolve(waiting, 3), Resolved::Unknown);
        assert!(!waiters.orphan(waiting), "abandoned: no answer is to come");
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_ready_agent_is_tried_again_until_it_is_ready() {
        let tries = Cell::new(0);
        let started = Instant::now();

        let attached = when_ready("h:1", READY_WAIT, ATTACH_BACKOFF, || {
            tries.set(tries.get() + 1);
            let ready = tries.get() == 5;
            async move {
                if ready {
                    Ok("socket")
                } else {
                    Err(AttachFailure::NotReady)
                }
            }
        })
        .await;

        assert_eq!(attached.unwrap(), "socket");
        assert_eq!(tries.get(), 5);
        // 50 + 100 + 200 + 400 ms, each with less than as much again of jitter.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(750) && waited < Duration::from_millis(1_500),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_never_gets_ready_fails_the_start_at_the_limit() {
        let tries = Cell::new(0u32);
        let started = Instant::now();

        let attached: Result<(), _> = when_ready("h:1", READY_WAIT, ATTACH_BACKOFF, || {
            tries.set(tries.get() + 1);
            async { Err(AttachFailure::NotReady) }
        })
        .await;

        let Err(WorkerError::NotReady { agent, waited }) = attached else {
            panic!("{attached:?}")
        };
        assert_eq!((agent.as_str(), waited), ("h:1", READY_WAIT));
        assert_eq!(started.elapsed(), READY_WAIT);
        // About one try a second once the backoff is at its longest (1 s plus jitter).
        assert!((30..=66).contains(&tries.get()), "{}", tries.get());
    }

    #[tokio::test(start_paused = true)]
    async fn any_other_refusal_fails_the_start_at_once() {
        let tries = Cell::new(0);

        let attached: Result<(), _> = when_ready("h:1", READY_WAIT, ATTACH_BACKOFF, || {
            tries.set(tries.get() + 1);
            async { Err(AttachFailure::Refused(refused())) }
        })
        .await;

        assert!(matches!(attached, Err(WorkerError::Refused { .. })));
        assert_eq!(tries.get(), 1);
    }
}
