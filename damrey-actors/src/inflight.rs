//! [`InFlight`]: counts work under way and tells when none is left, so that a stop can
//! wait for what it must not cut off (a step's result on its way out, a reply to another
//! agent, an open session).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// A count of work under way, shared by its clones.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Inner>);

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    /// Told when `count` drops to zero.
    idle: Notify,
}

/// One unit of work, counted until dropped.
#[must_use = "the work is counted only while the guard lives"]
pub struct Entered(Arc<Inner>);

impl InFlight {
    /// Counts one more unit of work until the returned guard drops.
    pub fn enter(&self) -> Entered {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        Entered(self.0.clone())
    }

    /// Units of work under way now.
    pub fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    /// Resolves once no work is under way (at once when there is none).
    pub async fn idle(&self) {
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read, so a drop in between is not missed.
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_unit_of_work_to_end() {
        let work = InFlight::default();
        timeout(Duration::ZERO, work.idle())
            .await
            .expect("idle at once when nothing was entered");

        let (first, second) = (work.enter(), work.enter());
        let ends = tokio::spawn({
            let work = work.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(first);
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(second);
                assert_eq!(work.count(), 0);
            }
        });
        let started = tokio::time::Instant::now();
        work.idle().await;

        assert_eq!(started.elapsed(), Duration::from_millis(200));
        ends.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_wait_gives_up_while_work_goes_on() {
        let work = InFlight::default();
        let _held = work.enter();

        let waited = timeout(Duration::from_secs(1), work.idle()).await;

        assert!(waited.is_err());
        assert_eq!(work.count(), 1);
    }
}
