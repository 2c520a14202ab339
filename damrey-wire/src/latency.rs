//! The latency histogram a report carries for each instance: fixed buckets shared by the
//! agent that records durations and the proxy that merges and subtracts them.

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in microseconds (Prometheus `le`); one more
/// bucket after the last bound holds anything longer.
pub const LATENCY_BOUNDS_MICROS: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// How many latency buckets a report carries: one per bound and the overflow bucket.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_MICROS.len() + 1;

/// A latency histogram: counts per bucket of [`LATENCY_BOUNDS_MICROS`] (not cumulative)
/// and the sum of all durations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Sum of the recorded durations in microseconds.
    pub sum_us: u64,
    /// [`LATENCY_BUCKETS`] counts, one per bucket.
    pub counts: Vec<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            sum_us: 0,
            counts: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl Latency {
    /// How many durations were recorded; `u64::MAX` when the sum overflows.
    pub fn count(&self) -> u64 {
        self.counts.iter().copied().fold(0, u64::saturating_add)
    }

    /// The upper bound in milliseconds of the bucket holding the `q` quantile
    /// (0 < q ≤ 1); `None` when empty, the largest bound for the overflow bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen = count.saturating_add(seen);
            if seen >= rank {
                let bound = LATENCY_BOUNDS_MICROS[bucket.min(LATENCY_BOUNDS_MICROS.len() - 1)];
                return Some(bound as f64 / 1e3);
            }
        }
        None
    }

    /// Whether a count or the sum is lower than in `earlier` (its agent restarted).
    pub fn dropped_since(&self, earlier: &Latency) -> bool {
        self.sum_us < earlier.sum_us
            || self
                .counts
                .iter()
                .zip(&earlier.counts)
                .any(|(now, then)| now < then)
    }

    /// What was recorded after `earlier` was taken; all of `self` when a count went
    /// down (the instance's agent restarted in between).
    pub fn since(&self, earlier: &Latency) -> Latency {
        if self.dropped_since(earlier) {
            return self.clone();
        }
        Latency {
            sum_us: self.sum_us - earlier.sum_us,
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now - then)
                .collect(),
        }
    }

    /// Adds `other`'s counts to these (to sum instances of one worker).
    pub fn add(&mut self, other: &Latency) {
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_bucket_bounds() {
        let mut latency = Latency::default();
        assert_eq!(latency.quantile_ms(0.5), None);
        // 1 under 50 µs, 4 under 100 µs, 3 under 500 µs, 1 under 1 ms, 1 overflow.
        latency.counts[0] = 1;
        latency.counts[1] = 4;
        latency.counts[3] = 3;
        latency.counts[4] = 1;
        latency.counts[16] = 1;
        assert_eq!(latency.count(), 10);
        assert_eq!(latency.quantile_ms(0.1), Some(0.05));
        assert_eq!(latency.quantile_ms(0.5), Some(0.1));
        assert_eq!(latency.quantile_ms(0.9), Some(1.0));
        assert_eq!(latency.quantile_ms(1.0), Some(10_000.0));
    }

    #[test]
    fn since_subtracts_and_treats_a_drop_as_a_restart() {
        let mut earlier = Latency::default();
        earlier.counts[2] = 5;
        earlier.sum_us = 1_000;
        let mut now = earlier.clone();
        now.counts[2] = 7;
        now.counts[5] = 1;
        now.sum_us = 4_000;
        let delta = now.since(&earlier);
        assert_eq!(
            (delta.counts[2], delta.counts[5], delta.sum_us),
            (2, 1, 3_000)
        );
        let mut restarted = Latency::default();
        restarted.counts[0] = 1;
        restarted.sum_us = 10;
        assert_eq!(restarted.since(&earlier), restarted);
        let mut sum = Latency::default();
        sum.add(&delta);
        sum.add(&restarted);
        assert_eq!(sum.count(), 4);
    }
}
