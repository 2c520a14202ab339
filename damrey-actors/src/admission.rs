//! Admission of steps into an instance: at most `mpu` at once, the rest waiting in
//! arrival order. The limit can change while steps run and wait (a config change takes
//! effect on attached instances at once), which a fixed-size semaphore cannot do.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::spec::Mpu;

/// The queue length below which waiters that gave up are not swept out.
const PRUNE_FLOOR: usize = 64;

/// The mpu cap of one instance. Cheap to share; [`Admission::admit`] waits for a slot.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: Mpu,
    /// Slots handed out and not yet given back.
    running: usize,
    /// Steps waiting for a slot, oldest first.
    waiting: VecDeque<oneshot::Sender<Slot>>,
    /// How many waited after the last sweep of waiters that gave up.
    pruned_at: usize,
    closed: bool,
}

/// A slot taken: given back when dropped, and the next waiter is admitted.
#[derive(Debug)]
pub struct Slot {
    admission: Option<Arc<Admission>>,
}

/// The admission was closed (the instance is stopping) before a slot came free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the instance is stopping")]
pub struct Closed;

impl Admission {
    /// An admission of at most `limit` at once (`0` is unlimited).
    pub fn new(limit: Mpu) -> Arc<Self> {
        Arc::new(Admission {
            state: Mutex::new(State {
                limit,
                running: 0,
                waiting: VecDeque::new(),
                pruned_at: PRUNE_FLOOR,
                closed: false,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for a slot, in arrival order.
    ///
    /// # Errors
    /// [`Closed`] when the admission closes first.
    pub async fn admit(self: &Arc<Self>) -> Result<Slot, Closed> {
        let waiting = {
            let mut state = self.state();
            if state.closed {
                return Err(Closed);
            }
            if state.has_room() {
                state.running += 1;
                return Ok(Slot {
                    admission: Some(self.clone()),
                });
            }
            if state.waiting.len() >= state.pruned_at * 2 {
                // Steps that gave up waiting (their deadline passed) leave their sender
                // behind; forget them before the queue doubles.
                state.waiting.retain(|waiter| !waiter.is_closed());
                state.pruned_at = state.waiting.len().max(PRUNE_FLOOR);
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.push_back(tx);
            rx
        };
        waiting.await.map_err(|_| Closed)
    }

    /// Changes the limit; raising it admits waiters at once, lowering it lets the steps
    /// running finish and admits no more until they are under the new limit.
    pub fn set_limit(self: &Arc<Self>, limit: Mpu) {
        let mut state = self.state();
        state.limit = limit;
        self.admit_waiters(&mut state);
    }

    /// The current limit.
    pub fn limit(&self) -> Mpu {
        self.state().limit
    }

    /// Refuses every waiter and every later step.
    pub fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.waiting.clear();
    }

    fn admit_waiters(self: &Arc<Self>, state: &mut State) {
        while state.has_room() {
            let Some(waiter) = state.waiting.pop_front() else {
                break;
            };
            state.running += 1;
            let slot = Slot {
                admission: Some(self.clone()),
            };
            if let Err(mut unwanted) = waiter.send(slot) {
                // Its step gave up waiting (deadline): the slot goes to the next one,
                // given back here since the lock is held.
                unwanted.admission = None;
                state.running -= 1;
            }
        }
    }
}

impl State {
    fn has_room(&self) -> bool {
        self.limit
            .limit()
            .is_none_or(|limit| self.running < limit as usize)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            let mut state = admission.state();
            state.running -= 1;
            admission.admit_waiters(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn admitted_within(admission: &Arc<Admission>, wait: Duration) -> Option<Slot> {
        tokio::time::timeout(wait, admission.admit())
            .await
            .ok()
            .map(|slot| slot.expect("open"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_of_one_admits_one_at_a_time_in_arrival_order() {
        let admission = Admission::new(Mpu(1));
        let first = admission.admit().await.unwrap();
        let second = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.unwrap() }
        });
        tokio::task::yield_now().await;
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_none()
        );
        drop(first);
        let second = second.await.unwrap();
        drop(second);
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn raising_the_limit_admits_waiters_and_lowering_it_holds_new_ones() {
        let admission = Admission::new(Mpu(1));
        let running = admission.admit().await.unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.unwrap() }
        });
        tokio::task::yield_now().await;
        admission.set_limit(Mpu(0));
        let admitted = waiter.await.unwrap();
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_some()
        );

        admission.set_limit(Mpu(1));
        drop(running);
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_none(),
            "one still runs under a limit of one"
        );
        drop(admitted);
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gave_up_does_not_keep_a_slot() {
        let admission = Admission::new(Mpu(1));
        let running = admission.admit().await.unwrap();
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_none()
        );
        drop(running);
        assert!(
            admitted_within(&admission, Duration::from_millis(10))
                .await
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_that_gave_up_are_swept_out_of_a_queue_held_by_a_stuck_step() {
        let admission = Admission::new(Mpu(1));
        let _stuck = admission.admit().await.unwrap();
        for _ in 0..1_000 {
            assert!(
                admitted_within(&admission, Duration::from_millis(1))
                    .await
                    .is_none()
            );
        }
        assert!(admission.state().waiting.len() <= 2 * PRUNE_FLOOR);
    }

    #[tokio::test]
    async fn closing_refuses_waiters_and_later_steps() {
        let admission = Admission::new(Mpu(1));
        let _running = admission.admit().await.unwrap();
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await.map(drop) }
        });
        tokio::task::yield_now().await;
        admission.close();
        assert_eq!(waiter.await.unwrap(), Err(Closed));
        assert_eq!(admission.admit().await.map(drop), Err(Closed));
    }
}
