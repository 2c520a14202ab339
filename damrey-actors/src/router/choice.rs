//! The choice of where a step goes among the holders of its worker: an instance here
//! (a probe of one on probation, else the least loaded in rotation that can start it in
//! time), another agent holding the worker (in turn, passing over agents suspected of
//! being unreachable), or an ejected instance as the last resort; and the outcome of
//! each step taken into its instance's outlier standing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::table::Route;
use super::{Line, Router};
use crate::FastMap;
use crate::instance::Instance;
use crate::outlier::{self, Choice, Outcome, Overload, Standing};
use crate::route_counters::{Rejection, RouteCounters};
use crate::spec::WorkerSpec;

/// Where the current step goes.
pub(super) enum Destination {
    /// An instance here; `true` when the step is its probation probe.
    Local(Instance, bool),
    Remote(String),
}

/// Why a step cannot be routed.
pub(super) enum NoRoute {
    /// The worker is unknown (`None`) or does not take the type: a final `ERROR`.
    Invalid(Option<Rejection>, String),
    /// No configs were loaded yet: nothing is known, so the line waits for them.
    NotLoaded,
    /// The worker has no instance now; one may attach soon.
    NoInstance {
        /// When the worker lost its last instance, if it had any.
        emptied_at: Option<Instant>,
    },
    /// Every instance that could take the step has a full queue, or one that would
    /// not start it before its deadline: a final `ERROR` at once, saying so.
    Overloaded(String),
}

/// What a worker's instances on this agent offer a step.
enum LocalPick {
    /// This one; `true` when it is the probe of an instance on probation.
    Chosen(Instance, bool),
    /// Every instance is out of the rotation (ejected for failing).
    AllEjected,
    /// None would start the step in time; why.
    Overloaded(String),
    /// No instance here.
    Empty,
}

/// How long an agent that could not be reached is passed over while others hold the worker.
const SUSPECT_FOR: Duration = Duration::from_secs(1);

impl Router {
    /// Finds worker `to`'s config and the instance or agent for this step.
    ///
    /// Instances here come first: one on probation takes the step as its probe, else the
    /// least loaded in rotation that can start it before the line's deadline. When every
    /// one here is ejected or overloaded, the step goes to another agent holding the
    /// worker — unless the line was handed here by another agent, which would only bounce
    /// it back — else to an ejected instance (the last ones are still used) or `ERROR`.
    pub(super) fn choose(&self, line: &Line) -> Result<(Arc<WorkerSpec>, Destination), NoRoute> {
        let (to, kind, unreachable) = (&line.to, &line.message.kind, &line.unreachable);
        if !self.is_loaded() {
            return Err(NoRoute::NotLoaded);
        }
        let table = self.table();
        let Some((route, spec)) = table
            .routes
            .get(to)
            .and_then(|route| Some((route, route.spec.clone()?)))
        else {
            return Err(NoRoute::Invalid(
                None,
                format!("no worker named {to:?} is configured"),
            ));
        };
        if spec.find_command(kind).is_none() {
            return Err(NoRoute::Invalid(
                Some(Rejection::UnknownType),
                format!("worker {to} does not accept type {kind:?}"),
            ));
        }
        let me = &self.inner.me;
        let pinned_elsewhere = !spec.agent.is_empty() && spec.agent != *me;
        let destination = if pinned_elsewhere {
            (!unreachable.contains(&spec.agent)).then(|| Destination::Remote(spec.agent.clone()))
        } else {
            let local = self.pick_local(&spec, &route.local, line.deadline, false);
            if let LocalPick::Chosen(instance, probe) = local {
                Some(Destination::Local(instance, probe))
            } else {
                let none_here = matches!(local, LocalPick::Empty);
                let elsewhere = spec.agent.is_empty() && (none_here || !line.handed_over);
                match (
                    elsewhere
                        .then(|| self.pick_remote(route, unreachable, none_here))
                        .flatten(),
                    local,
                ) {
                    (Some(agent), _) => Some(Destination::Remote(agent)),
                    // Every instance here is out of the rotation and no other agent
                    // takes the line: the ejected ones serve what they can, still within
                    // admission (queue bound and deadline).
                    (None, LocalPick::AllEjected) => {
                        match self.pick_local(&spec, &route.local, line.deadline, true) {
                            LocalPick::Chosen(instance, _) => {
                                Some(Destination::Local(instance, false))
                            }
                            LocalPick::Overloaded(reason) => {
                                return Err(NoRoute::Overloaded(reason));
                            }
                            LocalPick::Empty | LocalPick::AllEjected => None,
                        }
                    }
                    (None, LocalPick::Overloaded(reason)) => {
                        return Err(NoRoute::Overloaded(reason));
                    }
                    (None, _) => None,
                }
            }
        };
        match destination {
            Some(destination) => Ok((spec, destination)),
            None => Err(NoRoute::NoInstance {
                emptied_at: route.emptied_at,
            }),
        }
    }

    /// The instance here for a step of worker `spec` due by `deadline` (see
    /// [`Router::choose`]); with `ejected_too`, instances out of the rotation are taken
    /// as serving (the fallback when every one is out).
    fn pick_local(
        &self,
        spec: &WorkerSpec,
        local: &[Instance],
        deadline: Instant,
        ejected_too: bool,
    ) -> LocalPick {
        if local.is_empty() {
            return LocalPick::Empty;
        }
        let now = Instant::now();
        let rules = spec.outlier_rules();
        let admits = |instance: &Instance| {
            outlier::admit(
                instance.load(),
                spec.mpu,
                instance.health().step_time(),
                rules.max_queue,
                now,
                deadline,
            )
        };
        let mut serving = Vec::with_capacity(local.len());
        for instance in local {
            let choice = if ejected_too {
                Choice::Serving
            } else {
                instance.health().choice(now)
            };
            match choice {
                Choice::Serving => serving.push(instance.clone()),
                Choice::Probe if admits(instance).is_ok() && instance.health().claim_probe(now) => {
                    return LocalPick::Chosen(instance.clone(), true);
                }
                Choice::Probe | Choice::Out => {}
            }
        }
        if serving.is_empty() {
            return LocalPick::AllEjected;
        }
        let (fit, unfit): (Vec<Instance>, Vec<Instance>) = serving
            .into_iter()
            .partition(|instance| admits(instance).is_ok());
        if let Some(instance) = self.least_loaded(&fit) {
            return LocalPick::Chosen(instance, false);
        }
        let least = unfit
            .iter()
            .min_by_key(|instance| instance.load())
            .expect("serving instances that do not fit are the unfit ones");
        let reason = match admits(least) {
            Err(Overload::QueueFull { queued }) => format!(
                "worker {} is overloaded: {queued} steps wait at its least loaded instance here, the most its queue holds (outlier.max_queue {})",
                spec.name, rules.max_queue
            ),
            Err(Overload::TooLate { queued, wait }) => format!(
                "worker {} is overloaded: {queued} steps wait at its least loaded instance here, and this one would start in about {} ms, after its deadline",
                spec.name,
                wait.as_millis()
            ),
            Ok(()) => format!("worker {} is overloaded", spec.name),
        };
        LocalPick::Overloaded(reason)
    }

    /// Another agent for a step of a worker held elsewhere: one that is not suspected of
    /// being unreachable, in turn; when no holder is listed and `departed_too` (no
    /// instance here at all), the one that left last.
    fn pick_remote(
        &self,
        route: &Route,
        unreachable: &[String],
        departed_too: bool,
    ) -> Option<String> {
        let me = &self.inner.me;
        let reachable: Vec<&String> = route
            .remote
            .iter()
            .filter(|agent| *agent != me && !unreachable.contains(agent))
            .collect();
        let trusted: Vec<&String> = {
            let suspects = self.suspects();
            let now = Instant::now();
            let trusted = |agent: &&String| suspects.get(*agent).is_none_or(|until| *until <= now);
            reachable.iter().copied().filter(trusted).collect()
        };
        let others = if trusted.is_empty() {
            reachable
        } else {
            trusted
        };
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        if others.is_empty() {
            // No holder is listed: the one that left last may still be draining, and
            // run what a line under way needs (else it refuses, and the line waits).
            if !departed_too {
                return None;
            }
            route
                .departed
                .iter()
                .rev()
                .map(|(agent, _)| agent)
                .find(|agent| *agent != me && !unreachable.contains(agent))
                .cloned()
        } else {
            Some(others[turn % others.len()].clone())
        }
    }

    /// Where `instance` stands among the holders of worker `to`: `None` when it is no
    /// longer attached here (a vanished instance is not ejected: it is gone), else
    /// whether another holder is in rotation — another instance here that is serving, or
    /// another agent not suspected of being unreachable (for a worker not pinned).
    fn others_routable(&self, to: &str, instance: &Instance) -> Option<bool> {
        let table = self.table();
        let route = table.routes.get(to)?;
        if !route.local.iter().any(|other| other.same(instance)) {
            return None;
        }
        let unpinned = route
            .spec
            .as_ref()
            .is_some_and(|spec| spec.agent.is_empty());
        let suspects = self.suspects();
        let now = Instant::now();
        let trusted = |agent: &String| suspects.get(agent).is_none_or(|until| *until <= now);
        Some(
            route.local.iter().any(|other| {
                !other.same(instance) && other.health().standing() == Standing::Serving
            }) || (unpinned
                && route
                    .remote
                    .iter()
                    .any(|agent| *agent != self.inner.me && trusted(agent))),
        )
    }

    /// Takes how a step on `instance` ended into its health, and counts an ejection.
    pub(super) fn record_step(
        &self,
        line_to: &str,
        spec: &WorkerSpec,
        instance: &Instance,
        outcome: Outcome,
    ) {
        let rules = spec.outlier_rules();
        // Only a failure can eject, so only a failure looks at the other holders: a
        // success (nearly every step) takes no table or suspects lock here.
        let others = match outcome {
            Outcome::Success => false,
            Outcome::Failure => match self.others_routable(line_to, instance) {
                Some(others) => others,
                None => return,
            },
        };
        if instance
            .health()
            .record(outcome, &rules, others, Instant::now())
        {
            self.count(line_to, RouteCounters::ejected);
            tracing::warn!(worker = %line_to, ejections = instance.health().ejections(), "instance ejected from the rotation for failing");
        }
    }

    /// Whether an instance of worker `to` is attached here, or an agent other than
    /// `agent` (and those this line could not reach) is known to hold one, so that a
    /// hand-off may go there instead.
    pub(super) fn another_holder(&self, to: &str, agent: &str, unreachable: &[String]) -> bool {
        let table = self.table();
        let Some(route) = table.routes.get(to) else {
            return false;
        };
        let pinned = route
            .spec
            .as_ref()
            .is_some_and(|spec| !spec.agent.is_empty());
        !pinned
            && (!route.local.is_empty()
                || route.remote.iter().any(|other| {
                    other != agent && *other != self.inner.me && !unreachable.contains(other)
                }))
    }

    fn least_loaded(&self, instances: &[Instance]) -> Option<Instance> {
        match instances {
            [] => None,
            [only] => Some(only.clone()),
            _ => {
                let start = self.inner.turn.fetch_add(1, Ordering::Relaxed);
                (0..instances.len())
                    .map(|i| &instances[(start + i) % instances.len()])
                    .min_by_key(|instance| instance.load())
                    .cloned()
            }
        }
    }

    /// Marks `agent` as unreachable for a second.
    pub(super) fn suspect(&self, agent: &str) {
        let mut suspects = self.suspects();
        let now = Instant::now();
        suspects.retain(|_, until| *until > now);
        suspects.insert(agent.to_owned(), now + SUSPECT_FOR);
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, FastMap<String, Instant>> {
        self.inner
            .suspects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
