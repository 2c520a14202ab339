//! An agent ⇄ agent message as the agent's `peers` reads it, in both forms: JSON
//! (`serde_json::from_slice::<PeerFrame>`) and binary (`PeerFrame::from_binary`).
#![no_main]

use damrey_fuzz::{binary_round_trip, round_trip};
use damrey_wire::peer::PeerFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    binary_round_trip::<PeerFrame>(data);
    let Ok(frame) = serde_json::from_slice::<PeerFrame>(data) else {
        return;
    };
    round_trip(&frame);
});
