//! The worker ⇄ agent protocol: the [`Frame`]s both sides speak over one persistent
//! WebSocket, and the `ERROR` that answers a message too large for one frame.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::binary::{FrameError, LinkFrame, Reader, Writer};
use crate::fault::Fault;
use crate::message::Message;

pub use crate::binary::MAX_FRAME;

/// One frame of the worker ⇄ agent protocol, in either form (see [`crate::binary`]); in
/// JSON, a text frame named by its one key:
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

/// The binary form's frame kinds, in the order of [`Frame`]'s variants.
mod kind {
    pub const WELCOME: u8 = 1;
    pub const MPU: u8 = 2;
    pub const DELIVER: u8 = 3;
    pub const RESULT: u8 = 4;
    pub const UNSTARTED: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const PUSH: u8 = 8;
    pub const PUSHED: u8 = 9;
    pub const RESTARTS: u8 = 10;
    pub const LEAVE: u8 = 11;
}

impl LinkFrame for Frame {
    fn write(&self, out: &mut Writer) {
        match self {
            Frame::Welcome { mpu, run } => {
                out.u8(kind::WELCOME);
                out.u32(*mpu);
                out.uuid(run);
            }
            Frame::Mpu { mpu } => {
                out.u8(kind::MPU);
                out.u32(*mpu);
            }
            Frame::Deliver { id, ms, msg } => {
                out.u8(kind::DELIVER);
                out.u64(*id);
                out.u64(*ms);
                out.message(msg);
            }
            Frame::Result { id, msg } => {
                out.u8(kind::RESULT);
                out.u64(*id);
                out.message(msg);
            }
            Frame::Unstarted { id } => {
                out.u8(kind::UNSTARTED);
                out.u64(*id);
            }
            Frame::Request { id, ms, msg, to } => {
                out.u8(kind::REQUEST);
                out.uuid(id);
                out.u64(*ms);
                out.message(msg);
                out.opt_str(to.as_deref());
            }
            Frame::Reply { id, msg, fault } => {
                out.u8(kind::REPLY);
                out.uuid(id);
                out.message(msg);
                out.fault(*fault);
            }
            Frame::Push { id, ms, msg } => {
                out.u8(kind::PUSH);
                out.uuid(id);
                out.u64(*ms);
                out.message(msg);
            }
            Frame::Pushed { id } => {
                out.u8(kind::PUSHED);
                out.uuid(id);
            }
            Frame::Restarts { total } => {
                out.u8(kind::RESTARTS);
                out.u64(*total);
            }
            Frame::Leave => out.u8(kind::LEAVE),
        }
    }

    fn read(input: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(match input.u8("the frame's kind")? {
            kind::WELCOME => Frame::Welcome {
                mpu: input.u32("mpu")?,
                run: input.uuid("run")?,
            },
            kind::MPU => Frame::Mpu {
                mpu: input.u32("mpu")?,
            },
            kind::DELIVER => Frame::Deliver {
                id: input.u64("id")?,
                ms: input.u64("ms")?,
                msg: input.message()?,
            },
            kind::RESULT => Frame::Result {
                id: input.u64("id")?,
                msg: input.message()?,
            },
            kind::UNSTARTED => Frame::Unstarted {
                id: input.u64("id")?,
            },
            kind::REQUEST => Frame::Request {
                id: input.uuid("id")?,
                ms: input.u64("ms")?,
                msg: input.message()?,
                to: input.opt_str("to")?,
            },
            kind::REPLY => Frame::Reply {
                id: input.uuid("id")?,
                msg: input.message()?,
                fault: input.fault()?,
            },
            kind::PUSH => Frame::Push {
                id: input.uuid("id")?,
                ms: input.u64("ms")?,
                msg: input.message()?,
            },
            kind::PUSHED => Frame::Pushed {
                id: input.uuid("id")?,
            },
            kind::RESTARTS => Frame::Restarts {
                total: input.u64("total")?,
            },
            kind::LEAVE => Frame::Leave,
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}

/// The `ERROR` that answers a message which would not fit in one frame (`bytes` long
/// on the wire, over `limit`); `what` says which message it was.
pub fn too_large(kind: &str, what: &str, bytes: usize, limit: usize) -> Message {
    Message::error(
        kind,
        format!("{what} is {bytes} bytes on the wire, over the {limit}-byte frame limit"),
    )
}
