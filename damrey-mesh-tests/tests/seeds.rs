//! The CI set of the seeded fault checker: a fixed list of seeds, each run against the
//! binaries built from this tree (by the support, before the first seed), every
//! violation printed with the command that replays it.

use std::time::Instant;

use damrey_chaos::mesh::Binaries;
use damrey_chaos::run::{Options, run_seed};
use damrey_mesh_tests::binaries::binary;

/// Fixed, so that CI always tries the same topologies and schedules; chosen (with
/// `damrey-chaos --dry-run`) so that together they kill, stop and freeze workers,
/// agents and the proxy, cut links, and redirect, end, re-`mpu`, add and delete.
const SEEDS: &[u64] = &[2, 7, 10, 12, 16, 18, 42, 48, 53, 58];

#[actix_rt::test]
async fn the_ci_seeds_keep_every_guarantee() {
    let binaries = Binaries {
        proxy: binary("damrey-proxy"),
        agent: binary("damrey-agent"),
        worker: binary("chaos-worker"),
    };
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in SEEDS {
        let options = Options {
            seed: *seed,
            duration: damrey_chaos::DEFAULT_DURATION,
            faults: None,
            loopback: false,
            binaries: binaries.clone(),
            keep: false,
        };
        let report = run_seed(&options)
            .await
            .unwrap_or_else(|error| panic!("seed {seed}: setup failed: {error}"));
        print!("{}", report.render(options.duration));
        if !report.violations.is_empty() {
            failed.push(*seed);
        }
    }
    println!(
        "{} seeds in {:.0}s",
        SEEDS.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "seeds {failed:?} broke a guarantee (see above; each prints its replay command); \
         shrink one with `target/debug/damrey-chaos --seed N`"
    );
}
