//! A worker ⇄ agent message as both ends read it, in both forms: JSON
//! (`serde_json::from_slice::<Frame>`) and binary (`Frame::from_binary`), in the agent's
//! `attach` and the runtime's `link`.
#![no_main]

use damrey_fuzz::{binary_round_trip, round_trip};
use damrey_wire::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    binary_round_trip::<Frame>(data);
    let Ok(frame) = serde_json::from_slice::<Frame>(data) else {
        return;
    };
    round_trip(&frame);
});
