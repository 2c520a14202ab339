//! What a test worker does with a message: a pure function of the message and the
//! worker's name, shared by `chaos-worker` (which runs it) and the checker (which
//! predicts every answer from it).
//!
//! Types name a position on a line: `l{k}t{j}` is what enters hop `j` of line `k`; a
//! worker turns it into `l{k}t{j+1}`, so a line that revisits a worker does so with a
//! different type and the configs alone decide where each type goes. Args are
//! `[request_id, hop, value]` → `[request_id, hop + 1, f_worker(value)]`.
//!
//! `o{k}` asks a worker to put a sub-request `l{k}t0` from its own outbox (args
//! `[request_id, hop, value, deadline_ms, mode]`, mode `r` to wait for the reply or `p`
//! to push); it answers `o{k}` with `[request_id, hop + 1, f_worker(value)]`.

use std::time::Duration;

use damrey_actors::{Message, Tag};

/// Values live modulo this prime, so a value names the path that made it.
pub const MODULUS: u64 = 1_000_003;

/// The type entering hop `pos` of line `line`.
pub fn line_type(line: usize, pos: usize) -> String {
    format!("l{line}t{pos}")
}

/// The type that tells a worker to put a sub-request along line `line` from its outbox.
pub fn drive_type(line: usize) -> String {
    format!("o{line}")
}

/// `l{k}t{j}` as `(k, j)`.
pub fn parse_line_type(kind: &str) -> Option<(usize, usize)> {
    let rest = kind.strip_prefix('l')?;
    let (line, pos) = rest.split_once('t')?;
    Some((line.parse().ok()?, pos.parse().ok()?))
}

/// `o{k}` as `k`.
pub fn parse_drive_type(kind: &str) -> Option<usize> {
    kind.strip_prefix('o')?.parse().ok()
}

/// The type a worker answers a message of type `kind` with.
pub fn next_type(kind: &str) -> Option<String> {
    if let Some((line, pos)) = parse_line_type(kind) {
        return Some(line_type(line, pos + 1));
    }
    parse_drive_type(kind).map(drive_type)
}

/// FNV-1a: stable across runs, platforms and Rust versions (unlike `DefaultHasher`).
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `f_worker`: an affine map modulo [`MODULUS`] with coefficients from the name.
pub fn transform(worker: &str, value: u64) -> u64 {
    let hash = fnv(worker.as_bytes());
    let a = hash % (MODULUS - 2) + 2;
    let b = (hash >> 32) % MODULUS;
    (value % MODULUS * a + b) % MODULUS
}

/// Longest a step sleeps.
pub const MAX_SLEEP: Duration = Duration::from_millis(320);

/// How long the step at `hop` of request `request_id` sleeps: mostly a few ms, one in
/// twenty between 120 and 320 ms, so that faults hit steps in flight.
pub fn step_sleep(request_id: &str, hop: u64) -> Duration {
    let hash = fnv(format!("{request_id}/{hop}").as_bytes());
    let ms = if hash % 100 < 5 {
        120 + (hash / 100) % 201
    } else {
        2 + (hash / 100) % 19
    };
    Duration::from_millis(ms)
}

/// A line step's or a drive's args, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepArgs {
    /// The request id.
    pub request_id: String,
    /// Steps done before this one.
    pub hop: u64,
    /// The value carried.
    pub value: u64,
}

impl StepArgs {
    /// Reads `[request_id, hop, value, ...]`.
    pub fn parse(message: &Message) -> Option<StepArgs> {
        if message.tag != Tag::Request {
            return None;
        }
        match message.args.as_slice() {
            [id, hop, value, ..] => Some(StepArgs {
                request_id: id.clone(),
                hop: hop.parse().ok()?,
                value: value.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// The answer worker `worker` gives to `message`, or why it cannot.
///
/// # Errors
/// The message is not one of the checker's.
pub fn answer(worker: &str, message: &Message) -> Result<Message, String> {
    let args = StepArgs::parse(message).ok_or_else(|| format!("bad message {message}"))?;
    let kind = next_type(&message.kind).ok_or_else(|| format!("unknown type {}", message.kind))?;
    Ok(Message::response(
        kind,
        [
            args.request_id,
            (args.hop + 1).to_string(),
            transform(worker, args.value).to_string(),
        ],
    ))
}

/// A drive's sub-request: `(line, sub-request, deadline, push)`.
pub fn drive(message: &Message, sub_id: &str) -> Option<(usize, Message, Duration, bool)> {
    let line = parse_drive_type(&message.kind)?;
    let args = StepArgs::parse(message)?;
    let deadline = Duration::from_millis(message.args.get(3)?.parse().ok()?);
    let push = message.args.get(4)? == "p";
    let sub = Message::request(
        line_type(line, 0),
        [sub_id.to_owned(), "0".to_owned(), args.value.to_string()],
    );
    Some((line, sub, deadline, push))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_advances_the_type_the_hop_and_the_value() {
        let reply = answer("w1", &Message::request("l2t3", ["r7", "3", "10"])).unwrap();
        assert_eq!(
            reply,
            Message::response("l2t4", ["r7", "4", &transform("w1", 10).to_string()])
        );
        assert_ne!(transform("w1", 10), transform("w2", 10));
    }

    #[test]
    fn a_drive_names_its_line_and_sub_request() {
        let drive_msg = Message::request("o3", ["r1", "0", "5", "900", "r"]);
        let (line, sub, deadline, push) = drive(&drive_msg, "r1~x").unwrap();
        assert_eq!(
            (line, deadline, push),
            (3, Duration::from_millis(900), false)
        );
        assert_eq!(sub, Message::request("l3t0", ["r1~x", "0", "5"]));
        assert_eq!(answer("w", &drive_msg).unwrap().kind, "o3");
    }

    #[test]
    fn sleeps_are_short_and_mostly_tiny() {
        let slow = (0..1000)
            .filter(|i| step_sleep(&format!("r{i}"), 0) >= Duration::from_millis(120))
            .count();
        assert!((10..120).contains(&slow), "{slow}");
        assert!((0..1000).all(|i| step_sleep(&format!("r{i}"), 1) <= MAX_SLEEP));
    }
}
