//! Links to other agents: one persistent, authenticated WebSocket per peer (and per
//! agent thread, so that a hand-off never crosses threads), opened on first use and
//! reopened when lost. Envelopes and terminal replies go out as frames that the peer
//! acknowledges. Each call is one attempt; the router resends (with backoff, within the
//! deadline), and the error says whether the peer may have taken the frame. The
//! receiver remembers the `(id, leg)` of the envelopes it has taken, so a resent
//! envelope never runs a step twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use actix_http::ws;
use actix_ws::{AggregatedMessage, Session};
use damrey_actors::deadline::deadline_after;
use damrey_actors::link::{ClientSocket, agreed_form, offer_binary, write_batch};
use damrey_actors::{BoxFuture, Envelope, Remote, RemoteError, Router, Terminal};
use damrey_service::credential::Secret;
use damrey_service::tls;
use damrey_wire::binary::{Encoded, Form, FrameError, LinkFrame, read_message};
use damrey_wire::frame::MAX_FRAME;
use damrey_wire::peer::{PeerFrame, RUN_HEADER};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use uuid::Uuid;

use crate::known::KnownAgents;
use crate::shutdown::Shutdown;
use crate::socket::{Connection, write};

/// How long a frame waits for its ack before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long opening a link may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The live connection to a peer: its writer, the peer's run, and the form of its
/// frames.
#[derive(Clone)]
struct Live {
    out: mpsc::UnboundedSender<Encoded>,
    run: Uuid,
    form: Form,
}

/// Unacknowledged legs past their deadline are swept out when this many are kept.
const UNACKED_SWEEP: usize = 1_024;

/// How long after a failed connect other attempts fail at once with its reason.
const FAIL_FAST: Duration = Duration::from_millis(100);

/// Why there is no live link to a peer. It is cloned to the lines that queue behind a
/// failed connect and kept in [`PeerLink`]'s mutex, which every agent thread may read,
/// so it must be `Clone + Send + Sync`; awc's `WsClientError` is neither, and only its
/// text is kept. It ends as the reason of [`RemoteError::Unreachable`].
#[derive(Debug, Clone, thiserror::Error)]
enum LinkError {
    /// Another line's connect held the link past this line's deadline.
    #[error("another connect to the agent is still under way")]
    Busy,
    /// The WebSocket could not be opened.
    #[error("cannot open a link: {ws_client_error}")]
    Open {
        /// awc's `WsClientError`, rendered.
        ws_client_error: String,
    },
    /// The peer's answer lacks its run.
    #[error("the agent did not say its run ({RUN_HEADER})")]
    NoRun,
    /// The task opening the link ended without an answer.
    #[error("the link's thread is gone")]
    ThreadGone,
    /// The connect did not finish in time.
    #[error("connecting took too long")]
    TimedOut,
    /// The link closed before the frame was written.
    #[error("the link closed")]
    Closed,
}

/// The links from this agent to every peer it has talked to; the router's [`Remote`].
pub struct PeerLinks {
    token: Option<Secret>,
    /// Links go over TLS (WSS) with configs of this dialer: each presents the agent's
    /// certificate and takes only a peer whose certificate names the agent dialled.
    tls: Option<tls::AgentDialer>,
    /// Each agent thread has its own link to each peer: awc connections stay on the
    /// thread that opened them, and a hand-off then never waits for another thread.
    /// By thread, then by peer, so that finding a link allocates nothing.
    links: Mutex<HashMap<ThreadId, HashMap<String, Arc<PeerLink>>>>,
}

struct PeerLink {
    agent: String,
    /// The TLS config of links to this agent, if they go over TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The live connection, if any; the lock also serializes reconnects.
    writer: tokio::sync::Mutex<Option<Live>>,
    /// The envelopes written and not acknowledged yet, by `(id, leg)`: the peer's run
    /// they went to, and until when they may be resent. By ids other agents chose:
    /// std's hasher, which resists chosen keys.
    unacked: Mutex<HashMap<(Uuid, u32), (Uuid, Instant)>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_seq: AtomicU64,
    /// When the last connect failed, and why.
    failed: Mutex<Option<(Instant, LinkError)>>,
}

impl PeerLinks {
    /// Links that authenticate with `token`, over TLS with `tls`. They must be used from
    /// actix arbiters (the agent's HTTP workers), where connections live.
    pub fn new(token: Option<Secret>, tls: Option<tls::AgentDialer>) -> Self {
        PeerLinks {
            token,
            tls,
            links: Mutex::default(),
        }
    }

    fn link(&self, agent: &str) -> Arc<PeerLink> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = links.entry(std::thread::current().id()).or_default();
        if let Some(link) = mine.get(agent) {
            return link.clone();
        }
        let link = Arc::new(PeerLink {
            agent: agent.to_owned(),
            tls: self.tls.as_ref().map(|dialer| dialer.config_for(agent)),
            writer: tokio::sync::Mutex::new(None),
            acks: Mutex::default(),
            next_seq: AtomicU64::new(0),
            failed: Mutex::default(),
            unacked: Mutex::default(),
        });
        mine.insert(agent.to_owned(), link.clone());
        link
    }

    /// Sends the frame made by `frame` over the link to `agent` once, and waits for its
    /// ack until `deadline` (or the ack timeout).
    fn deliver(
        &self,
        agent: &str,
        deadline: Instant,
        leg: Option<(Uuid, u32)>,
        frame: impl FnOnce(u64) -> PeerFrame,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let link = self.link(agent);
        let token = self.token.clone();
        let seq = link.next_seq.fetch_add(1, Ordering::Relaxed);
        let frame = frame(seq);
        Box::pin(async move { link.send(frame, seq, deadline, leg, &token).await })
    }
}

impl Remote for PeerLinks {
    fn forward(
        &self,
        agent: &str,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        let deadline = deadline_after(Duration::from_millis(envelope.remaining_ms));
        let leg = Some((envelope.id, envelope.leg));
        self.deliver(agent, deadline, leg, |seq| PeerFrame::Forward {
            seq,
            envelope,
        })
    }

    fn reply(
        &self,
        origin: &str,
        id: Uuid,
        reply: Terminal,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        // The router bounds the resends by the request's deadline; one attempt waits
        // for its ack as long as any.
        let deadline = Instant::now() + ACK_TIMEOUT;
        // A reply is kept once by its nature: the origin resolves a request once.
        self.deliver(origin, deadline, None, |seq| PeerFrame::Reply {
            seq,
            id,
            msg: reply.message,
            fault: reply.fault,
        })
    }
}

impl PeerLink {
    fn acks(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.acks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unacked(&self) -> MutexGuard<'_, HashMap<(Uuid, u32), (Uuid, Instant)>> {
        self.unacked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `leg` is written to the peer's run `run`. A leg written to an
    /// earlier run, which may have taken it and then stopped, is not written to a new
    /// one: that one would not know it, and run its step again.
    fn written(&self, leg: (Uuid, u32), run: Uuid, deadline: Instant) -> Result<(), RemoteError> {
        let mut unacked = self.unacked();
        let now = Instant::now();
        if unacked.len() >= UNACKED_SWEEP {
            unacked.retain(|_, (_, until)| *until > now);
        }
        match unacked.get(&leg) {
            Some((earlier, _)) if *earlier != run => Err(RemoteError::Restarted {
                agent: self.agent.clone(),
            }),
            _ => {
                unacked.insert(leg, (run, deadline));
                Ok(())
            }
        }
    }

    /// One attempt: (re)connect if needed, send, wait for the ack. A frame over the
    /// link's limit (`Encoded::limit`) is refused before anything is written: the peer
    /// would drop the whole link on it.
    async fn send(
        self: &Arc<Self>,
        frame: PeerFrame,
        seq: u64,
        deadline: Instant,
        leg: Option<(Uuid, u32)>,
        token: &Option<Secret>,
    ) -> Result<(), RemoteError> {
        let unreachable = |error: LinkError| RemoteError::Unreachable {
            agent: self.agent.clone(),
            reason: error.to_string(),
        };
        let live = self.writer(deadline, token).await.map_err(unreachable)?;
        let encoded = frame.encode(live.form);
        if encoded.is_too_large() {
            return Err(RemoteError::TooLarge {
                agent: self.agent.clone(),
                bytes: encoded.len(),
                limit: encoded.limit(),
            });
        }
        if let Some(leg) = leg {
            self.written(leg, live.run, deadline)?;
        }
        let (tx, rx) = oneshot::channel();
        self.acks().insert(seq, tx);
        if live.out.send(encoded).is_err() {
            self.acks().remove(&seq);
            return Err(unreachable(LinkError::Closed));
        }
        let outcome = timeout_at(deadline.min(Instant::now() + ACK_TIMEOUT), rx).await;
        self.acks().remove(&seq);
        if let (Some(leg), Ok(Ok(()))) = (leg, &outcome) {
            self.unacked().remove(&leg);
        }
        let unacknowledged = |reason: &str| RemoteError::Unacknowledged {
            agent: self.agent.clone(),
            reason: reason.to_owned(),
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(unacknowledged("the link closed before the ack")),
            Err(_) => Err(unacknowledged("no ack in time")),
        }
    }

    /// The live connection's writer, connecting first when there is none.
    async fn writer(
        self: &Arc<Self>,
        deadline: Instant,
        token: &Option<Secret>,
    ) -> Result<Live, LinkError> {
        // Bounded, so that a line never waits past its deadline behind other lines'
        // connects to a peer that does not answer.
        let mut writer = timeout_at(deadline, self.writer.lock())
            .await
            .map_err(|_| LinkError::Busy)?;
        if let Some(live) = writer.as_ref().filter(|live| !live.out.is_closed()) {
            return Ok(live.clone());
        }
        // Lines that queued behind a connect that just failed fail at once, rather than
        // each try (and wait for) a connect of its own in turn.
        let failed = self
            .failed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some((_, reason)) = failed.filter(|(at, _)| at.elapsed() < FAIL_FAST) {
            return Err(reason);
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let (link, token) = (self.clone(), token.clone());
        actix_rt::spawn(async move {
            match connect(&link.agent, token.as_ref(), link.tls.as_ref()).await {
                Ok((socket, run, form)) => {
                    let (out, out_rx) = mpsc::unbounded_channel();
                    if ready_tx.send(Ok(Live { out, run, form })).is_ok() {
                        link.serve(socket, out_rx).await;
                    }
                }
                Err(reason) => {
                    let _ = ready_tx.send(Err(reason));
                }
            }
        });
        let wait = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let outcome = match timeout_at(wait, ready_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LinkError::ThreadGone),
            Err(_) => Err(LinkError::TimedOut),
        };
        let live = outcome.inspect_err(|reason| {
            *self
                .failed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((Instant::now(), reason.clone()));
        })?;
        *writer = Some(live.clone());
        Ok(live)
    }

    /// Serves one connection: writes frames, reads acks, answers pings.
    async fn serve(&self, mut socket: ClientSocket, mut out_rx: mpsc::UnboundedReceiver<Encoded>) {
        let on_frame = |frame| match frame {
            Ok(PeerFrame::Ack { seqs }) => {
                let mut acks = self.acks();
                for seq in seqs {
                    if let Some(waiter) = acks.remove(&seq) {
                        let _ = waiter.send(());
                    }
                }
            }
            Ok(other) => {
                tracing::warn!(agent = %self.agent, ?other, "unexpected frame on an outgoing link")
            }
            Err(error) => {
                tracing::warn!(agent = %self.agent, error = %error, "unreadable frame from a peer")
            }
        };
        loop {
            tokio::select! {
                incoming = socket.next() => match incoming {
                    Some(Ok(ws::Frame::Text(payload))) => read_message(false, &payload, on_frame),
                    Some(Ok(ws::Frame::Binary(payload))) => read_message(true, &payload, on_frame),
                    Some(Ok(ws::Frame::Ping(bytes))) => {
                        if socket.send(ws::Message::Pong(bytes)).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(ws::Frame::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                outgoing = out_rx.recv() => {
                    let Some(frame) = outgoing else { break };
                    if write_batch(&mut socket, frame, &mut out_rx).await.is_err() {
                        break;
                    }
                }
            }
        }
        tracing::info!(agent = %self.agent, "link to peer closed");
    }
}

/// Opens a link to `agent`, offering binary frames; the socket, the peer's run and the
/// form of the frames (from its answer's headers).
async fn connect(
    agent: &str,
    token: Option<&Secret>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(ClientSocket, Uuid, Form), LinkError> {
    let scheme = tls::ws_scheme(tls.is_some());
    let mut request = offer_binary(
        tls::client(CONNECT_TIMEOUT, tls)
            .ws(format!("{scheme}://{agent}/peer"))
            .max_frame_size(MAX_FRAME),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token.expose());
    }
    match request.connect().await {
        Ok((response, socket)) => {
            let run = response
                .headers()
                .get(RUN_HEADER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
                .ok_or(LinkError::NoRun)?;
            Ok((socket, run, agreed_form(response.headers())))
        }
        Err(error) => Err(LinkError::Open {
            ws_client_error: error.to_string(),
        }),
    }
}

/// Envelopes taken recently, by `(id, leg)`, so that a resent envelope is acknowledged
/// but not run again, while a line that comes back through this agent (a new leg) is.
/// Each is remembered until its deadline plus a slack: its sender resends only until
/// then, however long the deadline.
#[derive(Default)]
pub struct SeenIds {
    inner: Mutex<SeenInner>,
}

/// An envelope's `(id, leg)`.
type Leg = (Uuid, u32);

#[derive(Default)]
struct SeenInner {
    ids: HashSet<Leg>,
    /// When each may be forgotten, soonest first.
    expiry: BinaryHeap<Reverse<(Instant, Leg)>>,
}

/// How long after an envelope's deadline it is still remembered (its sender's clock may
/// run behind this agent's view of the deadline).
const SEEN_SLACK: Duration = Duration::from_secs(5);

impl SeenIds {
    /// Records `id`'s leg `leg`, whose deadline is `remaining` from now; `false` when it
    /// was seen already.
    pub fn first_time(&self, id: Uuid, leg: u32, remaining: Duration) -> bool {
        let now = Instant::now();
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(&Reverse((until, old))) = inner.expiry.peek() {
            if until > now {
                break;
            }
            inner.expiry.pop();
            inner.ids.remove(&old);
        }
        if !inner.ids.insert((id, leg)) {
            return false;
        }
        let until = now + remaining.saturating_add(SEEN_SLACK);
        inner.expiry.push(Reverse((until, (id, leg))));
        true
    }
}

/// Serves a link another agent opened to this one: acknowledges every frame (but an
/// envelope whose origin it does not take, which it refuses), runs new envelopes, and
/// resolves replies to requests that started here. Acks are gathered while frames keep
/// arriving and sent as one frame when the link goes quiet. The link closes when this
/// agent stops, after acknowledging what it took.
///
/// `peer` is the agent the link's client certificate names, under mutual TLS. An
/// envelope's origin (where its line's reply goes) is taken when it is that agent, as
/// its certificate proves; any other origin only when it is an agent the proxy lists:
/// a line may have started at an agent before the one handing it over.
pub async fn serve_incoming(
    router: Router,
    seen: Arc<SeenIds>,
    known: Arc<KnownAgents>,
    shutdown: Shutdown,
    peer: Option<String>,
    connection: Connection,
) {
    let taker = Taker {
        router,
        seen,
        known,
        shutdown: shutdown.clone(),
        peer,
    };
    let Connection {
        mut session,
        stream,
        form,
    } = connection;
    let mut stream = stream.max_frame_size(MAX_FRAME).aggregate_continuations();
    let mut closing = shutdown.on_closing();
    let mut unacked = Vec::new();
    loop {
        let incoming = match stream.recv().now_or_never() {
            Some(incoming) => incoming,
            None => {
                if send_acks(&mut session, form, &mut unacked).await.is_err() {
                    break;
                }
                tokio::select! {
                    incoming = stream.recv() => incoming,
                    _ = closing.raised() => break,
                }
            }
        };
        match incoming {
            Some(Ok(AggregatedMessage::Text(text))) => {
                read_message(false, text.as_bytes(), |frame| {
                    taker.take(frame, &mut unacked)
                });
            }
            Some(Ok(AggregatedMessage::Binary(bytes))) => {
                read_message(true, &bytes, |frame| taker.take(frame, &mut unacked));
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                if session.pong(&bytes).await.is_err() {
                    break;
                }
            }
            Some(Ok(AggregatedMessage::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    let _ = send_acks(&mut session, form, &mut unacked).await;
    let _ = session.close(None).await;
}

/// What an incoming link does with the frames it reads.
struct Taker {
    router: Router,
    seen: Arc<SeenIds>,
    known: Arc<KnownAgents>,
    shutdown: Shutdown,
    /// The agent the link's client certificate names, under mutual TLS.
    peer: Option<String>,
}

impl Taker {
    /// Takes one frame: runs a new envelope, resolves a reply; notes in `unacked` what
    /// is to be acknowledged.
    fn take(&self, frame: Result<PeerFrame, FrameError>, unacked: &mut Vec<u64>) {
        match frame {
            Ok(PeerFrame::Forward { envelope, .. })
                if self.peer.as_deref() != Some(envelope.origin.as_str())
                    && !self.known.knows(&envelope.origin) =>
            {
                // Not acknowledged: a real agent resends it, and is listed by then.
                self.known.unknown(&envelope.origin);
            }
            Ok(PeerFrame::Forward { seq, envelope }) => {
                unacked.push(seq);
                let remaining = Duration::from_millis(envelope.remaining_ms);
                if self.seen.first_time(envelope.id, envelope.leg, remaining) {
                    let (router, replying) = (self.router.clone(), self.shutdown.reply());
                    actix_rt::spawn(async move {
                        router.accept(envelope).await;
                        drop(replying);
                    });
                } else {
                    tracing::debug!(message_id = %envelope.id, "dropped a duplicate envelope");
                }
            }
            Ok(PeerFrame::Reply {
                seq,
                id,
                msg,
                fault,
            }) => {
                unacked.push(seq);
                self.router.complete(
                    id,
                    Terminal {
                        message: msg,
                        fault,
                    },
                );
            }
            Ok(PeerFrame::Ack { .. }) => {
                tracing::warn!("unexpected ack on an incoming link");
            }
            Err(error) => tracing::warn!(error = %error, "unreadable frame from a peer"),
        }
    }
}

/// Acknowledges the frames taken since the last ack, if any, in one frame.
async fn send_acks(
    session: &mut Session,
    form: Form,
    unacked: &mut Vec<u64>,
) -> Result<(), actix_ws::Closed> {
    let acks = unacked.chunks(ACKS_PER_FRAME).map(|seqs| {
        PeerFrame::Ack {
            seqs: seqs.to_vec(),
        }
        .encode(form)
    });
    let written = write(session, acks).await;
    unacked.clear();
    written
}

/// The most frame numbers one ack carries: about 210 KiB in JSON (up to 21 bytes each),
/// well under either form's frame limit however long frames kept arriving.
const ACKS_PER_FRAME: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leg_written_to_one_run_of_a_peer_is_never_written_to_the_next() {
        let link = PeerLinks::new(None, None).link("10.0.0.2:7701");
        let (leg, deadline) = ((Uuid::new_v4(), 1), Instant::now() + Duration::from_secs(5));
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

        assert!(link.written(leg, first, deadline).is_ok());
        assert!(
            link.written(leg, first, deadline).is_ok(),
            "a resend to the same run"
        );
        assert!(matches!(
            link.written(leg, second, deadline),
            Err(RemoteError::Restarted { .. })
        ));
        assert!(
            link.written((leg.0, 2), second, deadline).is_ok(),
            "another leg"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_leg_is_new_once_then_seen_until_its_deadline_and_the_slack() {
        let seen = SeenIds::default();
        let id = Uuid::new_v4();
        let remaining = Duration::from_secs(300);
        assert!(seen.first_time(id, 1, remaining));
        assert!(!seen.first_time(id, 1, remaining));
        assert!(
            seen.first_time(id, 2, remaining),
            "a new leg of the same line is taken"
        );
        assert!(seen.first_time(Uuid::new_v4(), 1, remaining));
        tokio::time::advance(remaining).await;
        assert!(!seen.first_time(id, 1, remaining), "still within the slack");
        tokio::time::advance(SEEN_SLACK).await;
        assert!(seen.first_time(id, 1, remaining));
    }
}
