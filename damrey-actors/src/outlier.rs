//! The router's view of one instance's health: outlier ejection (failures in a row or a
//! failure rate eject it for a growing time, then a probation trickle) and the recent
//! step time that deadline-aware admission estimates queue waits from.
//!
//! Shared state behind a mutex, like the rest of the routing core: each instance's
//! [`Health`] is touched once when a line chooses it and once when its step ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::spec::{Mpu, OutlierRules};

/// How much of each new step time the estimate takes (an EWMA weight of 1/8).
const EWMA_SHIFT: u32 = 3;

/// How a step ended, as far as the instance's health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: a result, or the handler's own `ERROR` about the request.
    Success,
    /// The instance's fault: its step timed out, it panicked, or it was lost.
    Failure,
}

/// Where an instance stands in the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// In full rotation.
    Serving,
    /// Out of the rotation until then.
    Ejected(Instant),
    /// Back after an ejection: one step at a time until enough succeed.
    Probation,
}

/// One instance's health as its router sees it. Cheap to share in an `Arc`.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
    /// Recent time one step takes once started, in microseconds (`0`: no sample yet).
    step_micros: AtomicU64,
}

#[derive(Debug)]
struct State {
    standing: Standing,
    /// Failures since the last success.
    in_a_row: u32,
    window_start: Option<Instant>,
    window_steps: u64,
    window_failures: u64,
    /// The probation step under way, if any.
    probing: bool,
    /// Successes on the current probation.
    probation_successes: u32,
    /// The growing ejection time while the instance keeps failing.
    backoff: Option<Backoff>,
    /// Since when the instance has been out of full rotation (ejected or on probation).
    out_since: Option<Instant>,
    ejections: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            standing: Standing::Serving,
            in_a_row: 0,
            window_start: None,
            window_steps: 0,
            window_failures: 0,
            probing: false,
            probation_successes: 0,
            backoff: None,
            out_since: None,
            ejections: 0,
        }
    }
}

/// The choice a line may make of an instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// In full rotation.
    Serving,
    /// On probation with no step under way: one line may take it as the probe.
    Probe,
    /// Ejected, or on probation with its probe under way.
    Out,
}

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a line may choose the instance at `now`; an ejection that is over
    /// becomes probation here.
    pub fn choice(&self, now: Instant) -> Choice {
        choice(&mut self.state(), now)
    }

    /// Takes the probation step at `now`: `true` when this line is the probe (no other
    /// one is under way), after which other lines pass the instance over until it ends.
    /// One lock covers the look and the claim, so two lines never both probe.
    pub fn claim_probe(&self, now: Instant) -> bool {
        let mut state = self.state();
        if choice(&mut state, now) != Choice::Probe {
            return false;
        }
        state.probing = true;
        true
    }

    /// Records how a step ended at `now`. `others_routable` says whether another holder
    /// of the worker is in rotation: the last one is never ejected. Returns `true` when
    /// this outcome ejected the instance.
    pub fn record(
        &self,
        outcome: Outcome,
        rules: &OutlierRules,
        others_routable: bool,
        now: Instant,
    ) -> bool {
        let mut state = self.state();
        let window = Duration::from_millis(rules.window_ms);
        if state
            .window_start
            .is_none_or(|start| now.duration_since(start) >= window)
        {
            state.window_start = Some(now);
            state.window_steps = 0;
            state.window_failures = 0;
        }
        state.window_steps += 1;
        match outcome {
            Outcome::Success => {
                state.in_a_row = 0;
                if state.standing == Standing::Probation {
                    state.probing = false;
                    state.probation_successes += 1;
                    if state.probation_successes >= rules.probation_steps {
                        state.standing = Standing::Serving;
                        state.backoff = None;
                        state.out_since = None;
                        state.window_start = None;
                    }
                }
                false
            }
            Outcome::Failure => {
                state.in_a_row = state.in_a_row.saturating_add(1);
                state.window_failures += 1;
                let failing = match state.standing {
                    Standing::Serving => {
                        (rules.consecutive_failures > 0
                            && state.in_a_row >= rules.consecutive_failures)
                            || (state.window_steps >= rules.min_steps
                                && state.window_failures as f64
                                    > rules.failure_rate * state.window_steps as f64)
                    }
                    Standing::Probation => {
                        state.probing = false;
                        true
                    }
                    Standing::Ejected(_) => false,
                };
                if !(failing && others_routable && rules.consecutive_failures > 0) {
                    return false;
                }
                let first = Duration::from_millis(rules.ejection_ms);
                let cap = Duration::from_millis(rules.max_ejection_ms);
                let pause = state
                    .backoff
                    .get_or_insert_with(|| Backoff::new(first, cap))
                    .next_pause();
                state.standing = Standing::Ejected(now + pause);
                state.out_since.get_or_insert(now);
                state.ejections += 1;
                state.in_a_row = 0;
                state.window_start = None;
                true
            }
        }
    }

    /// A probe that ended with no verdict (its line gave up): the next line may probe.
    pub fn release_probe(&self) {
        self.state().probing = false;
    }

    /// Where the instance stands now.
    pub fn standing(&self) -> Standing {
        self.state().standing
    }

    /// How long the instance has been out of full rotation at `now`, if it is.
    pub fn out_for(&self, now: Instant) -> Option<Duration> {
        self.state()
            .out_since
            .map(|since| now.saturating_duration_since(since))
    }

    /// How many times the instance was ejected.
    pub fn ejections(&self) -> u64 {
        self.state().ejections
    }

    /// Takes one step's time into the estimate. `took` is from delivery to answer and
    /// `ahead` the steps that were queued or running at the instance when it was
    /// delivered: under an mpu limit the step first waited about `ahead / mpu` step
    /// times, which is taken out so that the estimate is one step's own time.
    pub fn sample(&self, took: Duration, ahead: usize, mpu: Mpu) {
        let rounds = match mpu.limit() {
            Some(limit) => {
                let limit = limit as usize;
                let waited = (ahead + 1).saturating_sub(limit);
                // took ≈ (waited / limit + 1) × step
                took.mul_f64(limit as f64 / (limit + waited) as f64)
            }
            None => took,
        };
        let micros = u64::try_from(rounds.as_micros()).unwrap_or(u64::MAX).max(1);
        let before = self.step_micros.load(Ordering::Relaxed);
        let next = if before == 0 {
            micros
        } else {
            before - (before >> EWMA_SHIFT) + (micros >> EWMA_SHIFT)
        };
        self.step_micros.store(next.max(1), Ordering::Relaxed);
    }

    /// The recent time one step takes, once any step has ended.
    pub fn step_time(&self) -> Option<Duration> {
        match self.step_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

/// Where an instance stands at `now`, moving an ejection that has run out to probation.
fn choice(state: &mut State, now: Instant) -> Choice {
    if let Standing::Ejected(until) = state.standing {
        if until > now {
            return Choice::Out;
        }
        state.standing = Standing::Probation;
        state.probing = false;
        state.probation_successes = 0;
    }
    match state.standing {
        Standing::Serving => Choice::Serving,
        Standing::Probation if !state.probing => Choice::Probe,
        _ => Choice::Out,
    }
}

/// Why a step cannot be queued at an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overload {
    /// The instance's queue holds `queued` steps, its bound.
    QueueFull {
        /// Steps waiting beyond mpu.
        queued: usize,
    },
    /// The step would start only after `wait`, past its deadline.
    TooLate {
        /// Steps waiting beyond mpu.
        queued: usize,
        /// The expected wait before the step starts.
        wait: Duration,
    },
}

impl Overload {
    /// Steps waiting beyond mpu at the instance.
    pub fn queued(&self) -> usize {
        match self {
            Overload::QueueFull { queued } | Overload::TooLate { queued, .. } => *queued,
        }
    }
}

/// Whether one more step can wait at an instance with `load` steps queued or running,
/// under `mpu`, whose steps take `step_time`, and still start before `deadline`.
///
/// # Errors
/// The [`Overload`] that refuses the step.
pub fn admit(
    load: usize,
    mpu: Mpu,
    step_time: Option<Duration>,
    max_queue: u32,
    now: Instant,
    deadline: Instant,
) -> Result<(), Overload> {
    let Some(limit) = mpu.limit() else {
        return Ok(());
    };
    let limit = limit as usize;
    let queued = (load + 1).saturating_sub(limit);
    if queued == 0 {
        return Ok(());
    }
    if queued > max_queue as usize {
        return Err(Overload::QueueFull { queued: queued - 1 });
    }
    let Some(step_time) = step_time else {
        return Ok(());
    };
    let wait = step_time.mul_f64(queued as f64 / limit as f64);
    if now + wait >= deadline {
        return Err(Overload::TooLate {
            queued: queued - 1,
            wait,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> OutlierRules {
        OutlierRules {
            consecutive_failures: 3,
            ejection_ms: 1_000,
            max_ejection_ms: 4_000,
            probation_steps: 2,
            ..OutlierRules::default()
        }
    }

    fn fail(health: &Health, times: u32) -> bool {
        let mut ejected = false;
        for _ in 0..times {
            ejected |= health.record(Outcome::Failure, &rules(), true, Instant::now());
        }
        ejected
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_for_a_while_then_probation_restores_after_successes() {
        let health = Health::default();
        assert!(!fail(&health, 2));
        assert!(!health.record(Outcome::Success, &rules(), true, Instant::now()));
        assert!(!fail(&health, 2), "a success in between resets the run");
        assert!(fail(&health, 1));
        assert_eq!(health.choice(Instant::now()), Choice::Out);
        assert_eq!(health.ejections(), 1);

        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(health.choice(Instant::now()), Choice::Out);
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert_eq!(health.choice(Instant::now()), Choice::Probe);
        assert!(health.claim_probe(Instant::now()));
        assert!(
            !health.claim_probe(Instant::now()),
            "one probe at a time: a trickle"
        );
        health.record(Outcome::Success, &rules(), true, Instant::now());
        assert_eq!(health.standing(), Standing::Probation);
        assert!(health.claim_probe(Instant::now()));
        health.record(Outcome::Success, &rules(), true, Instant::now());
        assert_eq!(health.standing(), Standing::Serving);
        assert_eq!(health.choice(Instant::now()), Choice::Serving);
        assert_eq!(health.out_for(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_on_probation_ejects_again_for_longer() {
        let health = Health::default();
        let start = Instant::now();
        assert!(fail(&health, 3));
        let Standing::Ejected(first) = health.standing() else {
            panic!("ejected")
        };
        assert!(first >= start + Duration::from_millis(1_000));
        assert!(first < start + Duration::from_millis(2_000));
        tokio::time::advance(first - start).await;
        assert!(health.claim_probe(Instant::now()));
        let failed_at = Instant::now();
        assert!(health.record(Outcome::Failure, &rules(), true, failed_at));
        let Standing::Ejected(second) = health.standing() else {
            panic!("ejected again")
        };
        assert!(second >= failed_at + Duration::from_millis(2_000));
        assert_eq!(health.ejections(), 2);
        assert_eq!(
            health.out_for(failed_at),
            Some(failed_at - start),
            "out since the first ejection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_routable_instance_is_never_ejected() {
        let health = Health::default();
        for _ in 0..10 {
            assert!(!health.record(Outcome::Failure, &rules(), false, Instant::now()));
        }
        assert_eq!(health.choice(Instant::now()), Choice::Serving);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_ejects() {
        let rules = OutlierRules {
            consecutive_failures: 100,
            min_steps: 10,
            failure_rate: 0.5,
            ..OutlierRules::default()
        };
        let health = Health::default();
        let mut ejected = false;
        for i in 0..10 {
            let outcome = if i % 3 == 2 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            ejected |= health.record(outcome, &rules, true, Instant::now());
        }
        assert!(ejected, "7 failures of 10 is over half");

        let steady = Health::default();
        for i in 0..100 {
            let outcome = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            assert!(!steady.record(outcome, &rules, true, Instant::now()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_consecutive_failures_turns_ejection_off() {
        let rules = OutlierRules {
            consecutive_failures: 0,
            ..OutlierRules::default()
        };
        let health = Health::default();
        for _ in 0..100 {
            assert!(!health.record(Outcome::Failure, &rules, true, Instant::now()));
        }
    }

    #[test]
    fn the_step_time_leaves_out_the_wait_in_the_queue() {
        let health = Health::default();
        assert_eq!(health.step_time(), None);
        // Four ahead under mpu 1: it waited four steps, then ran one.
        health.sample(Duration::from_millis(250), 4, Mpu(1));
        assert_eq!(health.step_time(), Some(Duration::from_millis(50)));
        for _ in 0..100 {
            health.sample(Duration::from_millis(10), 0, Mpu(1));
        }
        let recent = health.step_time().unwrap();
        assert!(recent < Duration::from_millis(11), "{recent:?}");
    }

    #[test]
    fn a_step_that_could_not_start_before_its_deadline_or_finds_the_queue_full_is_refused() {
        let now = Instant::now();
        let step = Some(Duration::from_millis(50));
        let deadline = now + Duration::from_secs(3);
        assert_eq!(admit(0, Mpu(1), step, 1_000, now, deadline), Ok(()));
        assert_eq!(
            admit(10_000, Mpu::UNLIMITED, step, 1, now, deadline),
            Ok(())
        );
        // 58 ahead of a one-at-a-time instance: it starts after 2.95 s.
        assert_eq!(admit(59, Mpu(1), step, 1_000, now, deadline), Ok(()));
        assert_eq!(
            admit(60, Mpu(1), step, 1_000, now, deadline),
            Err(Overload::TooLate {
                queued: 59,
                wait: Duration::from_secs(3)
            })
        );
        // Four at once: the same queue waits a quarter as long.
        assert_eq!(admit(60, Mpu(4), step, 1_000, now, deadline), Ok(()));
        assert_eq!(
            admit(11, Mpu(1), None, 10, now, deadline),
            Err(Overload::QueueFull { queued: 10 })
        );
        assert_eq!(admit(10, Mpu(1), None, 10, now, deadline), Ok(()));
    }
}
