//! Exponential backoff with jitter: the pause between two attempts at something that
//! failed. Every retry loop of Damrey uses this one type: a hand-off to another agent, a
//! terminal reply, a worker's attach and reconnect, an instance's ejection, the agent's
//! requests to the proxy, the proxy's webhook posts.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

/// Pauses that double from `first` up to `cap`, each plus a random jitter of up to
/// itself, so that many retriers spread out instead of retrying in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Pauses from `first`, doubling up to `cap`.
    ///
    /// # Panics
    /// When `first` is zero (a retry loop would spin) or `cap` is below `first`; in a
    /// `const`, that is a compile-time error.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        assert!(
            !first.is_zero(),
            "a backoff's first pause must be over zero"
        );
        assert!(
            cap.as_nanos() >= first.as_nanos(),
            "a backoff's cap must be at least its first pause"
        );
        Backoff {
            first,
            next: first,
            cap,
        }
    }

    /// The next pause (between the base and twice the base), and the base doubles.
    pub fn next_pause(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        base + jitter(base)
    }

    /// Starts again from the first pause, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps the next pause.
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
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
fn jitter(max: Duration) -> Duration {
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
        // The timer wheel rounds a sleep up to the millisecond: a pause of 199.6 ms
        // sleeps 200.
        assert!(slept >= Duration::from_millis(100) && slept <= Duration::from_millis(200));
        let before = Instant::now();
        assert!(
            !backoff
                .pause_before(before + Duration::from_millis(150))
                .await
        );
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_sleep_doubling_times_and_start_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        for base in [100, 200, 400, 400] {
            let before = Instant::now();
            backoff.pause().await;
            let slept = before.elapsed();
            let base = Duration::from_millis(base);
            // Under twice the base, rounded up to the timer's millisecond.
            assert!(slept >= base && slept <= base * 2, "{slept:?} for {base:?}");
        }
        backoff.reset();
        let before = Instant::now();
        backoff.pause().await;
        assert!(before.elapsed() < Duration::from_millis(200));
    }

    #[test]
    #[should_panic(expected = "first pause must be over zero")]
    fn a_zero_first_pause_is_refused() {
        let _ = Backoff::new(Duration::ZERO, Duration::from_secs(1));
    }

    #[test]
    #[should_panic(expected = "cap must be at least its first pause")]
    fn a_cap_below_the_first_pause_is_refused() {
        let _ = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
    }
}
