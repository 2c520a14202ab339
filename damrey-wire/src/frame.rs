//! The worker ⇄ agent protocol: the [`Frame`]s both sides speak over one persistent
//! WebSocket, and the `ERROR` that answers a message too large for one frame.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fault::Fault;
use crate::message::Message;

/// The largest frame either side accepts (1 MiB), on worker links and peer links alike.
/// Senders check it: a frame over it would make the receiver drop the whole connection.
pub const MAX_FRAME: usize = 1 << 20;

/// One frame of the worker ⇄ agent protocol, a JSON text frame named by its one key:
/// `{"deliver":{"id":7,"ms":1000,"msg":["REQUEST","sqsum","3","4"]}}`, or `"leave"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Agent → worker, first frame: accepted, with the worker's configured mpu.
    Welcome {
        /// Most messages processed at once; `0` is unlimited.
        mpu: u32,
        /// The agent process's run (a new one at every start): a worker that reattaches
        /// to another run knows the agent forgot what it was sent before.
        run: Uuid,
    },
    /// Agent → worker: the worker's configured mpu changed; applies to the running instance.
    Mpu {
        /// Most messages processed at once; `0` is unlimited.
        mpu: u32,
    },
    /// Agent → worker: process one step and answer within `ms` milliseconds.
    Deliver {
        /// Step id, echoed in the result.
        id: u64,
        /// Time left for the step.
        ms: u64,
        /// The message.
        msg: Message,
    },
    /// Worker → agent: the result of step `id`.
    Result {
        /// The step's id.
        id: u64,
        /// The handler's result, or `ERROR`/`TIMEOUT`/`STOP`.
        msg: Message,
    },
    /// Worker → agent: the worker is stopping and did not start step `id`, so another
    /// instance may run it (unlike a `STOP` its handler answered, which ends the line).
    Unstarted {
        /// The step's id.
        id: u64,
    },
    /// Worker → agent: the worker's own request along its line. Resent over a new
    /// connection with the same id, which the agent keeps once.
    Request {
        /// Request id, echoed in the reply; the line's id at the agent.
        id: Uuid,
        /// The request's deadline, in milliseconds from now.
        ms: u64,
        /// The message.
        msg: Message,
        /// The worker the line starts at (a front door starting its own worker's line);
        /// absent: the worker of the sender's command for the message's type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Agent → worker: the terminal reply to request `id`.
    Reply {
        /// The request's id.
        id: Uuid,
        /// The terminal reply.
        msg: Message,
        /// Why, when the reply is an `ERROR` the runtime made (absent otherwise, and
        /// from agents that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<Fault>,
    },
    /// Worker → agent: a message along the worker's line, no reply wanted. Resent over
    /// a new connection with the same id until the agent acknowledges it.
    Push {
        /// Push id, echoed in the ack.
        id: Uuid,
        /// How long the line may take, in milliseconds (the worker's step timeout
        /// times the hop limit: every step is bounded, and the line by the hop limit).
        ms: u64,
        /// The message.
        msg: Message,
    },
    /// Agent → worker: push `id` was taken.
    Pushed {
        /// The push's id.
        id: Uuid,
    },
    /// Worker → agent: the actor has been restarted after panics this many times in all
    /// (sent after a step whenever the count has grown).
    Restarts {
        /// Restarts since the worker started.
        total: u64,
    },
    /// Worker → agent: stop routing to this instance; it is about to stop.
    Leave,
}

impl Frame {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("frames always serialize")
    }
}

/// The `ERROR` that answers a message which would not fit in one frame (`bytes` long
/// on the wire, JSON escaping included); `what` says which message it was.
pub fn too_large(kind: &str, what: &str, bytes: usize) -> Message {
    Message::error(
        kind,
        format!("{what} is {bytes} bytes on the wire, over the {MAX_FRAME}-byte frame limit"),
    )
}
