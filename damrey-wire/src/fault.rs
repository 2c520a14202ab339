//! Why the runtime, not a worker's handler, ended a line with `ERROR`.
//!
//! A message stays a list of strings (DESIGN §2); the cause of an `ERROR` the router
//! made travels beside it — on the worker ⇄ agent `reply` frame, between agents, and as
//! the status of the agent's `/call` — so that a front door can tell a server-side
//! failure (5xx) from an error in the request's own data (4xx).

use serde::{Deserialize, Serialize};

use crate::message::{Message, Tag};

/// The cause of an `ERROR` the runtime made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The configs cannot carry the line: no worker of that name, a type the worker
    /// has no command for, or a loop that reached the hop limit.
    Config,
    /// The worker has no live instance.
    NoInstance,
    /// Every instance of the worker is at its limit.
    Overloaded,
    /// An agent or the worker's instance could not be reached or was lost with the
    /// step, or the reply was too large to carry back.
    Unreachable,
    /// The worker's handler panicked processing the step (its actor was restarted): a
    /// bug on the server's side, whatever the request.
    Panic,
    /// A fault this build does not know, named by a newer agent or worker: read as a
    /// broken mesh (502), so that a new fault never makes a reply unreadable.
    #[serde(other)]
    Unknown,
}

/// The response header in which a gateway names the [`Fault`] of a 5xx `ERROR`.
pub const FAULT_HEADER: &str = "damrey-fault";

impl Fault {
    /// The fault's name on the wire and in [`FAULT_HEADER`].
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Config => "config",
            Fault::NoInstance => "no_instance",
            Fault::Overloaded => "overloaded",
            Fault::Unreachable => "unreachable",
            Fault::Panic => "panic",
            Fault::Unknown => "unknown",
        }
    }

    /// The HTTP status a gateway answers for it: `500` when a handler panicked, `502`
    /// when the mesh is broken (configs, unreachable agents or instances), `503` when it
    /// is short of capacity (no instance, overloaded) and trying later may help.
    pub fn status(self) -> u16 {
        match self {
            Fault::Panic => 500,
            Fault::Config | Fault::Unreachable | Fault::Unknown => 502,
            Fault::NoInstance | Fault::Overloaded => 503,
        }
    }
}

/// A line's terminal reply, and the [`Fault`] behind it when the runtime made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// The terminal reply.
    pub message: Message,
    /// Set for an `ERROR` the runtime made; `None` for a reply a worker made, and for
    /// `TIMEOUT` and `STOP` (whose tags say it all).
    pub fault: Option<Fault>,
}

/// What follows the worker's name in the `ERROR` the runtime answers for a step whose
/// handler panicked.
const PANICKED: &str = " panicked processing this message";

/// The `ERROR` the runtime answers for a step whose handler panicked:
/// `["ERROR","echo","worker panicky panicked processing this message and was restarted"]`
/// with `then` = `" and was restarted"`. The text crosses a process (a worker's host
/// makes it, its agent's router reads it with [`panicked_worker`]), so both live here.
pub fn panic_error(kind: impl Into<String>, worker: &str, then: &str) -> Message {
    Message::error(kind, format!("worker {worker}{PANICKED}{then}"))
}

/// The worker whose handler panicked, when `reply` is the runtime's panic `ERROR` (see
/// [`panic_error`]). A handler could return the same words; only the outlier rules and
/// the HTTP status take it at its word.
pub fn panicked_worker(reply: &Message) -> Option<&str> {
    if reply.tag != Tag::Error {
        return None;
    }
    let (worker, _) = reply
        .args
        .first()?
        .strip_prefix("worker ")?
        .split_once(PANICKED)?;
    Some(worker)
}

impl Terminal {
    /// An `ERROR` of kind `kind` the runtime made for `fault`.
    pub fn fault(kind: impl Into<String>, fault: Fault, reason: impl Into<String>) -> Self {
        Terminal {
            message: Message::error(kind, reason),
            fault: Some(fault),
        }
    }
}

impl Terminal {
    /// The HTTP status a gateway answers the reply with: `RESPONSE` (or a final
    /// `REQUEST`) 200; a handler's `ERROR` 422 (the request's own data); an `ERROR` the
    /// runtime made its [`Fault::status`]; `STOP` 503; `TIMEOUT` 504.
    pub fn http_status(&self) -> u16 {
        match (self.message.tag, self.fault) {
            (Tag::Request | Tag::Response, _) => 200,
            (Tag::Error, Some(fault)) => fault.status(),
            (Tag::Error, None) => 422,
            (Tag::Stop, _) => 503,
            (Tag::Timeout, _) => 504,
        }
    }
}

impl From<Message> for Terminal {
    fn from(message: Message) -> Self {
        Terminal {
            message,
            fault: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_error_names_its_worker_and_nothing_else_does() {
        let made = panic_error("echo", "panicky", " and was restarted");
        assert_eq!(
            made,
            Message::error(
                "echo",
                "worker panicky panicked processing this message and was restarted"
            )
        );
        assert_eq!(panicked_worker(&made), Some("panicky"));
        assert_eq!(panicked_worker(&Message::error("echo", "bad a")), None);
        assert_eq!(
            panicked_worker(&Message::response(
                "echo",
                ["worker x panicked processing this message"]
            )),
            None
        );
    }

    #[test]
    fn a_fault_a_newer_build_names_is_read_as_unknown() {
        let fault: Fault = serde_json::from_str("\"quota\"").unwrap();
        assert_eq!((fault, fault.status()), (Fault::Unknown, 502));
    }

    #[test]
    fn shortage_is_503_a_broken_mesh_502_and_a_panic_500() {
        assert_eq!(
            [
                Fault::Config,
                Fault::NoInstance,
                Fault::Overloaded,
                Fault::Unreachable,
                Fault::Panic,
            ]
            .map(Fault::status),
            [502, 503, 503, 502, 500]
        );
        let status = |message: Message, fault| Terminal { message, fault }.http_status();
        assert_eq!(status(Message::response("t", ["1"]), None), 200);
        assert_eq!(status(Message::error("t", "bad a"), None), 422);
        assert_eq!(
            status(Message::error("t", "none"), Some(Fault::NoInstance)),
            503
        );
        assert_eq!(status(Message::error("t", "cfg"), Some(Fault::Config)), 502);
        assert_eq!(status(Message::stop(), None), 503);
        assert_eq!(status(Message::timeout(), None), 504);
        for fault in [
            Fault::Config,
            Fault::NoInstance,
            Fault::Overloaded,
            Fault::Unreachable,
            Fault::Panic,
        ] {
            assert_eq!(
                serde_json::to_string(&fault).unwrap(),
                format!("\"{}\"", fault.as_str())
            );
        }
    }
}
