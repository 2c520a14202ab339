//! The limits both ends of a link hold to, whichever link (worker ⇄ agent, agent ⇄
//! agent) and whichever side: a leaf, so that every layer (the errors included) can
//! name them.

/// The largest frame either side accepts (1 MiB), on worker links and peer links alike.
/// Senders check it: a frame over it would make the receiver drop the whole connection.
pub const MAX_FRAME: usize = 1 << 20;
