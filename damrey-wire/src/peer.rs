//! The agent ⇄ agent protocol: the [`PeerFrame`]s two agents exchange over their
//! `/peer` WebSocket, and the header that names an agent's run.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::binary::{FrameError, LinkFrame, Reader, Writer};
use crate::envelope::Envelope;
use crate::fault::Fault;
use crate::message::Message;

/// The header of a `/peer` answer that names the agent's run (a uuid drawn at its start).
pub const RUN_HEADER: &str = "damrey-agent-run";

/// One frame between agents, in either form (see [`crate::binary`]); in JSON, a text
/// frame named by its one key:
/// `{"forward":{"seq":3,"envelope":{...}}}`, `{"reply":{"seq":4,"id":"…","msg":[...]}}`, `{"ack":{"seqs":[3,4]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerFrame {
    /// Continue this line here.
    Forward {
        /// Frame number on this link, echoed in the ack.
        seq: u64,
        /// The line.
        envelope: Envelope,
    },
    /// The terminal reply of request `id`, which started at the receiving agent.
    Reply {
        /// Frame number on this link, echoed in the ack.
        seq: u64,
        /// The request's envelope id.
        id: Uuid,
        /// The terminal reply.
        msg: Message,
        /// Why, when the reply is an `ERROR` the runtime made (absent otherwise, and
        /// from agents that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<Fault>,
    },
    /// These frames arrived (acknowledged together, one frame per burst read).
    Ack {
        /// The acknowledged frames.
        seqs: Vec<u64>,
    },
}

/// The binary form's frame kinds, in the order of [`PeerFrame`]'s variants.
mod kind {
    pub const FORWARD: u8 = 1;
    pub const REPLY: u8 = 2;
    pub const ACK: u8 = 3;
}

impl LinkFrame for PeerFrame {
    fn write(&self, out: &mut Writer) {
        match self {
            PeerFrame::Forward { seq, envelope } => {
                out.u8(kind::FORWARD);
                out.u64(*seq);
                out.uuid(&envelope.id);
                out.u32(envelope.leg);
                out.str(&envelope.to);
                out.str(&envelope.origin);
                out.u64(envelope.remaining_ms);
                out.u32(envelope.hops);
                out.message(&envelope.message);
            }
            PeerFrame::Reply {
                seq,
                id,
                msg,
                fault,
            } => {
                out.u8(kind::REPLY);
                out.u64(*seq);
                out.uuid(id);
                out.message(msg);
                out.fault(*fault);
            }
            PeerFrame::Ack { seqs } => {
                out.u8(kind::ACK);
                out.u64s(seqs);
            }
        }
    }

    fn read(input: &mut Reader<'_>) -> Result<Self, FrameError> {
        Ok(match input.u8("the frame's kind")? {
            kind::FORWARD => PeerFrame::Forward {
                seq: input.u64("seq")?,
                envelope: Envelope {
                    id: input.uuid("id")?,
                    leg: input.u32("leg")?,
                    to: input.str("to")?,
                    origin: input.str("origin")?,
                    remaining_ms: input.u64("remaining_ms")?,
                    hops: input.u32("hops")?,
                    message: input.message()?,
                },
            },
            kind::REPLY => PeerFrame::Reply {
                seq: input.u64("seq")?,
                id: input.uuid("id")?,
                msg: input.message()?,
                fault: input.fault()?,
            },
            kind::ACK => PeerFrame::Ack {
                seqs: input.u64s("seqs")?,
            },
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}
