//! The agent ⇄ agent protocol: the [`PeerFrame`]s two agents exchange over their
//! `/peer` WebSocket, and the header that names an agent's run.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::Envelope;
use crate::fault::Fault;
use crate::message::Message;

/// The header of a `/peer` answer that names the agent's run (a uuid drawn at its start).
pub const RUN_HEADER: &str = "damrey-agent-run";

/// One frame between agents, a JSON text frame named by its one key:
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
