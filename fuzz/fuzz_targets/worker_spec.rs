//! A worker config as the proxy's `POST /worker/add|chg|del` read it (actix's `Json`, i.e.
//! serde_json, which validates through `TryFrom<RawWorkerSpec>`), and the warnings the
//! proxy computes for it.
#![no_main]

use damrey_fuzz::round_trip;
use damrey_wire::WorkerSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<WorkerSpec>(data) else {
        return;
    };
    // Deserializing validated it; it stays valid, and survives the store's JSON.
    spec.validate().expect("a parsed spec validates");
    round_trip(&spec);
    spec.alarm_rules()
        .validate()
        .expect("the rules that apply are valid");
    spec.outlier_rules()
        .validate()
        .expect("the rules that apply are valid");
    for command in &spec.commands {
        assert_eq!(
            spec.next_worker(&command.name),
            Some(command.worker.as_str())
        );
    }
    // Warnings end (loops are detected) and never panic, alone or among others.
    let _ = spec.warnings(&[]);
    let _ = spec.warnings(std::slice::from_ref(&spec));
    let others: Vec<WorkerSpec> = spec
        .commands
        .iter()
        .filter(|c| !c.worker.is_empty())
        .map(|c| WorkerSpec::new(c.worker.clone()).command(c.name.clone(), spec.name.clone()))
        .collect();
    let _ = spec.warnings(&others);
});
