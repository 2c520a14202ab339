//! The [`Envelope`]: a line in transit between two agents, as one agent hands it to
//! the next (DESIGN §4).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::message::Message;

/// The most worker steps one line may take (DESIGN §4); a longer line ends with
/// `ERROR`. Every agent holds a line to it, whichever drives it.
pub const MAX_HOPS: u32 = 64;

/// A line in transit between agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Identifies the request end to end.
    pub id: Uuid,
    /// Which hand-off of the line this is (1 for the first): a line may pass the same
    /// agent several times, so receivers drop an `(id, leg)` they have seen — a resend
    /// of one hand-off — and take every new leg.
    pub leg: u32,
    /// The worker the message goes to.
    pub to: String,
    /// The agent (`host:port`) that waits for the terminal reply.
    pub origin: String,
    /// Time left before the request's deadline, in milliseconds.
    pub remaining_ms: u64,
    /// Worker steps taken so far.
    pub hops: u32,
    /// The message, as the plain JSON list.
    pub message: Message,
}
