//! Waiting for a state: the one way a process-level test decides that something
//! happened (never a fixed sleep), with a generous limit and a message naming what never
//! happened.

use std::future::Future;
use std::time::{Duration, Instant};

/// The limit of a wait whose caller names none: long enough for a loaded machine (the
/// mesh tests share the cores with each other and with other builds).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `probe` every 10 ms until it gives `Some`, and returns that value: a state to
/// wait for, never a speed to assert.
///
/// # Panics
/// With "`what`: not within `limit`" when `probe` gave `None` for `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_seen(limit, what, || {
        let probed = probe();
        async move { probed.await.ok_or_else(String::new) }
    })
    .await
}

/// [`eventually`] for a probe that says what it saw instead (`Err`): the last of those
/// is in the message when the state never comes.
///
/// # Panics
/// With "`what`: not within `limit`; last seen: ..." when `probe` gave `Err` for `limit`.
pub async fn eventually_seen<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) if started.elapsed() >= limit => {
                if seen.is_empty() {
                    panic!("{what}: not within {limit:?}");
                }
                panic!("{what}: not within {limit:?}; last seen: {seen}");
            }
            Err(_) => actix_rt::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
