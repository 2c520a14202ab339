//! Everything one seed decides, drawn from one seeded PRNG before anything runs: the
//! topology (agents, workers, their instances and configs, the lines), the load and the
//! fault schedule with its timing. The mesh's behaviour varies between runs; the plan
//! never does.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Configs, Spec};
use crate::step::{self, MAX_SLEEP};

/// A test worker: its config and where its instances run.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// `w{i}`, or `x{i}` for a worker added and deleted during the run.
    pub name: String,
    /// The agent it is pinned to (its `agent` field), if any.
    pub pinned: Option<usize>,
    /// Its `mpu` (0 is unlimited).
    pub mpu: u32,
    /// Its step timeout.
    pub timeout_ms: u64,
    /// The agent of each instance.
    pub instances: Vec<usize>,
    /// Added and deleted by a fault rather than configured from the start.
    pub extra: bool,
}

/// Who a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Instance `instance` of worker `worker` (indexes into the plan).
    Worker(usize, usize),
    /// An agent.
    Agent(usize),
    /// The proxy.
    Proxy,
}

/// How a process is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `kill -9`, then a restart.
    Kill,
    /// `SIGTERM` (a clean stop), then a restart.
    Term,
    /// `SIGSTOP`, then `SIGCONT`.
    Stop,
}

/// One fault: what happens, and for how long.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// A process is killed, stopped or frozen, and restarted (or thawed) after `down`.
    Process {
        /// Who.
        target: Target,
        /// How.
        signal: Signal,
        /// How long it stays down (or frozen).
        down: Duration,
    },
    /// The link between two hosts is cut (netns mode; a no-op on loopback).
    Cut {
        /// One host (agent index).
        a: usize,
        /// The other.
        b: usize,
        /// How long.
        down: Duration,
    },
    /// Host `host` is taken off the network (`docker network disconnect` in container
    /// mode, its link down in netns mode; a no-op on loopback) for `down`: its agent
    /// and workers run on, reaching each other but nobody else.
    Isolate {
        /// The host (agent index).
        host: usize,
        /// How long.
        down: Duration,
    },
    /// The type entering hop `hop` of `line` goes to worker `to` instead.
    Redirect {
        /// The line.
        line: usize,
        /// The hop whose worker changes (at least 1).
        hop: usize,
        /// The worker that takes it over.
        to: usize,
        /// How long before it is changed back.
        hold: Duration,
    },
    /// The line ends after hop `hop - 1` (its result is the final reply).
    EndEarly {
        /// The line.
        line: usize,
        /// The first hop that no longer runs.
        hop: usize,
        /// How long.
        hold: Duration,
    },
    /// A worker's `mpu` changes.
    Mpu {
        /// The worker.
        worker: usize,
        /// The new `mpu`.
        mpu: u32,
        /// How long.
        hold: Duration,
    },
    /// Instance `instance` of worker `worker` fails every step at once (its handler
    /// panics) for `hold`, then works again: agents should eject it while others serve.
    Failing {
        /// The worker.
        worker: usize,
        /// Its instance.
        instance: usize,
        /// How long it fails.
        hold: Duration,
    },
    /// Extra worker `worker` is added, started, takes over hop `hop` of `line`, gives
    /// it back, is stopped and deleted.
    AddDelete {
        /// The extra worker.
        worker: usize,
        /// The line.
        line: usize,
        /// The hop.
        hop: usize,
        /// How long it holds the hop.
        hold: Duration,
    },
}

/// A fault and when it starts, from the start of the load.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Its start.
    pub at: Duration,
    /// What it is.
    pub kind: FaultKind,
}

/// What one planned request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// `POST /call/{first worker of line}` at agent `entry`.
    Call {
        /// The line.
        line: usize,
    },
    /// `POST /call/{driver}` with `o{line}`: the driver puts the sub-request itself.
    Drive {
        /// The driving worker.
        driver: usize,
        /// The line of its sub-request.
        line: usize,
        /// Pushed (no reply) rather than requested.
        push: bool,
    },
}

/// One planned request.
#[derive(Debug, Clone)]
pub struct Load {
    /// Its index: the request id is `r{index}`.
    pub index: usize,
    /// When it is sent, from the start of the load (later if too many are in flight).
    pub at: Duration,
    /// The agent it is put to.
    pub entry: usize,
    /// What it is.
    pub kind: LoadKind,
    /// The value it carries.
    pub value: u64,
    /// Its deadline (`timeout_ms`).
    pub deadline: Duration,
    /// For a drive, the sub-request's deadline.
    pub sub_deadline: Duration,
}

impl Load {
    /// The request id.
    pub fn request_id(&self) -> String {
        format!("r{}", self.index)
    }
}

/// Everything one seed decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed.
    pub seed: u64,
    /// How many agents (hosts).
    pub agents: usize,
    /// The agents' `-r`.
    pub retries: u32,
    /// The workers, extra ones last.
    pub workers: Vec<WorkerPlan>,
    /// Each line's worker per hop.
    pub lines: Vec<Vec<usize>>,
    /// Drivers: `(worker, line)` pairs whose config lets the worker put line's requests.
    pub drivers: Vec<(usize, usize)>,
    /// Redirect targets configured from the start: `(line, hop, worker)`.
    pub alternates: Vec<(usize, usize, usize)>,
    /// The fault schedule.
    pub faults: Vec<Fault>,
    /// The requests.
    pub load: Vec<Load>,
    /// Most requests in flight from the checker.
    pub concurrency: usize,
    /// How long faults are injected; the load runs on through a quiet tail.
    pub duration: Duration,
}

/// Seeds the stream that draws the failing-instance fault (see [`FaultKind::Failing`]).
const FAILING_STREAM: u64 = 0xFA11_1AC7;
/// Seeds the stream that draws the isolated host (see [`FaultKind::Isolate`]).
const ISOLATE_STREAM: u64 = 0x150_1A7E;

/// The quiet tail after the fault window: load goes on with no fault, so that I4 is tried.
pub const QUIET_TAIL: Duration = Duration::from_millis(3_500);

impl Plan {
    /// The plan of `seed` with faults injected for `duration`.
    pub fn new(seed: u64, duration: Duration) -> Plan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let agents = rng.gen_range(2..=4);
        let retries = rng.gen_range(2..=6);
        let n_workers = rng.gen_range(3..=8);
        let mut workers: Vec<WorkerPlan> = (0..n_workers)
            .map(|i| {
                let pinned = rng.gen_bool(0.2).then(|| rng.gen_range(0..agents));
                let count = if rng.gen_bool(0.4) { 2 } else { 1 };
                let instances = (0..count)
                    .map(|_| pinned.unwrap_or_else(|| rng.gen_range(0..agents)))
                    .collect();
                WorkerPlan {
                    name: format!("w{i}"),
                    pinned,
                    mpu: [0, 0, 1, 2, 4][rng.gen_range(0..5)],
                    timeout_ms: rng.gen_range(2_000..=4_000),
                    instances,
                    extra: false,
                }
            })
            .collect();
        // Where each worker runs (its first instance), to zigzag between agents.
        let home: Vec<usize> = workers.iter().map(|worker| worker.instances[0]).collect();
        let n_lines = rng.gen_range(2..=4);
        let lines: Vec<Vec<usize>> = (0..n_lines)
            .map(|_| {
                let len = rng.gen_range(1..=6);
                let mut path = vec![rng.gen_range(0..n_workers)];
                while path.len() < len {
                    let last = *path.last().expect("a path starts with one worker");
                    let elsewhere: Vec<usize> =
                        (0..n_workers).filter(|w| home[*w] != home[last]).collect();
                    let next = if !elsewhere.is_empty() && rng.gen_bool(0.7) {
                        elsewhere[rng.gen_range(0..elsewhere.len())]
                    } else {
                        rng.gen_range(0..n_workers)
                    };
                    path.push(next);
                }
                path
            })
            .collect();
        let drivers: Vec<(usize, usize)> = (0..rng.gen_range(1..=2))
            .map(|_| (rng.gen_range(0..n_workers), rng.gen_range(0..n_lines)))
            .collect();
        // Drivers wait on their sub-requests: their step timeout covers the longest one,
        // and no `mpu` makes the other steps they run queue behind a whole sub-line.
        for (driver, _) in &drivers {
            workers[*driver].timeout_ms = 12_000;
            workers[*driver].mpu = 0;
        }
        let is_driver = |worker: usize| drivers.iter().any(|(driver, _)| *driver == worker);
        let extra = workers.len();
        let extra_agent = rng.gen_range(0..agents);
        workers.push(WorkerPlan {
            name: "x0".to_owned(),
            pinned: None,
            mpu: 0,
            timeout_ms: 3_000,
            instances: vec![extra_agent],
            extra: true,
        });

        let mut alternates = Vec::new();
        let mut faults = Vec::new();
        let window = duration.as_millis().max(1_000) as u64;
        let n_faults = rng.gen_range(2..=(2 + window / 1_500).min(8));
        // A process is hit by one fault at a time.
        let mut busy: BTreeMap<Target, u64> = BTreeMap::new();
        for _ in 0..n_faults {
            let at = rng.gen_range(0..window);
            let kind = match rng.gen_range(0..100) {
                0..=44 => {
                    let target = match rng.gen_range(0..10) {
                        0..=5 => {
                            let worker = rng.gen_range(0..n_workers);
                            Target::Worker(
                                worker,
                                rng.gen_range(0..workers[worker].instances.len()),
                            )
                        }
                        6..=8 => Target::Agent(rng.gen_range(0..agents)),
                        _ => Target::Proxy,
                    };
                    let signal = match rng.gen_range(0..3) {
                        0 => Signal::Kill,
                        1 => Signal::Term,
                        _ => Signal::Stop,
                    };
                    let down = Duration::from_millis(rng.gen_range(100..=1_500));
                    let free = busy.get(&target).copied().unwrap_or(0);
                    if free > at {
                        continue;
                    }
                    // A restart takes a few seconds more than the outage itself.
                    busy.insert(target, at + down.as_millis() as u64 + 4_000);
                    FaultKind::Process {
                        target,
                        signal,
                        down,
                    }
                }
                45..=54 => {
                    let a = rng.gen_range(0..agents);
                    let b = (a + rng.gen_range(1..agents)) % agents;
                    FaultKind::Cut {
                        a,
                        b,
                        down: Duration::from_millis(rng.gen_range(200..=2_000)),
                    }
                }
                55..=72 => {
                    let line = rng.gen_range(0..n_lines);
                    let hold = Duration::from_millis(rng.gen_range(300..=2_500));
                    if lines[line].len() < 2 {
                        if is_driver(lines[line][0]) {
                            continue;
                        }
                        FaultKind::Mpu {
                            worker: lines[line][0],
                            mpu: rng.gen_range(1..=3),
                            hold,
                        }
                    } else {
                        let hop = rng.gen_range(1..lines[line].len());
                        let to = (lines[line][hop] + rng.gen_range(1..n_workers)) % n_workers;
                        alternates.push((line, hop, to));
                        FaultKind::Redirect {
                            line,
                            hop,
                            to,
                            hold,
                        }
                    }
                }
                73..=80 => {
                    let line = rng.gen_range(0..n_lines);
                    let hold = Duration::from_millis(rng.gen_range(300..=2_000));
                    if lines[line].len() < 2 {
                        continue;
                    }
                    FaultKind::EndEarly {
                        line,
                        hop: rng.gen_range(1..lines[line].len()),
                        hold,
                    }
                }
                81..=90 => {
                    let worker = rng.gen_range(0..n_workers);
                    let mpu = rng.gen_range(1..=3);
                    let hold = Duration::from_millis(rng.gen_range(500..=3_000));
                    if is_driver(worker) {
                        continue;
                    }
                    FaultKind::Mpu { worker, mpu, hold }
                }
                _ => {
                    let line = rng.gen_range(0..n_lines);
                    if lines[line].len() < 2 || busy.contains_key(&Target::Worker(extra, 0)) {
                        continue;
                    }
                    busy.insert(Target::Worker(extra, 0), u64::MAX);
                    FaultKind::AddDelete {
                        worker: extra,
                        line,
                        hop: rng.gen_range(1..lines[line].len()),
                        hold: Duration::from_millis(rng.gen_range(500..=2_000)),
                    }
                }
            };
            faults.push(Fault {
                at: Duration::from_millis(at),
                kind,
            });
        }
        // A failing instance, drawn from a stream of its own so that the rest of every
        // seed's plan stays what it was before this fault kind existed.
        let mut failing = ChaCha8Rng::seed_from_u64(seed ^ FAILING_STREAM);
        if failing.gen_bool(0.6) {
            // Mostly one of two instances: a failing instance among healthy ones.
            let pairs: Vec<usize> = (0..n_workers)
                .filter(|worker| workers[*worker].instances.len() == 2)
                .collect();
            let worker = if !pairs.is_empty() && failing.gen_bool(0.8) {
                pairs[failing.gen_range(0..pairs.len())]
            } else {
                failing.gen_range(0..n_workers)
            };
            let instance = failing.gen_range(0..workers[worker].instances.len());
            let at = failing.gen_range(0..window);
            let hold = Duration::from_millis(failing.gen_range(1_000..=3_000));
            let target = Target::Worker(worker, instance);
            if busy.get(&target).is_none_or(|free| *free <= at) {
                busy.insert(target, at + hold.as_millis() as u64 + 1_000);
                faults.push(Fault {
                    at: Duration::from_millis(at),
                    kind: FaultKind::Failing {
                        worker,
                        instance,
                        hold,
                    },
                });
            }
        }
        // An isolated host, from a stream of its own for the same reason; its agent is
        // hit by no process fault meanwhile.
        let mut isolate = ChaCha8Rng::seed_from_u64(seed ^ ISOLATE_STREAM);
        if isolate.gen_bool(0.4) {
            let host = isolate.gen_range(0..agents);
            let at = isolate.gen_range(0..window);
            let down = Duration::from_millis(isolate.gen_range(300..=2_000));
            let target = Target::Agent(host);
            let (from, to) = (Duration::from_millis(at), Duration::from_millis(at) + down);
            let overlaps = faults.iter().any(|fault| match fault.kind {
                FaultKind::Process {
                    target: hit,
                    signal,
                    down: hit_down,
                } if hit == target => {
                    // Back after the restart; a clean stop drains for up to 5 s first.
                    let back = match signal {
                        Signal::Term => Duration::from_secs(10),
                        Signal::Kill | Signal::Stop => Duration::from_secs(4),
                    };
                    fault.at < to + Duration::from_secs(4) && from < fault.at + hit_down + back
                }
                _ => false,
            });
            if !overlaps {
                faults.push(Fault {
                    at: Duration::from_millis(at),
                    kind: FaultKind::Isolate { host, down },
                });
            }
        }
        faults.sort_by_key(|fault| fault.at);

        let concurrency = rng.gen_range(3..=6);
        let total = window + QUIET_TAIL.as_millis() as u64;
        let mut load = Vec::new();
        let mut at = 0;
        while at < total {
            let index = load.len();
            let entry = rng.gen_range(0..agents);
            let value = rng.gen_range(0..step::MODULUS);
            let drive = rng.gen_bool(0.15);
            let (kind, line) = if drive {
                let (driver, line) = drivers[rng.gen_range(0..drivers.len())];
                let push = rng.gen_bool(0.3);
                (LoadKind::Drive { driver, line, push }, line)
            } else {
                let line = rng.gen_range(0..n_lines);
                (LoadKind::Call { line }, line)
            };
            let sub_deadline = line_deadline(lines[line].len());
            let deadline = match kind {
                LoadKind::Call { .. } => sub_deadline,
                LoadKind::Drive { .. } => sub_deadline + Duration::from_millis(1_500),
            };
            load.push(Load {
                index,
                at: Duration::from_millis(at),
                entry,
                kind,
                value,
                deadline,
                sub_deadline,
            });
            at += rng.gen_range(10..=90);
        }
        Plan {
            seed,
            agents,
            retries,
            workers,
            lines,
            drivers,
            alternates,
            faults,
            load,
            concurrency,
            duration,
        }
    }

    /// The extra workers' index range.
    pub fn is_extra(&self, worker: usize) -> bool {
        self.workers[worker].extra
    }

    /// The base configs (extra workers not yet added).
    pub fn base_configs(&self, agent_address: &dyn Fn(usize) -> String) -> Configs {
        let mut configs = Configs::new();
        for worker in self.workers.iter().filter(|worker| !worker.extra) {
            configs.insert(
                worker.name.clone(),
                Spec {
                    agent: worker.pinned.map(agent_address).unwrap_or_default(),
                    mpu: worker.mpu,
                    commands: BTreeMap::new(),
                },
            );
        }
        let name = |worker: usize| self.workers[worker].name.clone();
        let route_after = |line: usize, hop: usize| {
            self.lines[line]
                .get(hop + 1)
                .map(|next| name(*next))
                .unwrap_or_default()
        };
        for (line, path) in self.lines.iter().enumerate() {
            for (hop, worker) in path.iter().enumerate() {
                let commands = &mut configs
                    .get_mut(&name(*worker))
                    .expect("configured")
                    .commands;
                commands.insert(step::line_type(line, hop + 1), route_after(line, hop));
            }
        }
        for &(line, hop, to) in &self.alternates {
            let commands = &mut configs.get_mut(&name(to)).expect("configured").commands;
            commands.insert(step::line_type(line, hop + 1), route_after(line, hop));
        }
        // What a worker accepts but never sends on: listed, going nowhere.
        for (line, path) in self.lines.iter().enumerate() {
            for (hop, worker) in path.iter().enumerate() {
                let commands = &mut configs
                    .get_mut(&name(*worker))
                    .expect("configured")
                    .commands;
                commands.entry(step::line_type(line, hop)).or_default();
            }
        }
        for &(line, hop, to) in &self.alternates {
            let commands = &mut configs.get_mut(&name(to)).expect("configured").commands;
            commands.entry(step::line_type(line, hop)).or_default();
        }
        for &(driver, line) in &self.drivers {
            let commands = &mut configs.get_mut(&name(driver)).expect("configured").commands;
            commands.insert(step::drive_type(line), String::new());
            commands.insert(step::line_type(line, 0), name(self.lines[line][0]));
        }
        configs
    }

    /// The config of extra worker `worker` taking over hop `hop` of `line`.
    pub fn extra_spec(&self, line: usize, hop: usize) -> Spec {
        let mut commands = BTreeMap::new();
        commands.insert(step::line_type(line, hop), String::new());
        commands.insert(
            step::line_type(line, hop + 1),
            self.lines[line]
                .get(hop + 1)
                .map(|next| self.workers[*next].name.clone())
                .unwrap_or_default(),
        );
        Spec {
            agent: String::new(),
            mpu: 0,
            commands,
        }
    }
}

/// A deadline no healthy mesh misses: the slowest steps, queueing behind the few other
/// requests in flight at each hop, and a margin for the machine being busy.
pub fn line_deadline(hops: usize) -> Duration {
    let per_hop = MAX_SLEEP * 2 + Duration::from_millis(60);
    Duration::from_millis(1_500) + per_hop * hops as u32
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Process {
                target,
                signal,
                down,
            } => {
                let signal = match signal {
                    Signal::Kill => "kill -9",
                    Signal::Term => "SIGTERM",
                    Signal::Stop => "SIGSTOP",
                };
                let target = match target {
                    Target::Worker(worker, instance) => format!("worker w{worker}#{instance}"),
                    Target::Agent(agent) => format!("agent a{agent}"),
                    Target::Proxy => "proxy".to_owned(),
                };
                write!(f, "{signal} {target} for {}ms", down.as_millis())
            }
            FaultKind::Cut { a, b, down } => {
                write!(f, "cut a{a}<->a{b} for {}ms", down.as_millis())
            }
            FaultKind::Isolate { host, down } => {
                write!(
                    f,
                    "isolate a{host} from the network for {}ms",
                    down.as_millis()
                )
            }
            FaultKind::Redirect {
                line,
                hop,
                to,
                hold,
            } => write!(
                f,
                "redirect line {line} hop {hop} to w{to} for {}ms",
                hold.as_millis()
            ),
            FaultKind::EndEarly { line, hop, hold } => write!(
                f,
                "end line {line} before hop {hop} for {}ms",
                hold.as_millis()
            ),
            FaultKind::Mpu { worker, mpu, hold } => {
                write!(f, "mpu of w{worker} to {mpu} for {}ms", hold.as_millis())
            }
            FaultKind::Failing {
                worker,
                instance,
                hold,
            } => write!(
                f,
                "failing worker w{worker}#{instance} for {}ms",
                hold.as_millis()
            ),
            FaultKind::AddDelete {
                line, hop, hold, ..
            } => write!(
                f,
                "add x0, redirect line {line} hop {hop} to it for {}ms, delete it",
                hold.as_millis()
            ),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} agents (-r {}), {} requests, {} in flight",
            self.seed,
            self.agents,
            self.retries,
            self.load.len(),
            self.concurrency
        )?;
        for worker in &self.workers {
            writeln!(
                f,
                "  {}: instances on {:?}{}, mpu {}, timeout {}ms{}",
                worker.name,
                worker.instances,
                worker
                    .pinned
                    .map(|agent| format!(" (pinned to a{agent})"))
                    .unwrap_or_default(),
                worker.mpu,
                worker.timeout_ms,
                if worker.extra {
                    ", added by a fault"
                } else {
                    ""
                }
            )?;
        }
        for (line, path) in self.lines.iter().enumerate() {
            let names: Vec<&str> = path
                .iter()
                .map(|worker| self.workers[*worker].name.as_str())
                .collect();
            writeln!(f, "  line {line}: {}", names.join(" => "))?;
        }
        for (driver, line) in &self.drivers {
            writeln!(f, "  w{driver} drives line {line} from its outbox")?;
        }
        for (index, fault) in self.faults.iter().enumerate() {
            writeln!(
                f,
                "  fault {index} at {}ms: {}",
                fault.at.as_millis(),
                fault.kind
            )?;
        }
        Ok(())
    }
}

/// The command that replays `seed` with these faults (all when `None`).
pub fn replay_command(
    seed: u64,
    faults: Option<&std::collections::BTreeSet<usize>>,
    duration: Duration,
    mode: crate::hosts::Mode,
) -> String {
    let mut command =
        format!("cargo build --workspace --bins && target/debug/damrey-chaos --seed {seed}");
    match mode {
        crate::hosts::Mode::Netns => {}
        crate::hosts::Mode::Loopback => command.push_str(" --loopback"),
        crate::hosts::Mode::Containers => command.push_str(" --containers"),
    }
    if duration != crate::DEFAULT_DURATION {
        command.push_str(&format!(" --duration {}", duration.as_millis()));
    }
    if let Some(faults) = faults {
        let list: Vec<String> = faults.iter().map(usize::to_string).collect();
        command.push_str(&format!(" --faults '{}'", list.join(",")));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_makes_the_same_plan() {
        let one = format!("{}", Plan::new(7, Duration::from_secs(6)));
        let two = format!("{}", Plan::new(7, Duration::from_secs(6)));
        assert_eq!(one, two);
        assert_ne!(one, format!("{}", Plan::new(8, Duration::from_secs(6))));
    }

    #[test]
    fn every_line_is_configured_end_to_end() {
        for seed in 0..200 {
            let plan = Plan::new(seed, Duration::from_secs(6));
            let configs = plan.base_configs(&|agent| format!("10.0.0.{agent}:7701"));
            for (line, path) in plan.lines.iter().enumerate() {
                let outcomes = crate::model::outcomes(
                    &[std::sync::Arc::new(configs.clone())],
                    &plan.workers[path[0]].name,
                    &step::line_type(line, 0),
                    "r0",
                    5,
                );
                assert_eq!(outcomes.responses.len(), 1, "seed {seed} line {line}");
                assert!(outcomes.errors.is_empty(), "seed {seed} line {line}");
            }
        }
    }
}
