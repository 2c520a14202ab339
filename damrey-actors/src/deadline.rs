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
}
