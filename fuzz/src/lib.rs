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
