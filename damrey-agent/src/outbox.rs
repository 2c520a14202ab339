//! The agent's memory of worker processes' own requests and pushes, by id, so that one
//! resent over a new connection (the worker's `Config::retries`) runs its line once: a
//! resent request gets the reply of the line already running (sent to the connection
//! it came in on last) or already done; a resent push is dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use damrey_actors::Terminal;
use tokio::time::Instant;
use uuid::Uuid;

/// The longest an ended request or push is remembered.
const REMEMBER_AT_MOST: Duration = Duration::from_secs(60);

/// Requests and pushes from worker processes, remembered until their deadline after
/// they end (a worker resends only within the deadline). `R` is where a request's reply
/// goes (a worker session's outgoing queue).
pub struct OutboxLedger<R> {
    inner: Mutex<Ledger<R>>,
}

/// Two tables by the ids workers chose (std's hasher, which resists chosen keys): an
/// entry of one whose line runs is the size of where its reply goes, not of a reply.
struct Ledger<R> {
    /// Lines that run, by request or push: where the reply goes (the last connection
    /// the request came in on).
    running: HashMap<Uuid, R>,
    /// Lines that ended, with their reply (`None` for a push).
    done: HashMap<Uuid, Option<Terminal>>,
    /// When each ended entry may be forgotten, soonest first.
    expiry: BinaryHeap<Reverse<(Instant, Uuid)>>,
}

/// What to do with a request or push that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Never seen: run its line.
    New,
    /// Its line runs already; the reply will go to the connection it came in on now.
    Running,
    /// Its line ended: answer this reply again (a push: nothing to do).
    Done(Option<Terminal>),
}

impl<R: Clone> Default for OutboxLedger<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Clone> OutboxLedger<R> {
    /// An empty ledger.
    pub fn new() -> Self {
        OutboxLedger {
            inner: Mutex::new(Ledger {
                running: HashMap::new(),
                done: HashMap::new(),
                expiry: BinaryHeap::new(),
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Ledger<R>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records request or push `id`, whose reply (if any) goes to `reply_to`.
    pub fn arrive(&self, id: Uuid, reply_to: R) -> Arrival {
        let mut inner = self.inner();
        inner.expire(Instant::now());
        if let Some(reply) = inner.done.get(&id) {
            return Arrival::Done(reply.clone());
        }
        match inner.running.insert(id, reply_to) {
            None => Arrival::New,
            Some(_earlier) => Arrival::Running,
        }
    }

    /// Line `id` ended with `reply` (`None` for a push), to be remembered until
    /// `until` (its deadline, past which the worker resends nothing); where the reply
    /// goes now.
    pub fn finish(&self, id: Uuid, reply: Option<Terminal>, until: Instant) -> Option<R> {
        let mut inner = self.inner();
        let now = Instant::now();
        inner.expire(now);
        // A resend comes within seconds of a reconnect; a long deadline need not keep
        // a reply (up to a frame) for its whole length.
        let until = until.min(now + REMEMBER_AT_MOST);
        inner.done.insert(id, reply);
        inner.expiry.push(Reverse((until, id)));
        inner.running.remove(&id)
    }

    /// Entries remembered now (running or ended).
    pub fn len(&self) -> usize {
        let inner = self.inner();
        inner.running.len() + inner.done.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<R> Ledger<R> {
    fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((until, id))) = self.expiry.peek() {
            if until > now {
                break;
            }
            self.expiry.pop();
            self.done.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resent_request_follows_its_running_line_and_then_gets_its_reply_again() {
        let ledger = OutboxLedger::new();
        let until = Instant::now() + Duration::from_secs(60);
        let id = Uuid::new_v4();
        assert_eq!(ledger.arrive(id, "first"), Arrival::New);
        assert_eq!(ledger.arrive(id, "second"), Arrival::Running);
        let reply = Terminal::from(damrey_actors::Message::response("t", ["1"]));
        assert_eq!(
            ledger.finish(id, Some(reply.clone()), until),
            Some("second")
        );
        assert_eq!(ledger.arrive(id, "third"), Arrival::Done(Some(reply)));
        assert_eq!(ledger.arrive(Uuid::new_v4(), "other"), Arrival::New);
    }

    #[tokio::test(start_paused = true)]
    async fn ended_entries_are_forgotten_after_their_deadline() {
        let ledger = OutboxLedger::new();
        let id = Uuid::new_v4();
        ledger.arrive(id, ());
        ledger.finish(id, None, Instant::now() + Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(ledger.arrive(Uuid::new_v4(), ()), Arrival::New);
        assert_eq!(ledger.len(), 1);
    }
}
