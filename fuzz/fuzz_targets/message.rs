//! A wire message as the agent's `/call` and the CLI read it: `Message::from_json_slice`.
#![no_main]

use damrey_fuzz::round_trip;
use damrey_wire::{Message, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = Message::from_json_slice(data);
    // The text entry point agrees with the bytes one.
    if let Ok(text) = std::str::from_utf8(data) {
        let from_text = Message::from_json(text);
        assert_eq!(from_text.as_ref().ok(), parsed.as_ref().ok());
    }
    let Ok(msg) = parsed else { return };
    let written = round_trip(&msg);
    assert_eq!(written, msg.to_json());
    assert_eq!(Message::from_json(&written).unwrap(), msg);
    // The words are the wire list, led by the tag; Display is them joined by spaces.
    let words: Vec<&str> = msg.words().collect();
    assert_eq!(words[0].parse::<Tag>().unwrap(), msg.tag);
    assert_eq!(msg.to_string(), words.join(" "));
    assert_eq!(msg.ends_line(), msg.tag.ends_line());
});
