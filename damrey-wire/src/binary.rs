//! The two forms of the internal links' frames, and the binary one's encoding.
//!
//! Worker ⇄ agent and agent ⇄ agent frames ([`Frame`](crate::frame::Frame),
//! [`PeerFrame`](crate::peer::PeerFrame)) travel in one of two [`Form`]s, chosen per
//! connection by [`FORM_HEADER`]:
//!
//! - **binary**, what Damrey's own processes speak: a WebSocket binary message carries
//!   one or more *records*, each a little-endian `u32` length and that many bytes of one
//!   frame. Strings are a `u32` length and their UTF-8 bytes, carried as they are (an
//!   argument is copied, never escaped); integers are little-endian; a uuid is its 16
//!   bytes. Frames queued for one socket leave joined, in messages of up to [`BATCH`].
//! - **JSON**, one frame per WebSocket text message (`{"deliver":{...}}`): for clients
//!   that do not offer binary (older Damrey builds, other languages, a human with a
//!   WebSocket tool). Readers take both forms whatever was agreed.
//!
//! The side that opens the connection offers `damrey-frames: binary`; the side that
//! accepts answers with the same header when it speaks it. Each side writes binary only
//! once both have said so, so that a newer agent and an older worker (or peer) still
//! understand each other.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::fault::Fault;
use crate::message::{Message, Tag};
use crate::spec::MAX_NAME_LEN;

/// The largest WebSocket message either side accepts (4 MiB), on worker links and peer
/// links alike: a message of 1 MiB arguments, and then some, fits in one binary frame.
/// Senders check it: a frame over it would make the receiver drop the whole connection.
pub const MAX_FRAME: usize = 4 << 20;

/// How large a WebSocket message that joins several records may grow (64 KiB): enough
/// for hundreds of small frames written in one wake-up. A frame of this size or more
/// leaves as a message of its own. Larger batches would hold up the receiver, which
/// reads no record of a message until the whole message has arrived: with 64 KiB
/// arguments in flight, a 4 MiB batch moved from process to process as one block, and
/// each process waited on the one before it.
pub const BATCH: usize = 64 << 10;

/// The largest JSON frame a Damrey process sends (1 MiB). Builds from before the binary
/// form read no larger one, and the other side of a link that did not agree on binary
/// may be one of them.
pub const MAX_JSON_FRAME: usize = 1 << 20;

/// The header by which both ends of a link say they speak the binary form.
pub const FORM_HEADER: &str = "damrey-frames";

/// The value of [`FORM_HEADER`] that offers (or agrees to) the binary form.
pub const BINARY: &str = "binary";

/// How the frames of one connection are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// One JSON text message per frame.
    #[default]
    Json,
    /// Length-prefixed binary records.
    Binary,
}

impl Form {
    /// The form both ends agreed on, from the [`FORM_HEADER`] value the other end sent.
    pub fn agreed(header: Option<&[u8]>) -> Form {
        if header == Some(BINARY.as_bytes()) {
            Form::Binary
        } else {
            Form::Json
        }
    }
}

/// One frame encoded for a connection, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A JSON text message.
    Text(String),
    /// One binary record (its length prefix included); records written together may be
    /// joined into one message.
    Binary(Vec<u8>),
}

impl Encoded {
    /// Its size on the wire, in bytes.
    pub fn len(&self) -> usize {
        match self {
            Encoded::Text(text) => text.len(),
            Encoded::Binary(record) => record.len(),
        }
    }

    /// Whether it is empty (never, for a frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest frame of its form that the other side reads: [`MAX_FRAME`] for a
    /// binary one, [`MAX_JSON_FRAME`] for a JSON one.
    pub fn limit(&self) -> usize {
        match self {
            Encoded::Text(_) => MAX_JSON_FRAME,
            Encoded::Binary(_) => MAX_FRAME,
        }
    }

    /// Whether it is over [`Encoded::limit`]: to be refused, never sent.
    pub fn is_too_large(&self) -> bool {
        self.len() > self.limit()
    }

    /// The form it is in.
    pub fn form(&self) -> Form {
        match self {
            Encoded::Text(_) => Form::Json,
            Encoded::Binary(_) => Form::Binary,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A JSON frame that is not one of the protocol's frames.
    #[error("invalid JSON frame: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary record ended before its frame did.
    #[error("binary frame cut short: {0} missing")]
    Truncated(&'static str),
    /// A binary record's frame kind is none this build knows.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// A message tag byte that names no tag.
    #[error("unknown message tag {0} in a binary frame")]
    UnknownTag(u8),
    /// A string that is not UTF-8.
    #[error("a string in a binary frame is not UTF-8")]
    NotUtf8,
    /// Bytes left after the frame, in its record.
    #[error("{0} bytes left over after a binary frame")]
    Trailing(usize),
}

/// A frame of one of the internal links: written and read in both forms.
pub trait LinkFrame: Serialize + DeserializeOwned {
    /// Writes the frame's binary body (without its record's length prefix).
    fn write(&self, out: &mut Writer);

    /// Reads one frame's binary body.
    ///
    /// # Errors
    /// [`FrameError`] when the bytes are no frame of this link.
    fn read(input: &mut Reader<'_>) -> Result<Self, FrameError>;

    /// The frame in `form`.
    fn encode(&self, form: Form) -> Encoded {
        match form {
            Form::Json => {
                Encoded::Text(serde_json::to_string(self).expect("frames always serialize"))
            }
            Form::Binary => {
                let mut out = Writer::record();
                self.write(&mut out);
                Encoded::Binary(out.finish())
            }
        }
    }

    /// Reads a JSON text message: one frame.
    ///
    /// # Errors
    /// [`FrameError::Json`] when it is no frame of this link.
    fn from_json(text: &[u8]) -> Result<Self, FrameError> {
        Ok(serde_json::from_slice(text)?)
    }

    /// Reads a binary message: every frame it carries, in order. A record that cannot be
    /// read is an error in its place; a length prefix that overruns the message ends it.
    fn from_binary(message: &[u8]) -> Records<'_, Self> {
        Records {
            rest: message,
            frame: std::marker::PhantomData,
        }
    }
}

/// The frames of one binary message; see [`LinkFrame::from_binary`].
pub struct Records<'a, F> {
    rest: &'a [u8],
    frame: std::marker::PhantomData<F>,
}

impl<F: LinkFrame> Iterator for Records<'_, F> {
    type Item = Result<F, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut input = Reader { rest: self.rest };
        let record = input
            .u32("a record's length")
            .and_then(|len| input.take(len as usize, "a record's body"));
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                self.rest = &[];
                return Some(Err(error));
            }
        };
        self.rest = input.rest;
        let mut body = Reader { rest: record };
        Some(F::read(&mut body).and_then(|frame| body.finish().map(|()| frame)))
    }
}

/// A record's first allocation: all of a frame with a short message.
const SMALL_RECORD: usize = 64;

/// The room kept after a message that did not fit [`SMALL_RECORD`], for the fields a
/// frame writes after it: at most a worker's name, present (`1`), its length and
/// [`MAX_NAME_LEN`] bytes.
const FIELDS_AFTER: usize = 1 + 4 + MAX_NAME_LEN;

/// Writes one binary record.
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// A record, its length prefix to be filled in by [`Writer::finish`].
    fn record() -> Writer {
        let mut bytes = Vec::with_capacity(SMALL_RECORD);
        bytes.extend_from_slice(&[0; 4]);
        Writer { bytes }
    }

    /// The record, its length prefix set.
    fn finish(mut self) -> Vec<u8> {
        let body = u32::try_from(self.bytes.len() - 4).expect("a frame is under 4 GiB");
        self.bytes[..4].copy_from_slice(&body.to_le_bytes());
        self.bytes
    }

    /// A byte.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// A uuid's 16 bytes.
    pub fn uuid(&mut self, value: &Uuid) {
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// A string: its length, then its bytes.
    pub fn str(&mut self, value: &str) {
        self.u32(u32::try_from(value.len()).expect("a string is under 4 GiB"));
        self.bytes.extend_from_slice(value.as_bytes());
    }

    /// A string that may be absent: `0`, or `1` and the string.
    pub fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                self.str(value);
            }
        }
    }

    /// A list of `u64`s: its length, then each.
    pub fn u64s(&mut self, values: &[u64]) {
        self.u32(u32::try_from(values.len()).expect("under 4 G values"));
        for value in values {
            self.u64(*value);
        }
    }

    /// A message: its tag, its type, the number of its arguments and each argument.
    pub fn message(&mut self, message: &Message) {
        // Room for all of it, and for the few small fields a frame has after its
        // message: the record grows once, by what it needs. Growing by doubling for
        // the fields after a large argument would copy the argument once more and
        // leave up to half of the record's memory unused while it waits to be sent.
        let strings = message.args.iter().map(|arg| 4 + arg.len()).sum::<usize>();
        let size = 1 + 4 + message.kind.len() + 4 + strings;
        if self.bytes.capacity() - self.bytes.len() < size {
            self.bytes.reserve_exact(size + FIELDS_AFTER);
        }
        self.u8(tag_code(message.tag));
        self.str(&message.kind);
        self.u32(u32::try_from(message.args.len()).expect("under 4 G arguments"));
        for arg in &message.args {
            self.str(arg);
        }
    }

    /// A fault that may be absent: `0`, or its code.
    pub fn fault(&mut self, fault: Option<Fault>) {
        self.u8(fault.map_or(0, fault_code));
    }
}

/// Reads one binary record.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < len {
            return Err(FrameError::Truncated(what));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    /// A byte.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] at the end of the record.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u32`.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] at the end of the record.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] at the end of the record.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A uuid.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] at the end of the record.
    pub fn uuid(&mut self, what: &'static str) -> Result<Uuid, FrameError> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }

    /// A string.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] or [`FrameError::NotUtf8`].
    pub fn str(&mut self, what: &'static str) -> Result<String, FrameError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| FrameError::NotUtf8)
    }

    /// A string that may be absent.
    ///
    /// # Errors
    /// As [`Reader::str`].
    pub fn opt_str(&mut self, what: &'static str) -> Result<Option<String>, FrameError> {
        match self.u8(what)? {
            0 => Ok(None),
            _ => self.str(what).map(Some),
        }
    }

    /// A message.
    ///
    /// # Errors
    /// [`FrameError`] when it is cut short, its tag is unknown or a word is not UTF-8.
    pub fn message(&mut self) -> Result<Message, FrameError> {
        let code = self.u8("a message's tag")?;
        let tag = *Tag::ALL
            .get(usize::from(code))
            .ok_or(FrameError::UnknownTag(code))?;
        let kind = self.str("a message's type")?;
        let count = self.u32("a message's argument count")?;
        // Every argument takes at least its 4-byte length: a count the record cannot
        // hold is refused before anything is allocated for it.
        if count as usize > self.rest.len() / 4 {
            return Err(FrameError::Truncated("a message's arguments"));
        }
        let args = (0..count)
            .map(|_| self.str("a message's argument"))
            .collect::<Result<_, _>>()?;
        Ok(Message { tag, kind, args })
    }

    /// A fault that may be absent; a code this build does not know is
    /// [`Fault::Unknown`], as in the JSON form.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] at the end of the record.
    pub fn fault(&mut self) -> Result<Option<Fault>, FrameError> {
        let code = self.u8("a fault")?;
        Ok((code != 0).then(|| {
            FAULTS
                .into_iter()
                .find(|fault| fault_code(*fault) == code)
                .unwrap_or(Fault::Unknown)
        }))
    }

    /// A list of `u64`s: its length, then each. A length the record cannot hold is
    /// refused before anything is allocated for it.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] when the list is cut short.
    pub fn u64s(&mut self, what: &'static str) -> Result<Vec<u64>, FrameError> {
        let count = self.u32(what)? as usize;
        if count > self.rest.len() / 8 {
            return Err(FrameError::Truncated(what));
        }
        (0..count).map(|_| self.u64(what)).collect()
    }

    /// Ends the record: nothing may be left.
    fn finish(self) -> Result<(), FrameError> {
        match self.rest.len() {
            0 => Ok(()),
            left => Err(FrameError::Trailing(left)),
        }
    }
}

/// A tag's byte: its place in [`Tag::ALL`].
fn tag_code(tag: Tag) -> u8 {
    Tag::ALL
        .iter()
        .position(|known| *known == tag)
        .and_then(|place| u8::try_from(place).ok())
        .expect("five tags")
}

/// The faults with a code of their own ([`Fault::Unknown`] stands for any other).
const FAULTS: [Fault; 5] = [
    Fault::Config,
    Fault::NoInstance,
    Fault::Overloaded,
    Fault::Unreachable,
    Fault::Panic,
];

/// A fault's byte (never `0`, which is "no fault"): one past its place in [`FAULTS`];
/// [`Fault::Unknown`] is `255`.
fn fault_code(fault: Fault) -> u8 {
    FAULTS
        .iter()
        .position(|known| *known == fault)
        .map_or(u8::MAX, |place| {
            u8::try_from(place + 1).expect("five faults")
        })
}

/// Reads one WebSocket data message of either form (a text message is one JSON frame,
/// a binary one carries records), handing `each` every frame, or the error in its place.
pub fn read_message<F: LinkFrame>(
    binary: bool,
    payload: &[u8],
    mut each: impl FnMut(Result<F, FrameError>),
) {
    if binary {
        F::from_binary(payload).for_each(each);
    } else {
        each(F::from_json(payload));
    }
}

/// Joins binary records into as few messages as `limit` allows ([`BATCH`] on the
/// links), in order; a record over it, and a text message, stays on its own.
pub fn coalesce(frames: impl IntoIterator<Item = Encoded>, limit: usize) -> Vec<Encoded> {
    let mut messages = Vec::new();
    for frame in frames {
        match (messages.last_mut(), frame) {
            (Some(Encoded::Binary(joined)), Encoded::Binary(record))
                if joined.len() + record.len() <= limit =>
            {
                joined.extend_from_slice(&record);
            }
            (_, frame) => messages.push(frame),
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::Envelope;
    use crate::frame::Frame;
    use crate::peer::PeerFrame;

    fn any_message() -> impl Strategy<Value = Message> {
        (
            prop::sample::select(Tag::ALL.to_vec()),
            ".*",
            prop::collection::vec(".*", 0..6),
        )
            .prop_map(|(tag, kind, args)| Message { tag, kind, args })
    }

    fn any_uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    fn any_fault() -> impl Strategy<Value = Option<Fault>> {
        prop::option::of(prop::sample::select(
            [FAULTS.as_slice(), &[Fault::Unknown]].concat(),
        ))
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u32>(), any_uuid()).prop_map(|(mpu, run)| Frame::Welcome { mpu, run }),
            any::<u32>().prop_map(|mpu| Frame::Mpu { mpu }),
            (any::<u64>(), any::<u64>(), any_message()).prop_map(|(id, ms, msg)| Frame::Deliver {
                id,
                ms,
                msg
            }),
            (any::<u64>(), any_message()).prop_map(|(id, msg)| Frame::Result { id, msg }),
            any::<u64>().prop_map(|id| Frame::Unstarted { id }),
            (
                any_uuid(),
                any::<u64>(),
                any_message(),
                prop::option::of(".*")
            )
                .prop_map(|(id, ms, msg, to)| Frame::Request { id, ms, msg, to }),
            (any_uuid(), any_message(), any_fault()).prop_map(|(id, msg, fault)| Frame::Reply {
                id,
                msg,
                fault
            }),
            (any_uuid(), any::<u64>(), any_message()).prop_map(|(id, ms, msg)| Frame::Push {
                id,
                ms,
                msg
            }),
            any_uuid().prop_map(|id| Frame::Pushed { id }),
            any::<u64>().prop_map(|total| Frame::Restarts { total }),
            Just(Frame::Leave),
        ]
    }

    fn any_peer_frame() -> impl Strategy<Value = PeerFrame> {
        let envelope = (
            any_uuid(),
            any::<u32>(),
            ".*",
            ".*",
            any::<u64>(),
            any::<u32>(),
            any_message(),
        )
            .prop_map(
                |(id, leg, to, origin, remaining_ms, hops, message)| Envelope {
                    id,
                    leg,
                    to,
                    origin,
                    remaining_ms,
                    hops,
                    message,
                },
            );
        prop_oneof![
            (any::<u64>(), envelope)
                .prop_map(|(seq, envelope)| PeerFrame::Forward { seq, envelope }),
            (any::<u64>(), any_uuid(), any_message(), any_fault()).prop_map(
                |(seq, id, msg, fault)| PeerFrame::Reply {
                    seq,
                    id,
                    msg,
                    fault
                }
            ),
            prop::collection::vec(any::<u64>(), 0..20).prop_map(|seqs| PeerFrame::Ack { seqs }),
        ]
    }

    /// Encodes `frames` in `form`, joins them as a writer does, and reads them back.
    fn through<F: LinkFrame>(frames: &[F], form: Form, limit: usize) -> Vec<F> {
        let messages = coalesce(frames.iter().map(|frame| frame.encode(form)), limit);
        messages
            .iter()
            .flat_map(|message| match message {
                Encoded::Text(text) => vec![F::from_json(text.as_bytes()).unwrap()],
                Encoded::Binary(bytes) => F::from_binary(bytes).map(Result::unwrap).collect(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_worker_frame_survives_both_forms(
            frames in prop::collection::vec(any_frame(), 1..8),
            limit in 1usize..4_096,
        ) {
            prop_assert_eq!(&through(&frames, Form::Json, limit), &frames);
            prop_assert_eq!(&through(&frames, Form::Binary, limit), &frames);
        }

        #[test]
        fn every_peer_frame_survives_both_forms(
            frames in prop::collection::vec(any_peer_frame(), 1..8),
            limit in 1usize..4_096,
        ) {
            prop_assert_eq!(&through(&frames, Form::Json, limit), &frames);
            prop_assert_eq!(&through(&frames, Form::Binary, limit), &frames);
        }

        #[test]
        fn no_bytes_make_a_reader_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Frame::from_binary(&bytes).count();
            let _ = PeerFrame::from_binary(&bytes).count();
        }
    }

    #[test]
    fn queued_records_leave_in_as_few_messages_as_the_limit_allows() {
        let record = |n: u64| Frame::Unstarted { id: n }.encode(Form::Binary);
        let one = record(0).len();
        let messages = coalesce((0..5).map(record), 2 * one);
        let sizes: Vec<usize> = messages.iter().map(Encoded::len).collect();
        assert_eq!(sizes, [2 * one, 2 * one, one]);

        let text = Frame::Leave.encode(Form::Json);
        let mixed = coalesce([record(0), text.clone(), record(1), record(2)], 10 * one);
        assert_eq!(
            mixed.len(),
            3,
            "a text message splits the binary ones around it"
        );
        assert_eq!(mixed[1], text);
    }

    #[test]
    fn large_records_leave_one_message_each_so_the_first_is_read_before_the_last_arrives() {
        let deliver = |n: u64, size: usize| {
            Frame::Deliver {
                id: n,
                ms: 1_000,
                msg: Message::request("t", ["x".repeat(size)]),
            }
            .encode(Form::Binary)
        };
        let large: Vec<usize> = coalesce((0..4).map(|n| deliver(n, 64 << 10)), BATCH)
            .iter()
            .map(Encoded::len)
            .collect();
        assert_eq!(
            large.len(),
            4,
            "64 KiB arguments are never joined: {large:?}"
        );
        // 1,000 frames of 45 bytes: one message under the batch size.
        let small = coalesce((0..1_000).map(|n| deliver(n, 10)), BATCH);
        assert_eq!(
            small.iter().map(Encoded::len).collect::<Vec<_>>(),
            [45_000],
            "small frames leave joined"
        );
    }

    #[test]
    fn a_record_grows_once_for_a_large_message_and_not_at_all_for_a_small_one() {
        let capacity_and_len = |frame: Frame| {
            let mut out = Writer::record();
            frame.write(&mut out);
            let capacity = out.bytes.capacity();
            (capacity, out.finish().len())
        };
        let deliver = |arg: String| Frame::Deliver {
            id: 1,
            ms: 1_000,
            msg: Message::request("sqsum", [arg, "4".to_owned()]),
        };
        let large = "x".repeat(64 << 10);
        // The longest name a worker may have, written after the message.
        let request = Frame::Request {
            id: Uuid::nil(),
            ms: 1_000,
            msg: Message::request("sqsum", [large.clone()]),
            to: Some("w".repeat(crate::spec::MAX_NAME_LEN)),
        };
        for frame in [deliver(large), request] {
            let (capacity, len) = capacity_and_len(frame);
            assert!(
                capacity - len <= FIELDS_AFTER,
                "the record grew by doubling: {capacity} bytes for {len}"
            );
        }
        let (capacity, len) = capacity_and_len(deliver("3".to_owned()));
        assert_eq!(
            capacity, SMALL_RECORD,
            "a small frame ({len} bytes) fits the first"
        );
    }

    #[test]
    fn an_argument_is_carried_as_its_bytes() {
        let arg = "\"quoted\"\n\u{1}".repeat(1_000);
        let frame = Frame::Result {
            id: 1,
            msg: Message::response("t", [arg.as_str()]),
        };
        let Encoded::Binary(record) = frame.encode(Form::Binary) else {
            panic!("binary")
        };
        let Encoded::Text(json) = frame.encode(Form::Json) else {
            panic!("text")
        };
        assert!(
            record
                .windows(arg.len())
                .any(|window| window == arg.as_bytes())
        );
        assert!(record.len() < arg.len() + 64, "{}", record.len());
        assert!(
            json.len() > arg.len() * 3 / 2,
            "JSON escapes it: {}",
            json.len()
        );
    }

    #[test]
    fn bad_records_are_clear_errors() {
        let cut = |bytes: &[u8]| {
            Frame::from_binary(bytes)
                .next()
                .unwrap()
                .unwrap_err()
                .to_string()
        };
        assert!(
            cut(&[9, 0, 0, 0, 3]).contains("cut short"),
            "{}",
            cut(&[9, 0, 0, 0, 3])
        );
        assert_eq!(cut(&[1, 0, 0, 0, 99]), "unknown binary frame kind 99");
        assert_eq!(
            cut(&[2, 0, 0, 0, 11, 0]),
            "1 bytes left over after a binary frame"
        );
        let mut bad_tag = Frame::Result {
            id: 1,
            msg: Message::stop(),
        }
        .encode(Form::Binary);
        if let Encoded::Binary(record) = &mut bad_tag {
            record[13] = 7;
        }
        let Encoded::Binary(record) = bad_tag else {
            unreachable!()
        };
        assert_eq!(cut(&record), "unknown message tag 7 in a binary frame");
        // A count of arguments far beyond the record is refused without allocating.
        let mut huge = vec![0u8; 4];
        huge.extend([4 /* result */, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        huge.extend(u32::MAX.to_le_bytes());
        let len = u32::try_from(huge.len() - 4).unwrap();
        huge[..4].copy_from_slice(&len.to_le_bytes());
        assert!(cut(&huge).contains("arguments"), "{}", cut(&huge));
    }

    #[test]
    fn json_frames_stay_within_what_older_builds_read_and_binary_ones_go_further() {
        let of = |bytes: usize| Frame::Result {
            id: 1,
            msg: Message::response("t", ["x".repeat(bytes)]),
        };
        let json = of(MAX_JSON_FRAME).encode(Form::Json);
        let binary = of(MAX_JSON_FRAME).encode(Form::Binary);
        assert!(json.is_too_large(), "{}", json.len());
        assert!(!binary.is_too_large(), "{}", binary.len());
        assert!(of(MAX_FRAME).encode(Form::Binary).is_too_large());
        assert_eq!((json.limit(), binary.limit()), (MAX_JSON_FRAME, MAX_FRAME));
    }

    #[test]
    fn a_fault_this_build_does_not_know_reads_as_unknown() {
        let mut input = Reader { rest: &[42] };
        assert_eq!(input.fault().unwrap(), Some(Fault::Unknown));
        assert_eq!(Form::agreed(Some(b"binary")), Form::Binary);
        assert_eq!(Form::agreed(Some(b"json")), Form::Json);
        assert_eq!(Form::agreed(None), Form::Json);
    }
}
