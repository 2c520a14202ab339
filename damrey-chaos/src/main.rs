//! `damrey-chaos --seed N [--seeds K] [--duration MS] [--faults 0,3,5]`: runs seeds
//! N..N+K-1, prints each run and every violation, shrinks a failing schedule to the
//! smallest that still fails, and exits non-zero on any violation.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use damrey_chaos::hosts::Wanted;
use damrey_chaos::mesh::Binaries;
use damrey_chaos::plan::replay_command;
use damrey_chaos::run::{Options, run_seed};
use damrey_chaos::shrink::shrink;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "damrey-chaos",
    about = "Damrey's seeded fault checker: random topologies, faults and config changes, every reply checked"
)]
struct Cli {
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How many seeds, from --seed on.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// How long faults are injected per seed, in ms (the plan depends on it).
    #[arg(long, default_value_t = damrey_chaos::DEFAULT_DURATION.as_millis() as u64)]
    duration: u64,
    /// Only these faults of the seed's schedule, by index (`--faults 0,3,5`; `''` for none).
    #[arg(long)]
    faults: Option<String>,
    /// Run every agent on loopback even where network namespaces are available.
    #[arg(long, conflicts_with = "containers")]
    loopback: bool,
    /// Run each host as Docker containers on a network of the run's own (docs/chaos.md).
    #[arg(long)]
    containers: bool,
    /// The image of the containers: any with a libc matching this machine's.
    #[arg(long, default_value = damrey_chaos::hosts::DEFAULT_IMAGE, requires = "containers")]
    image: String,
    /// Keep each run's directory (process logs, worker records).
    #[arg(long)]
    keep: bool,
    /// Report violations without shrinking the schedule.
    #[arg(long)]
    no_shrink: bool,
    /// Replays per shrink candidate.
    #[arg(long, default_value_t = 2)]
    attempts: usize,
    /// Print each seed's plan (topology, load, faults) without running anything.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let faults = match cli.faults.as_deref().map(parse_faults).transpose() {
        Ok(faults) => faults,
        Err(error) => {
            eprintln!("--faults: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.dry_run {
        for seed in cli.seed..cli.seed + cli.seeds {
            print!(
                "{}",
                damrey_chaos::plan::Plan::new(seed, Duration::from_millis(cli.duration))
            );
        }
        return ExitCode::SUCCESS;
    }
    let binaries = match std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| Binaries::beside(&exe.with_file_name("chaos-worker")))
    {
        Ok(binaries) => binaries,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let system = actix_rt::System::new();
    let failed = system.block_on(async move {
        tokio::select! {
            failed = run_all(&cli, faults, binaries) => failed,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping every process and removing the hosts");
                true
            }
        }
    });
    drop(system);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_faults(text: &str) -> Result<BTreeSet<usize>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<usize>().map_err(|e| format!("{part:?}: {e}")))
        .collect()
}

/// Runs every seed; whether any broke an invariant (or could not be set up).
async fn run_all(cli: &Cli, faults: Option<BTreeSet<usize>>, binaries: Binaries) -> bool {
    let started = Instant::now();
    let duration = Duration::from_millis(cli.duration);
    let mut failing = Vec::new();
    for seed in cli.seed..cli.seed + cli.seeds {
        let options = Options {
            seed,
            duration,
            faults: faults.clone(),
            hosts: if cli.containers {
                Wanted::Containers(cli.image.clone())
            } else if cli.loopback {
                Wanted::Loopback
            } else {
                Wanted::Best
            },
            binaries: binaries.clone(),
            keep: cli.keep,
        };
        let report = match run_seed(&options).await {
            Ok(report) => report,
            Err(error) => {
                println!("== seed {seed}: setup failed: {error}");
                failing.push((seed, None));
                continue;
            }
        };
        print!("{}", report.render(duration));
        if report.violations.is_empty() {
            continue;
        }
        let smallest = if cli.no_shrink {
            None
        } else {
            let invariants: BTreeSet<&str> =
                report.violations.iter().map(|v| v.invariant).collect();
            let mut smallest = Vec::new();
            for invariant in invariants {
                println!(
                    "  shrinking seed {seed}'s {} faults for {invariant}...",
                    report.faults.len()
                );
                let faults = shrink(&options, &report, invariant, cli.attempts, &|line| {
                    println!("{line}")
                })
                .await;
                println!(
                    "  smallest schedule of seed {seed} that breaks {invariant}: faults {faults:?}\n  replay: {}",
                    replay_command(seed, Some(&faults), duration, report.mode)
                );
                smallest.push((invariant, faults));
            }
            Some(smallest)
        };
        failing.push((seed, smallest));
    }
    println!(
        "== {} seed(s) in {:.0}s: {}",
        cli.seeds,
        started.elapsed().as_secs_f64(),
        if failing.is_empty() {
            "no violation".to_owned()
        } else {
            let seeds: Vec<String> = failing.iter().map(|(seed, _)| seed.to_string()).collect();
            format!("seeds {} failed", seeds.join(", "))
        }
    );
    !failing.is_empty()
}
