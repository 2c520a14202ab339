//! The message model: [`Tag`], [`Message`] and its wire form, the plain JSON list of strings.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A wire message that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The list does not start with one of the five tags.
    #[error("unknown tag `{0}`; a message starts with REQUEST, RESPONSE, ERROR, STOP or TIMEOUT")]
    UnknownTag(String),
    /// The text is not a JSON list of strings starting with a tag (the message visitor's
    /// own errors read best as they are, so the JSON error is shown unwrapped).
    #[error("invalid message: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// The first word of every message: what kind of message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    /// A user-defined request.
    Request,
    /// A user-defined response.
    Response,
    /// Processing failed; the args carry a human-readable reason.
    Error,
    /// The worker stopped before processing the message.
    Stop,
    /// The deadline passed.
    Timeout,
}

impl Tag {
    /// Every tag, in the order of the design's table.
    pub const ALL: [Tag; 5] = [
        Tag::Request,
        Tag::Response,
        Tag::Error,
        Tag::Stop,
        Tag::Timeout,
    ];

    /// The tag as it is written on the wire, e.g. `"REQUEST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Request => "REQUEST",
            Tag::Response => "RESPONSE",
            Tag::Error => "ERROR",
            Tag::Stop => "STOP",
            Tag::Timeout => "TIMEOUT",
        }
    }

    /// Whether a message with this tag always ends a collaboration line.
    pub fn ends_line(self) -> bool {
        matches!(self, Tag::Error | Tag::Stop | Tag::Timeout)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tag {
    type Err = MessageError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Tag::ALL
            .into_iter()
            .find(|tag| tag.as_str() == word)
            .ok_or_else(|| MessageError::UnknownTag(word.to_owned()))
    }
}

/// A message: `tag type arg0 arg1 ...`, the one thing workers exchange.
///
/// On the wire and in JSON it is the plain list of strings:
///
/// ```
/// use damrey_wire::Message;
///
/// let msg = Message::request("sqsum", ["3", "4"]);
/// assert_eq!(msg.to_json(), r#"["REQUEST","sqsum","3","4"]"#);
/// assert_eq!(Message::from_json(r#"["TIMEOUT"]"#).unwrap(), Message::timeout());
/// assert_eq!(msg.to_string(), "REQUEST sqsum 3 4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// What kind of message this is.
    pub tag: Tag,
    /// The message type (`type` in the design; a keyword in Rust).
    pub kind: String,
    /// The arguments.
    pub args: Vec<String>,
}

/// A worker is an actix actor that implements `Handler<Message>`: the orphan rule lets
/// only this crate (or actix) say that our [`Message`] is an actix message, so the impl
/// lives here, behind the `actix` feature that the runtime (`damrey-actors`) turns on.
#[cfg(feature = "actix")]
impl actix::Message for Message {
    type Result = Message;
}

/// Lets a handler return a [`Message`] directly (`type Result = Message;`).
#[cfg(feature = "actix")]
impl<A, M> actix::dev::MessageResponse<A, M> for Message
where
    A: actix::Actor,
    M: actix::Message<Result = Message>,
{
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<Message>>) {
        if let Some(tx) = tx {
            // The asker may have given up (deadline passed); nothing else to tell.
            let _ = tx.send(self);
        }
    }
}

impl Message {
    /// Builds a message from its parts.
    pub fn new<I, S>(tag: Tag, kind: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Message {
            tag,
            kind: kind.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// A `REQUEST` of type `kind`.
    pub fn request<I, S>(kind: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Message::new(Tag::Request, kind, args)
    }

    /// A `RESPONSE` of type `kind`.
    pub fn response<I, S>(kind: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Message::new(Tag::Response, kind, args)
    }

    /// An `ERROR` for a request of type `kind`, with a human-readable reason.
    pub fn error(kind: impl Into<String>, reason: impl Into<String>) -> Self {
        Message {
            tag: Tag::Error,
            kind: kind.into(),
            args: vec![reason.into()],
        }
    }

    /// A `STOP`: the worker stopped before processing the message.
    pub fn stop() -> Self {
        Message::new(Tag::Stop, String::new(), Vec::<String>::new())
    }

    /// A `TIMEOUT`: the deadline passed.
    pub fn timeout() -> Self {
        Message::new(Tag::Timeout, String::new(), Vec::<String>::new())
    }

    /// Whether this message ends a collaboration line whatever the configuration says.
    pub fn ends_line(&self) -> bool {
        self.tag.ends_line()
    }

    /// The words of the message as they appear on the wire.
    ///
    /// The type is left out when it is empty and there are no args, so `["TIMEOUT"]`
    /// stays one word; otherwise every position is kept so that the list parses back
    /// to the same message.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        let with_kind = !self.kind.is_empty() || !self.args.is_empty();
        std::iter::once(self.tag.as_str())
            .chain(with_kind.then_some(self.kind.as_str()))
            .chain(self.args.iter().map(String::as_str))
    }

    /// Parses the wire form, a JSON list of strings.
    ///
    /// # Errors
    /// [`MessageError`] when the text is not JSON, not a list, an empty list, a list
    /// with an element that is not a string, or a list that does not start with a tag.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        Self::from_json_slice(text.as_bytes())
    }

    /// Parses the wire form from bytes; see [`Message::from_json`].
    ///
    /// # Errors
    /// As [`Message::from_json`].
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, MessageError> {
        serde_json::from_slice(bytes).map_err(MessageError::Invalid)
    }

    /// The wire form, a JSON list of strings.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a list of strings always serializes")
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, word) in self.words().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

/// On the wire a message is a JSON array of strings whose first item is its tag.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Message {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        let word = || ObjectBuilder::new().schema_type(Type::String);
        ArrayBuilder::new()
            .prefix_items([word()
                .enum_values(Some(Tag::ALL.map(Tag::as_str)))
                .description(Some("The tag"))
                .build()])
            .items(word())
            .min_items(Some(1))
            .description(Some(
                "A message: its tag, its type and its arguments, every one a string",
            ))
            .examples([serde_json::json!(["REQUEST", "sqsum", "3", "4"])])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Message {}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for word in self.words() {
            seq.serialize_element(word)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message: a list of strings starting with a tag")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        let mut words = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(word) = seq.next_element::<Word>()? {
            match word {
                Word::Text(text) => words.push(text),
                Word::Other(what) => {
                    return Err(de::Error::custom(format!(
                        "element {} of the message is {what}, not a string",
                        words.len()
                    )));
                }
            }
        }
        let mut words = words.into_iter();
        let Some(first) = words.next() else {
            return Err(de::Error::custom("a message cannot be an empty list"));
        };
        let tag = first.parse::<Tag>().map_err(de::Error::custom)?;
        Ok(Message {
            tag,
            kind: words.next().unwrap_or_default(),
            args: words.collect(),
        })
    }
}

/// One element of a wire message: a string, or a note of what else it was.
enum Word {
    Text(String),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WordVisitor)
    }
}

struct WordVisitor;

impl<'de> Visitor<'de> for WordVisitor {
    type Value = Word;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Word, E> {
        Ok(Word::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Word, E> {
        Ok(Word::Text(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Word, E> {
        Ok(Word::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Word, E> {
        Ok(Word::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Word, E> {
        Ok(Word::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Word, E> {
        Ok(Word::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Word, E> {
        Ok(Word::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Word, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Word::Other("a list"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Word, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Word::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_examples_read_and_write_as_plain_lists() {
        let msg = Message::from_json(r#"["REQUEST","sqsum","3","4"]"#).unwrap();
        assert_eq!(msg, Message::request("sqsum", ["3", "4"]));
        assert_eq!(msg.to_json(), r#"["REQUEST","sqsum","3","4"]"#);
        assert_eq!(Message::timeout().to_json(), r#"["TIMEOUT"]"#);
        assert_eq!(Message::stop().to_string(), "STOP");
        assert_eq!(
            Message::error("sqsum", "bad a").to_string(),
            "ERROR sqsum bad a"
        );
    }

    #[test]
    fn an_empty_type_with_args_keeps_its_position() {
        let msg = Message::error("", "why");
        assert_eq!(msg.to_json(), r#"["ERROR","","why"]"#);
        assert_eq!(Message::from_json(&msg.to_json()).unwrap(), msg);
    }

    #[test]
    fn bad_lists_are_clear_errors() {
        let cases = [
            ("[]", "a message cannot be an empty list"),
            (r#"["HELLO","x"]"#, "unknown tag `HELLO`"),
            (
                r#"["REQUEST","sqsum",3]"#,
                "element 2 of the message is a number, not a string",
            ),
            (
                r#"["REQUEST",null]"#,
                "element 1 of the message is null, not a string",
            ),
            (r#"{"tag":"REQUEST"}"#, "expected a message"),
            (r#"["REQUEST""#, "EOF"),
        ];
        for (text, expected) in cases {
            let error = Message::from_json(text).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{text}: `{error}` should contain `{expected}`"
            );
        }
    }

    fn any_message() -> impl Strategy<Value = Message> {
        (
            prop::sample::select(Tag::ALL.to_vec()),
            ".*",
            prop::collection::vec(".*", 0..6),
        )
            .prop_map(|(tag, kind, args)| Message { tag, kind, args })
    }

    proptest! {
        #[test]
        fn every_message_survives_json_and_back(msg in any_message()) {
            let json = msg.to_json();
            prop_assert_eq!(Message::from_json(&json).unwrap(), msg);
        }
    }
}
