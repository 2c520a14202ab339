//! Exponential backoff with jitter: the waits between attempts at something that may
//! work again soon (an agent coming back, an agent getting its configs).

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use tokio::time::Instant;

/// A random delay in `[0, max)`, to spread retries (no RNG crate needed: std's
/// `RandomState` is seeded randomly).
pub fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(RandomState::new().hash_one(Instant::now()) % nanos)
}

/// Waits that start at `first` and double up to `most`, each with up to as much again
/// of jitter, so that many waiters do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    most: Duration,
    next: Duration,
}

impl Backoff {
    /// Backoff from `first` doubling to `most`.
    ///
    /// # Panics
    /// When `first` is zero or `most` is less than `first`: in a `const` that is a
    /// compile error.
    pub const fn new(first: Duration, most: Duration) -> Backoff {
        assert!(!first.is_zero(), "a backoff starts above zero");
        assert!(
            most.as_nanos() >= first.as_nanos(),
            "a backoff's longest wait is at least its first"
        );
        Backoff { most, next: first }
    }

    /// The next wait (its base plus jitter), and doubles the base up to the longest.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(self.most);
        base + jitter(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_longest_with_jitter_below_the_base() {
        let mut backoff = Backoff::new(50 * MS, 1_000 * MS);
        for base in [50, 100, 200, 400, 800, 1_000, 1_000].map(|ms| ms * MS) {
            let wait = backoff.next_wait();
            assert!(wait >= base && wait < base * 2, "{wait:?} for {base:?}");
        }
    }

    #[test]
    #[should_panic(expected = "at least its first")]
    fn a_longest_wait_below_the_first_is_refused() {
        let _ = Backoff::new(2 * MS, MS);
    }
}
