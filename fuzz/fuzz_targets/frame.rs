//! A worker ⇄ agent frame as both ends read it: `serde_json::from_slice::<Frame>` (the
//! agent's `attach`, the runtime's `link`).
#![no_main]

use damrey_fuzz::round_trip;
use damrey_wire::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = serde_json::from_slice::<Frame>(data) else {
        return;
    };
    let written = round_trip(&frame);
    assert_eq!(written, frame.to_json());
});
