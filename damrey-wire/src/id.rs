//! Ids for lines and for a worker's own requests: random (version 4) uuids made without
//! a system call each, since one is drawn per message.

use uuid::Uuid;

/// A random (version 4) id without a system call per id: a SplitMix64 stream per
/// thread, seeded once from the operating system's randomness. Ids only need to be
/// unique (receivers drop ids they have seen); two threads' streams meet with a chance
/// of about one in 2^64.
pub fn fresh_id() -> Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(Uuid::new_v4().as_u64_pair().0);
    }
    STATE.with(|state| {
        let next = || {
            let seed = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(seed);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let bits = (u128::from(next()) << 64) | u128::from(next());
        uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn fresh_ids_are_version_4_and_never_repeat_across_threads() {
        let batch = || (0..10_000).map(|_| fresh_id()).collect::<Vec<_>>();
        let mut ids = batch();
        ids.extend(std::thread::spawn(batch).join().unwrap());
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20_000);
    }
}
