//! Shrinking a failing schedule: replay the seed without one fault at a time and keep
//! each removal after which it still fails. Each invariant the run broke is shrunk on
//! its own (a fault-free bug would otherwise hide the fault that caused another). Runs
//! are real processes and replays are not bit-exact, so a candidate counts as failing
//! when any of a few attempts breaks that invariant.

use std::collections::BTreeSet;

use crate::run::{Options, Report, run_seed};

/// Whether the seed still breaks `invariant` with only `faults`.
async fn still_fails(
    options: &Options,
    faults: &BTreeSet<usize>,
    invariant: &str,
    attempts: usize,
    log: &dyn Fn(&str),
) -> bool {
    for attempt in 1..=attempts {
        let mut candidate = options.clone();
        candidate.faults = Some(faults.clone());
        candidate.keep = false;
        match run_seed(&candidate).await {
            Ok(report) => {
                let broken: BTreeSet<&str> =
                    report.violations.iter().map(|v| v.invariant).collect();
                log(&format!(
                    "  faults {faults:?}, attempt {attempt}: {}",
                    if broken.is_empty() {
                        "passes".to_owned()
                    } else {
                        format!("breaks {broken:?}")
                    }
                ));
                if broken.contains(invariant) {
                    return true;
                }
            }
            Err(error) => log(&format!(
                "  faults {faults:?}, attempt {attempt}: setup failed: {error}"
            )),
        }
    }
    false
}

/// The smallest subset of the failing run's faults found that still breaks `invariant`.
pub async fn shrink(
    options: &Options,
    failing: &Report,
    invariant: &str,
    attempts: usize,
    log: &dyn Fn(&str),
) -> BTreeSet<usize> {
    let mut current = failing.faults.clone();
    if current.is_empty() {
        return current;
    }
    if still_fails(options, &BTreeSet::new(), invariant, attempts, log).await {
        return BTreeSet::new();
    }
    // Passes until one removes nothing: a fault kept in an early pass may turn out
    // unneeded once another is gone.
    loop {
        let before = current.len();
        for fault in current.clone() {
            if current.len() == 1 {
                break;
            }
            let mut candidate = current.clone();
            candidate.remove(&fault);
            if still_fails(options, &candidate, invariant, attempts, log).await {
                current = candidate;
            }
        }
        if current.len() == before || current.len() == 1 {
            break;
        }
    }
    current
}
