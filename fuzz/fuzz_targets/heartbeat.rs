//! An agent's heartbeat as the proxy's `POST /agents/heartbeat` reads it: serde_json, then
//! `Heartbeat::validate`, then the counters' sums and quantiles the proxy derives, and
//! each worker's refused steps.
#![no_main]

use damrey_fuzz::round_trip;
use damrey_wire::report::Heartbeat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(data) else {
        return;
    };
    let verdict = heartbeat.validate();
    round_trip(&heartbeat);
    // Validation depends on the value only, not on how it was written.
    let written: Heartbeat =
        serde_json::from_str(&serde_json::to_string(&heartbeat).unwrap()).unwrap();
    assert_eq!(written.validate(), verdict);
    if verdict.is_err() {
        return;
    }
    for report in &heartbeat.stats {
        let _ = report.processed();
        let _ = report.latency.count();
        for q in [0.0, 0.5, 0.99, 1.0] {
            if let Some(ms) = report.latency.quantile_ms(q) {
                assert!(ms.is_finite() && ms >= 0.0, "quantile {q} is {ms}");
            }
        }
    }
    for routing in heartbeat.routing.values() {
        let _ = routing.refused();
    }
});
