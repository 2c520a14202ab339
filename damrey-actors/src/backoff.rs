//! Exponential backoff with jitter: the pause between two attempts at something that
//! failed (a hand-off to another agent, a terminal reply, a reconnect).

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

/// Pauses that double from `first` up to `cap`, each plus a random jitter of up to
/// itself, so that many retriers spread out instead of retrying in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Pauses from `first`, doubling up to `cap` (a `cap` below `first` is raised to it).
    pub const fn new(first: Duration, cap: Duration) -> Self {
        let cap = if cap.as_nanos() < first.as_nanos() {
            first
        } else {
            cap
        };
        Backoff { next: first, cap }
    }

    /// The next pause (between the base and twice the base), and the base doubles.
    pub fn next_pause(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        base + jitter(base)
    }

    /// Sleeps the next pause, unless it would end at or after `deadline`: then it
    /// returns `false` at once, since an attempt after the pause would be too late.
    pub async fn pause_before(&mut self, deadline: Instant) -> bool {
        let pause = self.next_pause();
        if Instant::now() + pause >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
    }
}

/// A random delay in `[0, max)`, to spread retries (no RNG crate needed: std's
/// `RandomState` is seeded randomly).
pub fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(RandomState::new().hash_one(Instant::now()) % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_with_at_most_their_own_size_of_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(100));
        for base in [25, 50, 100, 100, 100] {
            let pause = backoff.next_pause();
            let base = Duration::from_millis(base);
            assert!(pause >= base && pause < base * 2, "{pause:?} for {base:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_that_would_reach_the_deadline_is_not_taken() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let start = Instant::now();
        assert!(backoff.pause_before(start + Duration::from_secs(1)).await);
        let slept = start.elapsed();
        assert!(slept >= Duration::from_millis(100) && slept < Duration::from_millis(200));
        let before = Instant::now();
        assert!(
            !backoff
                .pause_before(before + Duration::from_millis(150))
                .await
        );
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
