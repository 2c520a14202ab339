//! An agent ⇄ agent frame as the agent's `peers` reads it: `serde_json::from_slice::<PeerFrame>`.
#![no_main]

use damrey_fuzz::round_trip;
use damrey_wire::peer::PeerFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = serde_json::from_slice::<PeerFrame>(data) else {
        return;
    };
    round_trip(&frame);
});
