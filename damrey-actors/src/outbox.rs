//! A worker process's own requests and pushes that its agent has not answered yet, so
//! that they can be resent over a new connection: `Config::retries` times, within their
//! deadline, with the same id — the agent keeps each id once (it answers a resent
//! request with the reply of the line already running or done, and drops a resent
//! push), so a resend never runs a line twice. The agent remembers ids only while it
//! runs: what was sent to an agent that restarted since is answered `ERROR` instead
//! (its line may have run in part), and only what it never received is sent again.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::FastMap;
use crate::deadline::millis_left;
use crate::fault::{Fault, Terminal};
use crate::frame::Frame;
use crate::message::Message;

/// The unanswered requests and unacknowledged pushes of one worker process.
pub(crate) struct Outbox {
    /// Resends allowed per request or push, over reconnects.
    retries: u32,
    entries: Mutex<FastMap<Uuid, Entry>>,
    /// The run of the agent connected last.
    run: Mutex<Uuid>,
}

struct Entry {
    /// The agent run it was sent to (it may have it), or `None` when it was made while
    /// no agent was connected (it waits for one).
    sent_to: Option<Uuid>,
    message: Message,
    /// The worker a request's line starts at; `None`: the sender's next worker.
    to: Option<String>,
    deadline: Instant,
    resends_left: u32,
    /// Who waits for the reply; `None` for a push.
    waiter: Option<oneshot::Sender<Terminal>>,
}

impl Entry {
    fn frame(&self, id: Uuid) -> Frame {
        let (ms, msg) = (millis_left(self.deadline), self.message.clone());
        match self.waiter {
            Some(_) => Frame::Request {
                id,
                ms,
                msg,
                to: self.to.clone(),
            },
            None => Frame::Push { id, ms, msg },
        }
    }
}

impl Outbox {
    /// An outbox that resends each entry up to `retries` times, connected to the agent
    /// run `run`.
    pub(crate) fn new(retries: u32, run: Uuid) -> Self {
        Outbox {
            retries,
            entries: Mutex::default(),
            run: Mutex::new(run),
        }
    }

    fn entries(&self) -> MutexGuard<'_, FastMap<Uuid, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a request whose line starts at worker `to` (`None`: the sender's next
    /// worker); its id, the receiver of its reply and its frame.
    pub(crate) fn request(
        &self,
        message: Message,
        to: Option<String>,
        deadline: Instant,
    ) -> (Uuid, oneshot::Receiver<Terminal>, Frame) {
        let (tx, rx) = oneshot::channel();
        let (id, frame) = self.record(message, to, deadline, Some(tx));
        (id, rx, frame)
    }

    /// Records a push until the agent acknowledges it; its id and frame.
    pub(crate) fn push(&self, message: Message, deadline: Instant) -> (Uuid, Frame) {
        self.record(message, None, deadline, None)
    }

    fn record(
        &self,
        message: Message,
        to: Option<String>,
        deadline: Instant,
        waiter: Option<oneshot::Sender<Terminal>>,
    ) -> (Uuid, Frame) {
        let id = Uuid::new_v4();
        let entry = Entry {
            sent_to: self.connected_run(),
            message,
            to,
            deadline,
            resends_left: self.retries,
            waiter,
        };
        let frame = entry.frame(id);
        self.entries().insert(id, entry);
        (id, frame)
    }

    /// The agent's reply to request `id` (or its ack of push `id`).
    pub(crate) fn answered(&self, id: Uuid, reply: Option<Terminal>) {
        let waiter = self.entries().remove(&id).and_then(|entry| entry.waiter);
        if let (Some(waiter), Some(reply)) = (waiter, reply) {
            let _ = waiter.send(reply);
        }
    }

    /// Request `id`'s caller stopped waiting (its deadline passed).
    pub(crate) fn forget(&self, id: Uuid) {
        self.entries().remove(&id);
    }

    /// The connection was lost: entries with resends left and time left are kept for
    /// [`Outbox::resend`]; the others end now — a request with `ERROR`, since the agent
    /// may or may not have run it.
    pub(crate) fn connection_lost(&self) {
        self.disconnected();
        let now = Instant::now();
        let mut entries = self.entries();
        entries.retain(|id, entry| {
            if entry.resends_left > 0 && entry.deadline > now {
                entry.resends_left -= 1;
                return true;
            }
            match entry.waiter.take() {
                Some(waiter) => {
                    let _ = waiter.send(Terminal::fault(
                        entry.message.kind.clone(),
                        Fault::Unreachable,
                        "the connection to the agent was lost before the reply, and the resends are used up",
                    ));
                }
                None => tracing::warn!(message_id = %id, "a push was lost with the connection to the agent"),
            }
            false
        });
    }

    /// The run of the agent connected now, if any.
    fn connected_run(&self) -> Option<Uuid> {
        let run = self
            .run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (!run.is_nil()).then_some(*run)
    }

    /// Connected again, to agent run `run`: the frames to send (again). Entries sent to
    /// an earlier run end now — a request with `ERROR`: that agent may have run part
    /// of its line before it stopped, and the new one would not know it.
    pub(crate) fn reconnected(&self, run: Uuid) -> Vec<Frame> {
        *self
            .run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = run;
        let mut entries = self.entries();
        entries.retain(|id, entry| {
            if entry.sent_to.is_none_or(|sent_to| sent_to == run) {
                return true;
            }
            match entry.waiter.take() {
                Some(waiter) => {
                    let _ = waiter.send(Terminal::fault(
                        entry.message.kind.clone(),
                        Fault::Unreachable,
                        "the agent restarted while it held this request; it may have run part of its line, so it is not sent again",
                    ));
                }
                None => tracing::warn!(message_id = %id, "a push was lost with an agent that restarted"),
            }
            false
        });
        entries
            .iter_mut()
            .map(|(id, entry)| {
                entry.sent_to = Some(run);
                entry.frame(*id)
            })
            .collect()
    }

    /// No agent is connected: what is made now waits for the next one.
    pub(crate) fn disconnected(&self) {
        *self
            .run
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Uuid::nil();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn a_request_is_resent_with_its_id_until_the_resends_are_used_up() {
        let run = Uuid::new_v4();
        let outbox = Outbox::new(1, run);
        let (id, rx, first) = outbox.request(Message::request("t", ["1"]), None, later());
        outbox.connection_lost();
        let resent = outbox.reconnected(run);
        let Frame::Request { id: resent_id, .. } = &resent[0] else {
            panic!("a request: {resent:?}")
        };
        assert!(matches!(first, Frame::Request { id: first_id, .. } if first_id == id));
        assert_eq!(*resent_id, id);

        outbox.connection_lost();
        assert!(outbox.reconnected(run).is_empty());
        let reply = rx.await.unwrap();
        assert_eq!(reply.message.tag, crate::Tag::Error);
        assert_eq!(reply.fault, Some(Fault::Unreachable));
    }

    #[tokio::test]
    async fn an_answered_request_and_an_acknowledged_push_are_not_resent() {
        let run = Uuid::new_v4();
        let outbox = Outbox::new(3, run);
        let (id, rx, _) = outbox.request(Message::request("t", ["1"]), None, later());
        let (_, push) = outbox.push(Message::request("p", ["2"]), later());
        let Frame::Push { id: push_id, .. } = push else {
            panic!("a push")
        };
        outbox.answered(id, Some(Message::response("t", ["ok"]).into()));
        outbox.answered(push_id, None);
        outbox.connection_lost();
        assert!(outbox.reconnected(run).is_empty());
        assert_eq!(rx.await.unwrap().message, Message::response("t", ["ok"]));
    }

    #[tokio::test]
    async fn an_entry_past_its_deadline_is_not_resent() {
        let run = Uuid::new_v4();
        let outbox = Outbox::new(3, run);
        let _ = outbox.push(Message::request("p", ["2"]), Instant::now());
        outbox.connection_lost();
        assert!(outbox.reconnected(run).is_empty());
    }

    #[tokio::test]
    async fn what_a_restarted_agent_may_have_run_is_answered_and_only_the_rest_resent() {
        let outbox = Outbox::new(3, Uuid::new_v4());
        let (_, sent, _) = outbox.request(Message::request("t", ["sent"]), None, later());
        outbox.connection_lost();
        let (waiting_id, _waiting, _) =
            outbox.request(Message::request("t", ["waiting"]), None, later());

        let resent = outbox.reconnected(Uuid::new_v4());

        assert_eq!(sent.await.unwrap().message.tag, crate::Tag::Error);
        assert_eq!(resent.len(), 1);
        assert!(matches!(resent[0], Frame::Request { id, .. } if id == waiting_id));
    }
}
