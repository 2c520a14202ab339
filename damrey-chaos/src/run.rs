//! One seed, run: build the hosts and start the mesh, warm it up, drive the planned
//! load while injecting the planned faults, end with a quiet tail and a final counted
//! batch, then hand everything observed to [`crate::check`].

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use damrey_actors::Message;
use tokio::sync::{Mutex, Semaphore};

use crate::check::{self, Violation};
use crate::hosts::{Hosts, Mode, Wanted};
use crate::mesh::{self, Binaries, CallResult, Mesh};
use crate::model::Configs;
use crate::observed::{
    CallOutcome, Ms, Observed, OutboxSeen, ProcessEvent, Span, StepSeen, Version,
};
use crate::plan::{Fault, FaultKind, LoadKind, Plan, Signal, Target};
use crate::record::{self, Record};
use crate::step;

/// How to run one seed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The seed.
    pub seed: u64,
    /// How long faults are injected.
    pub duration: Duration,
    /// Only these faults of the plan (indexes); all when `None`.
    pub faults: Option<BTreeSet<usize>>,
    /// The hosts asked for.
    pub hosts: Wanted,
    /// The binaries.
    pub binaries: Binaries,
    /// Keep the run's directory (logs, records) instead of removing it.
    pub keep: bool,
}

/// What one seed came to.
#[derive(Debug)]
pub struct Report {
    /// The plan.
    pub plan: Plan,
    /// The faults that ran.
    pub faults: BTreeSet<usize>,
    /// The mode that ran.
    pub mode: Mode,
    /// The violations.
    pub violations: Vec<Violation>,
    /// Warnings and notes.
    pub notes: Vec<String>,
    /// A one-line summary of what was sent and answered.
    pub summary: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The kept directory, if any.
    pub dir: Option<PathBuf>,
}

/// The run's clock: an `Instant` for timing, epoch milliseconds for the workers' records.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    start_ms: u64,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            start: Instant::now(),
            start_ms: record::now_ms(),
        }
    }

    fn elapsed(&self) -> Ms {
        self.start.elapsed().as_millis() as Ms
    }

    fn of_epoch(&self, ms: u64) -> Ms {
        ms as Ms - self.start_ms as Ms
    }
}

/// A route or `mpu` that a fault holds for a while.
#[derive(Debug, Clone)]
enum Overlay {
    Route {
        worker: String,
        kind: String,
        to: String,
    },
    Mpu {
        worker: String,
        mpu: u32,
    },
    Extra {
        worker: String,
        spec: crate::model::Spec,
    },
}

/// The configs the checker wants, as base plus overlays, and what the proxy holds.
struct ConfigState {
    base: Configs,
    overlays: Vec<(usize, Overlay)>,
    applied: Configs,
}

impl ConfigState {
    fn wanted(&self) -> Configs {
        let mut configs = self.base.clone();
        for (_, overlay) in &self.overlays {
            match overlay {
                Overlay::Route { worker, kind, to } => {
                    if let Some(spec) = configs.get_mut(worker) {
                        spec.commands.insert(kind.clone(), to.clone());
                    }
                }
                Overlay::Mpu { worker, mpu } => {
                    if let Some(spec) = configs.get_mut(worker) {
                        spec.mpu = *mpu;
                    }
                }
                Overlay::Extra { worker, spec } => {
                    configs.insert(worker.clone(), spec.clone());
                }
            }
        }
        configs
    }
}

/// The shared state of a running seed.
struct Run {
    plan: Plan,
    mesh: Mesh,
    clock: std::cell::Cell<Clock>,
    observed: RefCell<Observed>,
    config: Mutex<ConfigState>,
}

impl Run {
    fn now(&self) -> Ms {
        self.clock.get().elapsed()
    }

    fn start(&self) -> Instant {
        self.clock.get().start
    }

    /// Records a fault's span, ending now; an agent killed or stopped and restarted
    /// is an outage.
    fn span(
        &self,
        fault: Option<usize>,
        label: String,
        from: Ms,
        target: Option<Target>,
        signal: Option<Signal>,
    ) {
        let outage = match target {
            Some(Target::Agent(_)) => matches!(signal, Some(Signal::Kill | Signal::Term)),
            _ => false,
        };
        self.push_span(fault, label, from, target, signal, outage);
    }

    /// Records a fault's span, ending now; `outage` says whether it should cost
    /// requests nothing but time.
    fn push_span(
        &self,
        fault: Option<usize>,
        label: String,
        from: Ms,
        target: Option<Target>,
        signal: Option<Signal>,
        outage: bool,
    ) {
        self.observed.borrow_mut().spans.push(Span {
            fault,
            label,
            from,
            to: self.now(),
            target,
            signal,
            outage,
        });
    }

    /// Adds or removes an overlay and brings the proxy to the wanted configs, one
    /// worker at a time, retrying while the proxy is down. Each change is a version.
    async fn reconfigure(&self, change: impl FnOnce(&mut Vec<(usize, Overlay)>)) {
        let mut state = self.config.lock().await;
        change(&mut state.overlays);
        let wanted = state.wanted();
        let names: BTreeSet<String> = wanted.keys().chain(state.applied.keys()).cloned().collect();
        for name in names {
            let (verb, body) = match (state.applied.get(&name), wanted.get(&name)) {
                (None, Some(spec)) => ("add", spec.to_json(&name)),
                (Some(_), None) => ("del", serde_json::json!({"name": name})),
                (Some(old), Some(new)) if old != new => ("chg", new.to_json(&name)),
                _ => continue,
            };
            let mut next = state.applied.clone();
            match wanted.get(&name) {
                Some(spec) => next.insert(name.clone(), spec.clone()),
                None => next.remove(&name),
            };
            let sent = self.now();
            let started = Instant::now();
            loop {
                let expected = if verb == "add" { 201 } else { 200 };
                match self.mesh.post_worker(verb, &body).await {
                    Ok(status) if status == expected => break,
                    Ok(status) => {
                        self.note(format!("config {verb} {name} answered {status}"));
                        break;
                    }
                    Err(_) if started.elapsed() < Duration::from_secs(30) => {
                        actix_rt::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => {
                        self.note(format!("config {verb} {name} failed: {error}"));
                        break;
                    }
                }
            }
            let acked = self.now();
            state.applied = next.clone();
            self.observed.borrow_mut().versions.push(Version {
                sent,
                acked,
                configs: Arc::new(next),
            });
        }
    }

    fn note(&self, note: String) {
        self.observed.borrow_mut().notes.push(note);
    }

    /// Waits (up to `limit`) until agent `agent` has its instances attached again.
    async fn wait_instances(&self, agent: usize, limit: Duration) {
        let started = Instant::now();
        let expected = self.mesh.running_on(agent) as u64;
        while started.elapsed() < limit {
            if let Some(health) = self.mesh.agent_health(agent).await
                && health["instances"].as_u64() >= Some(expected)
            {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs one seed and checks it; a setup that fails (a port taken between being chosen
/// and bound, on loopback) is started over, up to three times.
///
/// # Errors
/// The mesh could not be set up (not a violation: nothing was checked).
pub async fn run_seed(options: &Options) -> Result<Report, String> {
    let mut last = String::new();
    for _ in 0..3 {
        match run_once(options).await {
            Ok(report) => return Ok(report),
            Err(Setup(error)) => {
                tracing::warn!(%error, "setup failed; starting over");
                last = error;
            }
        }
    }
    Err(last)
}

/// A run that could not be carried out (its setup failed): nothing was checked.
struct Setup(String);

impl From<String> for Setup {
    fn from(error: String) -> Self {
        Setup(error)
    }
}

async fn run_once(options: &Options) -> Result<Report, Setup> {
    let started = Instant::now();
    let mut plan = Plan::new(options.seed, options.duration);
    let chosen: BTreeSet<usize> = match &options.faults {
        Some(subset) => subset
            .iter()
            .copied()
            .filter(|i| *i < plan.faults.len())
            .collect(),
        None => (0..plan.faults.len()).collect(),
    };
    let all_faults = plan.faults.clone();
    plan.faults = all_faults
        .iter()
        .enumerate()
        .filter(|(i, _)| chosen.contains(i))
        .map(|(_, fault)| fault.clone())
        .collect();
    let indexes: Vec<usize> = chosen.iter().copied().collect();

    crate::procs::reap_leftovers();
    let dir = std::env::temp_dir().join(format!(
        "{}{}-{}-{}",
        crate::procs::RUN_DIR_PREFIX,
        std::process::id(),
        options.seed,
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _cleanup = RemoveDir(dir.clone(), !options.keep);
    let hosts = match &options.hosts {
        Wanted::Containers(image) => {
            let binaries = &options.binaries;
            let mounts = vec![
                (binaries.agent.clone(), true),
                (binaries.worker.clone(), true),
                (dir.clone(), false),
            ];
            Hosts::containers(plan.agents, image, mounts)?
        }
        Wanted::Best if crate::hosts::netns_available() => Hosts::netns(plan.agents)?,
        Wanted::Best | Wanted::Loopback => Hosts::loopback(plan.agents),
    };
    let mode = hosts.mode;
    let mesh = Mesh::new(&plan, hosts, options.binaries.clone(), dir.clone());

    let addresses: Vec<String> = (0..plan.agents).map(|i| mesh.agent_address(i)).collect();
    let base = plan.base_configs(&|agent| addresses[agent].clone());
    mesh.start_proxy().await?;
    for (name, spec) in &base {
        let status = mesh.post_worker("add", &spec.to_json(name)).await?;
        if status != 201 {
            return Err(format!("adding {name}: {status}").into());
        }
    }
    let run = Rc::new(Run {
        plan,
        mesh,
        clock: std::cell::Cell::new(Clock::now()),
        observed: RefCell::new(Observed::default()),
        config: Mutex::new(ConfigState {
            base: base.clone(),
            overlays: Vec::new(),
            applied: base.clone(),
        }),
    });
    let setup = async {
        for agent in 0..run.plan.agents {
            // A clash on a port chosen for it fails the setup, which starts over.
            run.mesh
                .start_agent(agent, run.plan.retries, 2, Duration::from_secs(10))
                .await?;
        }
        for agent in 0..run.plan.agents {
            wait_configs(&run.mesh, agent, base.len() as u64).await;
        }
        for (worker, plan) in run.plan.workers.iter().enumerate() {
            if plan.extra {
                continue;
            }
            for instance in 0..plan.instances.len() {
                if !run
                    .mesh
                    .start_worker(worker, instance, Duration::from_secs(20))
                    .await
                {
                    return Err(format!("{}#{instance} never attached", plan.name));
                }
            }
        }
        Ok::<(), String>(())
    };
    setup.await?;
    let setup_time = started.elapsed();
    warm_up(&run).await;
    let warm_time = started.elapsed() - setup_time;

    // The load starts now: everything is measured from here.
    run.clock.set(Clock::now());
    {
        let mut observed = run.observed.borrow_mut();
        let notes = std::mem::take(&mut observed.notes);
        let broken_lines = std::mem::take(&mut observed.broken_lines);
        let warm_up_failures = std::mem::take(&mut observed.warm_up_failures);
        *observed = Observed {
            notes,
            broken_lines,
            warm_up_failures,
            ..Observed::default()
        };
        observed.versions.push(Version {
            sent: Ms::MIN / 2,
            acked: Ms::MIN / 2,
            configs: Arc::new(base),
        });
    }

    let stop_monitor = Rc::new(std::cell::Cell::new(false));
    let monitor = actix_rt::spawn(watch_stalls(run.clone(), stop_monitor.clone()));
    let mut tasks = Vec::new();
    for (position, fault) in run.plan.faults.iter().enumerate() {
        tasks.push(actix_rt::spawn(inject(
            run.clone(),
            indexes[position],
            fault.clone(),
        )));
    }
    let gate = Rc::new(Semaphore::new(run.plan.concurrency));
    for index in 0..run.plan.load.len() {
        tasks.push(actix_rt::spawn(send_load(run.clone(), gate.clone(), index)));
    }
    for task in tasks {
        let _ = task.await;
    }
    let load_time = started.elapsed() - setup_time - warm_time;
    final_batch(&run).await;
    run.note(format!(
        "phases: setup {:.1}s, warm-up {:.1}s, load and faults {:.1}s, final batch {:.1}s",
        setup_time.as_secs_f64(),
        warm_time.as_secs_f64(),
        load_time.as_secs_f64(),
        (started.elapsed() - setup_time - warm_time - load_time).as_secs_f64()
    ));
    stop_monitor.set(true);
    let _ = monitor.await;

    collect_records(&run);
    let run = match Rc::try_unwrap(run) {
        Ok(run) => run,
        Err(_) => return Err("a task still holds the run".to_owned().into()),
    };
    run.mesh.kill_all();
    let observed = run.observed.into_inner();
    let violations = check::check(&run.plan, &observed);
    let summary = check::summary(&observed);
    let mut notes = observed.notes.clone();
    if mode == Mode::Loopback
        && run.plan.faults.iter().any(|fault| {
            matches!(
                fault.kind,
                FaultKind::Cut { .. } | FaultKind::Isolate { .. }
            )
        })
    {
        notes.push("loopback mode: link cuts and isolated hosts were skipped".to_owned());
    }
    let mut plan = run.plan;
    plan.faults = all_faults;
    let keep = options.keep.then(|| dir.clone());
    Ok(Report {
        plan,
        faults: chosen,
        mode,
        violations,
        notes,
        summary,
        elapsed: started.elapsed(),
        dir: keep,
    })
}

/// Removes the run's directory on drop unless it is kept.
struct RemoveDir(PathBuf, bool);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn wait_configs(mesh: &Mesh, agent: usize, configs: u64) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(health) = mesh.agent_health(agent).await
            && health["configs"].as_u64() >= Some(configs)
        {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until every line answers `RESPONSE` from every agent (agents learn where
/// instances are from the proxy's agent list), for a few seconds at most; lines that
/// never do are noted.
async fn warm_up(run: &Run) {
    let started = Instant::now();
    let mut pending: Vec<(usize, usize)> = (0..run.plan.lines.len())
        .flat_map(|line| (0..run.plan.agents).map(move |agent| (line, agent)))
        .collect();
    let mut last = BTreeMap::new();
    let mut round = 0;
    while !pending.is_empty() && started.elapsed() < Duration::from_secs(3) {
        round += 1;
        let probes = pending.iter().map(|&(line, agent)| {
            let worker = run.plan.workers[run.plan.lines[line][0]].name.clone();
            let message = Message::request(
                step::line_type(line, 0),
                [
                    format!("warm{round}.{line}.{agent}"),
                    "0".to_owned(),
                    "1".to_owned(),
                ],
            );
            let address = run.mesh.agent_address(agent);
            async move {
                let result = mesh::call(&address, &worker, &message, Duration::from_secs(2)).await;
                ((line, agent), result)
            }
        });
        let mut still = Vec::new();
        for (key, result) in futures_util::future::join_all(probes).await {
            if !matches!(result, CallResult::Reply(200, _)) {
                last.insert(key, format!("{result:?}"));
                still.push(key);
            }
        }
        pending = still;
        if !pending.is_empty() {
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let waited = started.elapsed().as_millis();
    for (line, agent) in pending {
        let mut observed = run.observed.borrow_mut();
        observed.broken_lines.insert(line);
        observed.warm_up_failures.push(format!(
            "line {line} put to a{agent} never answered RESPONSE in the {waited}ms warm-up, before any fault (last: {})",
            last.get(&(line, agent)).cloned().unwrap_or_default()
        ));
    }
}

/// Records when the checker's own thread was not scheduled for a while: replies
/// late by that much are the checker's delay, not the mesh's.
async fn watch_stalls(run: Rc<Run>, stop: Rc<std::cell::Cell<bool>>) {
    const TICK: Duration = Duration::from_millis(20);
    while !stop.get() {
        let before = Instant::now();
        actix_rt::time::sleep(TICK).await;
        let late = before.elapsed().saturating_sub(TICK);
        if late > Duration::from_millis(50) {
            let now = run.now();
            run.observed
                .borrow_mut()
                .stalls
                .push((now - late.as_millis() as Ms, now));
        }
    }
}

/// Sends planned request `index` at its time, once a slot is free.
async fn send_load(run: Rc<Run>, gate: Rc<Semaphore>, index: usize) {
    let load = run.plan.load[index].clone();
    let at = run.start() + load.at;
    actix_rt::time::sleep_until(at.into()).await;
    let Ok(_permit) = gate.acquire().await else {
        return;
    };
    // Requests held back past the load's end (slots held by slow replies) are not sent:
    // the run's length stays bounded whatever the mesh does.
    let end = run.plan.duration + crate::plan::QUIET_TAIL;
    if run.start().elapsed() > end {
        run.observed.borrow_mut().skipped += 1;
        return;
    }
    let request_id = load.request_id();
    let (worker, message) = match load.kind {
        LoadKind::Call { line } => (
            run.plan.workers[run.plan.lines[line][0]].name.clone(),
            Message::request(
                step::line_type(line, 0),
                [request_id.clone(), "0".to_owned(), load.value.to_string()],
            ),
        ),
        LoadKind::Drive { driver, line, push } => (
            run.plan.workers[driver].name.clone(),
            Message::request(
                step::drive_type(line),
                [
                    request_id.clone(),
                    "0".to_owned(),
                    load.value.to_string(),
                    load.sub_deadline.as_millis().to_string(),
                    if push { "p" } else { "r" }.to_owned(),
                ],
            ),
        ),
    };
    call_and_record(
        &run,
        Some(index),
        request_id,
        load.entry,
        worker,
        message,
        load.deadline,
    )
    .await;
}

async fn call_and_record(
    run: &Run,
    load: Option<usize>,
    request_id: String,
    entry: usize,
    worker: String,
    message: Message,
    deadline: Duration,
) {
    let address = run.mesh.agent_address(entry);
    let start = run.now();
    let result = mesh::call(&address, &worker, &message, deadline).await;
    let end = run.now();
    run.observed.borrow_mut().calls.push(CallOutcome {
        request_id,
        load,
        entry,
        worker,
        message,
        deadline,
        start,
        end,
        result,
    });
}

/// Injects or heals a host fault, trying a few times; one that cannot be made (or
/// undone) is noted, since what follows is then the checker's doing.
async fn host_fault(run: &Run, label: &str, fault: impl Fn() -> Result<(), String>) {
    let mut result = fault();
    for _ in 0..5 {
        if result.is_ok() {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        result = fault();
    }
    if let Err(error) = result {
        run.note(format!(
            "{label}: the host fault failed ({error}); violations after it may be the checker's doing"
        ));
    }
}

/// Runs one fault at its time.
async fn inject(run: Rc<Run>, index: usize, fault: Fault) {
    actix_rt::time::sleep_until((run.start() + fault.at).into()).await;
    let from = run.now();
    let label = format!("fault {index}: {}", fault.kind);
    match fault.kind {
        FaultKind::Process {
            target,
            signal,
            down,
        } => {
            process_fault(&run, target, signal, down).await;
            run.span(Some(index), label, from, Some(target), Some(signal));
        }
        FaultKind::Cut { a, b, down } => {
            if run.mesh.hosts.mode != Mode::Loopback {
                let hosts = &run.mesh.hosts;
                host_fault(&run, &label, || hosts.cut(a, b, true)).await;
                actix_rt::time::sleep(down).await;
                host_fault(&run, &label, || hosts.cut(a, b, false)).await;
                run.push_span(Some(index), label, from, None, None, true);
            }
        }
        FaultKind::Isolate { host, down } => {
            if run.mesh.hosts.mode != Mode::Loopback {
                let hosts = &run.mesh.hosts;
                host_fault(&run, &label, || hosts.isolate(host, true)).await;
                actix_rt::time::sleep(down).await;
                host_fault(&run, &label, || hosts.isolate(host, false)).await;
                // Back when it answers again and has the configs changed meanwhile.
                run.wait_instances(host, Duration::from_secs(10)).await;
                let configs = run.config.lock().await.applied.len() as u64;
                wait_configs(&run.mesh, host, configs).await;
                // To the checker the agent is out of reach, as if frozen: calls put to
                // it may go unanswered. To everyone else it is an outage that must
                // cost nothing but time.
                run.push_span(
                    Some(index),
                    label,
                    from,
                    Some(Target::Agent(host)),
                    Some(Signal::Stop),
                    true,
                );
            }
        }
        FaultKind::Redirect {
            line,
            hop,
            to,
            hold,
        } => {
            let overlay = Overlay::Route {
                worker: run.plan.workers[run.plan.lines[line][hop - 1]].name.clone(),
                kind: step::line_type(line, hop),
                to: run.plan.workers[to].name.clone(),
            };
            hold_overlay(&run, index, overlay, hold).await;
            run.span(Some(index), label, from, None, None);
        }
        FaultKind::EndEarly { line, hop, hold } => {
            let overlay = Overlay::Route {
                worker: run.plan.workers[run.plan.lines[line][hop - 1]].name.clone(),
                kind: step::line_type(line, hop),
                to: String::new(),
            };
            hold_overlay(&run, index, overlay, hold).await;
            run.span(Some(index), label, from, None, None);
        }
        FaultKind::Failing {
            worker,
            instance,
            hold,
        } => {
            run.mesh.signal_worker(worker, instance, "USR1");
            actix_rt::time::sleep(hold).await;
            run.mesh.signal_worker(worker, instance, "USR2");
            run.span(
                Some(index),
                label,
                from,
                Some(Target::Worker(worker, instance)),
                None,
            );
        }
        FaultKind::Mpu { worker, mpu, hold } => {
            let overlay = Overlay::Mpu {
                worker: run.plan.workers[worker].name.clone(),
                mpu,
            };
            hold_overlay(&run, index, overlay, hold).await;
            run.span(Some(index), label, from, None, None);
        }
        FaultKind::AddDelete {
            worker,
            line,
            hop,
            hold,
        } => {
            let name = run.plan.workers[worker].name.clone();
            let spec = run.plan.extra_spec(line, hop);
            let extra = Overlay::Extra {
                worker: name.clone(),
                spec,
            };
            run.reconfigure(|overlays| overlays.push((usize::MAX - index, extra)))
                .await;
            let agent = run.plan.workers[worker].instances[0];
            wait_configs_everywhere(&run).await;
            if run
                .mesh
                .start_worker(worker, 0, Duration::from_secs(15))
                .await
            {
                // Routable from every agent within 100 ms (DESIGN §5.6); a margin for
                // the agents' heartbeats before lines are sent its way.
                run.wait_instances(agent, Duration::from_secs(5)).await;
                actix_rt::time::sleep(Duration::from_millis(1_500)).await;
                let overlay = Overlay::Route {
                    worker: run.plan.workers[run.plan.lines[line][hop - 1]].name.clone(),
                    kind: step::line_type(line, hop),
                    to: name.clone(),
                };
                hold_overlay(&run, index, overlay, hold).await;
                actix_rt::time::sleep(Duration::from_millis(1_500)).await;
                run.mesh.signal_worker(worker, 0, "TERM");
                run.mesh
                    .stop_worker(worker, 0, Duration::from_secs(6))
                    .await;
            } else {
                run.note(format!("{name} never attached"));
            }
            run.reconfigure(|overlays| overlays.retain(|(id, _)| *id != usize::MAX - index))
                .await;
            let end = run.now() + 1_000;
            run.span(Some(index), label, from, None, None);
            run.observed
                .borrow_mut()
                .spans
                .last_mut()
                .expect("just pushed")
                .to = end;
        }
    }
}

async fn wait_configs_everywhere(run: &Run) {
    let configs = run.config.lock().await.applied.len() as u64;
    for agent in 0..run.plan.agents {
        wait_configs(&run.mesh, agent, configs).await;
    }
}

/// Applies an overlay, holds it, removes it; the span lasts a second more (propagation).
async fn hold_overlay(run: &Run, index: usize, overlay: Overlay, hold: Duration) {
    run.reconfigure(|overlays| overlays.push((index, overlay)))
        .await;
    actix_rt::time::sleep(hold).await;
    run.reconfigure(|overlays| overlays.retain(|(id, _)| *id != index))
        .await;
    actix_rt::time::sleep(Duration::from_millis(1_000)).await;
}

async fn process_fault(run: &Run, target: Target, signal: Signal, down: Duration) {
    let mesh = &run.mesh;
    match target {
        Target::Worker(worker, instance) => {
            let timeout = Duration::from_millis(run.plan.workers[worker].timeout_ms);
            let process = (worker, instance, mesh.worker_incarnation(worker, instance));
            let from = run.now();
            match signal {
                Signal::Kill => {
                    mesh.signal_worker(worker, instance, "KILL");
                    mesh.stop_worker(worker, instance, Duration::from_secs(2))
                        .await;
                    actix_rt::time::sleep(down).await;
                }
                Signal::Term => {
                    mesh.signal_worker(worker, instance, "TERM");
                    mesh.stop_worker(worker, instance, timeout + Duration::from_secs(3))
                        .await;
                    actix_rt::time::sleep(down).await;
                }
                Signal::Stop => {
                    mesh.signal_worker(worker, instance, "STOP");
                    actix_rt::time::sleep(down).await;
                    mesh.signal_worker(worker, instance, "CONT");
                }
            }
            run.observed.borrow_mut().events.push(ProcessEvent {
                process,
                signal,
                from,
                to: run.now(),
            });
            if signal != Signal::Stop
                && !mesh
                    .start_worker(worker, instance, Duration::from_secs(20))
                    .await
            {
                run.note(format!("w{worker}#{instance} did not come back"));
            }
            run.wait_instances(
                run.plan.workers[worker].instances[instance],
                Duration::from_secs(5),
            )
            .await;
        }
        Target::Agent(agent) => {
            match signal {
                Signal::Kill => {
                    mesh.signal_agent(agent, "KILL");
                    mesh.stop_agent(agent, Duration::from_secs(2)).await;
                    actix_rt::time::sleep(down).await;
                }
                Signal::Term => {
                    mesh.signal_agent(agent, "TERM");
                    mesh.stop_agent(agent, Duration::from_secs(10)).await;
                    actix_rt::time::sleep(down).await;
                }
                Signal::Stop => {
                    mesh.signal_agent(agent, "STOP");
                    actix_rt::time::sleep(down).await;
                    mesh.signal_agent(agent, "CONT");
                }
            }
            if signal != Signal::Stop
                && let Err(error) = mesh
                    .start_agent(agent, run.plan.retries, 10, Duration::from_secs(5))
                    .await
            {
                run.note(error);
            }
            run.wait_instances(agent, Duration::from_secs(10)).await;
        }
        Target::Proxy => match signal {
            Signal::Kill | Signal::Term => {
                mesh.signal_proxy(if signal == Signal::Kill {
                    "KILL"
                } else {
                    "TERM"
                });
                mesh.stop_proxy(Duration::from_secs(10)).await;
                actix_rt::time::sleep(down).await;
                if let Err(error) = mesh.start_proxy().await {
                    run.note(error);
                }
            }
            Signal::Stop => {
                mesh.signal_proxy("STOP");
                actix_rt::time::sleep(down).await;
                mesh.signal_proxy("CONT");
            }
        },
    }
}

/// The end: waits until nothing is in flight, counts the agents' steps, puts one
/// request per line from every agent, waits again and counts again. The agents'
/// counters must then have moved exactly by the steps the workers recorded (I6).
async fn final_batch(run: &Run) {
    let Some(before) = quiet_stats(run).await else {
        run.note("I6 not checked: the agents never went quiet before the final batch".into());
        return;
    };
    let mut calls = Vec::new();
    // Lines that never answered in the warm-up are reported already; their calls
    // would only wait out their deadlines here.
    let broken = run.observed.borrow().broken_lines.clone();
    for line in (0..run.plan.lines.len()).filter(|line| !broken.contains(line)) {
        for entry in 0..run.plan.agents {
            let n = calls.len();
            let request_id = format!("f{n}");
            let worker = run.plan.workers[run.plan.lines[line][0]].name.clone();
            let message = Message::request(
                step::line_type(line, 0),
                [request_id.clone(), "0".to_owned(), n.to_string()],
            );
            let deadline = crate::plan::line_deadline(run.plan.lines[line].len());
            calls.push(call_and_record(
                run, None, request_id, entry, worker, message, deadline,
            ));
        }
    }
    futures_util::future::join_all(calls).await;
    let Some(after) = quiet_stats(run).await else {
        run.note("I6 not checked: the agents never went quiet after the final batch".into());
        return;
    };
    let mut counted: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (key, now) in &after {
        let was = before.get(key).copied().unwrap_or_default();
        let entry = counted.entry(key.1.clone()).or_default();
        entry.0 += now.0.saturating_sub(was.0);
        entry.1 += now.1.saturating_sub(was.1);
        entry.2 += now.2.saturating_sub(was.2);
    }
    if before.keys().any(|key| !after.contains_key(key)) {
        run.note("I6 not checked: an instance detached during the final batch".into());
        return;
    }
    run.observed.borrow_mut().counted = Some(counted);
}

/// (agent, worker, instance) → (received, responses, errors + timeouts + stops).
type StatsSnapshot = BTreeMap<(usize, String, u64), (u64, u64, u64)>;

/// How many records the workers have written so far.
fn records_written(run: &Run) -> usize {
    run.mesh
        .record_files()
        .iter()
        .map(|(_, _, _, path)| record::read(path).len())
        .sum()
}

/// Every agent's counters once none has a step in flight and no worker has recorded
/// anything for half a second (for up to 10 s).
async fn quiet_stats(run: &Run) -> Option<StatsSnapshot> {
    let started = Instant::now();
    let mut written = records_written(run);
    while started.elapsed() < Duration::from_secs(10) {
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let now = records_written(run);
        if now != written {
            written = now;
            continue;
        }
        let mut snapshot = StatsSnapshot::new();
        let mut quiet = true;
        for agent in 0..run.plan.agents {
            let Some(stats) = run.mesh.agent_stats(agent).await else {
                quiet = false;
                break;
            };
            for instance in stats["instances"].as_array().into_iter().flatten() {
                let number = |field: &str| instance[field].as_u64().unwrap_or(0);
                if number("in_flight") > 0 {
                    quiet = false;
                }
                snapshot.insert(
                    (
                        agent,
                        instance["worker"].as_str().unwrap_or("").to_owned(),
                        number("instance"),
                    ),
                    (
                        number("received"),
                        number("responses"),
                        number("errors") + number("timeouts") + number("stops"),
                    ),
                );
            }
        }
        if quiet && records_written(run) == written {
            return Some(snapshot);
        }
    }
    None
}

/// Reads every worker's record files into the observations.
fn collect_records(run: &Run) {
    let mut observed = run.observed.borrow_mut();
    for (worker, instance, incarnation, path) in run.mesh.record_files() {
        let process = (worker, instance, incarnation);
        for record in record::read(&path) {
            match record {
                Record::Step {
                    request_id,
                    hop,
                    worker,
                    at_ms,
                } => observed.steps.push(StepSeen {
                    request_id,
                    hop,
                    worker,
                    at: run.clock.get().of_epoch(at_ms),
                    process,
                }),
                Record::Outbox {
                    sub_id,
                    line,
                    value,
                    deadline_ms,
                    sent_ms,
                    elapsed_ms,
                    reply,
                } => observed.outbox.push(OutboxSeen {
                    sub_id,
                    line,
                    value,
                    deadline: Duration::from_millis(deadline_ms),
                    start: run.clock.get().of_epoch(sent_ms),
                    elapsed: Duration::from_millis(elapsed_ms),
                    reply,
                    process,
                }),
                Record::Attached { .. } | Record::Pushed { .. } => {}
            }
        }
    }
}

/// Violations shown in full per invariant; the rest are counted.
const SHOWN: usize = 6;

impl Report {
    /// The report as text: the plan, what ran, the violations and how to replay.
    pub fn render(&self, duration: Duration) -> String {
        let mut out = format!(
            "== seed {} ({} mode, {:.1}s): {}\n{}",
            self.plan.seed,
            match self.mode {
                Mode::Netns => "netns",
                Mode::Loopback => "loopback",
                Mode::Containers => "containers",
            },
            self.elapsed.as_secs_f64(),
            self.summary,
            self.plan
        );
        if self.faults.len() != self.plan.faults.len() {
            out.push_str(&format!("  faults run: {:?}\n", self.faults));
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
        for violation in &self.violations {
            let count = shown.entry(violation.invariant).or_default();
            *count += 1;
            if *count <= SHOWN {
                out.push_str(&format!("  VIOLATION {violation}\n"));
            }
        }
        for (invariant, count) in shown {
            if count > SHOWN {
                out.push_str(&format!(
                    "  ... and {} more {invariant} violations\n",
                    count - SHOWN
                ));
            }
        }
        if !self.violations.is_empty() {
            let faults = (self.faults.len() != self.plan.faults.len()).then_some(&self.faults);
            out.push_str(&format!(
                "  replay: {}\n",
                crate::plan::replay_command(self.plan.seed, faults, duration, self.mode)
            ));
        }
        if let Some(dir) = &self.dir {
            out.push_str(&format!("  logs and records kept in {}\n", dir.display()));
        }
        out
    }
}
