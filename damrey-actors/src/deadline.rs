//! Deadlines from durations that come from users and from the wire, where any `u64` of
//! milliseconds may arrive: adding one to `Instant::now()` must never overflow (a
//! panic), so a duration past any real deadline means "no deadline" in practice.

use std::time::Duration;

use tokio::time::Instant;

/// A century: longer than any process runs, short enough to add to any `Instant`.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `after` from now, or a century from now when `after` is longer.
pub fn deadline_after(after: Duration) -> Instant {
    Instant::now() + after.min(FAR)
}

/// The time left until `deadline` in whole milliseconds, rounded up, as frames carry it:
/// whoever receives it never gives up before the sender's own deadline, so running out
/// of time reads as `TIMEOUT` at the sender, not as a failure of the receiver.
pub fn millis_left(deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    u64::try_from(left.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_a_deadline_without_overflow() {
        let now = Instant::now();
        assert!(deadline_after(Duration::from_millis(u64::MAX)) > now + Duration::from_secs(3600));
        assert!(deadline_after(Duration::MAX) > now);
        let soon = deadline_after(Duration::from_millis(5));
        assert!(soon >= now + Duration::from_millis(5));
    }

    #[test]
    fn time_left_rounds_up_to_the_millisecond() {
        let deadline = Instant::now() + Duration::from_micros(1_500);
        assert!(millis_left(deadline) >= 1);
        assert!(millis_left(deadline) <= 2);
        assert_eq!(millis_left(Instant::now() - Duration::from_millis(1)), 0);
    }
}
