//! The properties every fuzz target checks of what it parsed, declared once.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Whatever parsed must serialize, parse back to an equal value, and serialize to the
/// same text again (the written form is a fixed point). Returns the written form.
///
/// # Panics
/// When a step fails or a value differs: that is the finding the fuzzer reports.
pub fn round_trip<T>(parsed: &T) -> String
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let written = serde_json::to_string(parsed).expect("what parsed serializes");
    let reparsed: T = serde_json::from_str(&written).unwrap_or_else(|e| {
        panic!("{written} was written from {parsed:?} but does not parse: {e}")
    });
    assert_eq!(&reparsed, parsed, "{written} parses to another value");
    let rewritten = serde_json::to_string(&reparsed).expect("what parsed serializes");
    assert_eq!(rewritten, written, "the written form is not stable");
    written
}

/// Reads `data` as a binary message of the internal links, as the agent and the runtime
/// do: every frame that reads must encode to a record that reads back to it, and every
/// frame must also survive the JSON form.
///
/// # Panics
/// When a frame does not survive: that is the finding the fuzzer reports.
pub fn binary_round_trip<F>(data: &[u8])
where
    F: damrey_wire::binary::LinkFrame + PartialEq + Debug,
{
    use damrey_wire::binary::{Encoded, Form};
    for frame in F::from_binary(data).flatten() {
        let Encoded::Binary(record) = frame.encode(Form::Binary) else {
            panic!("the binary form is binary")
        };
        let mut again = F::from_binary(&record);
        let reread = again.next().expect("one record").expect("what was written reads");
        assert_eq!(reread, frame, "{record:?} reads to another frame");
        assert!(again.next().is_none(), "one record, one frame");
        round_trip(&frame);
    }
}
