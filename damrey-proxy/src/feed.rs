//! The change feed: waiting for a config version newer than the one an agent has.
//!
//! Changes made through this process are published at once; changes made through
//! other proxies on the same database are found by one poller per process that reads
//! the stored version every `feed_poll_ms`, and only while someone is waiting. The
//! stored version is the truth: a wake-up only makes a waiter read it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Snapshot, Store, StoreError};

/// The longest a `GET /workers/get?after=N` waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Wakes waiters when the config version moves.
#[derive(Debug, Clone)]
pub struct Feed {
    version: Arc<watch::Sender<i64>>,
    closing: Arc<watch::Sender<bool>>,
}

impl Feed {
    /// A feed that starts at `version`.
    pub fn new(version: i64) -> Feed {
        Feed {
            version: Arc::new(watch::Sender::new(version)),
            closing: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Tells waiters that the stored version is now `version`.
    pub fn publish(&self, version: i64) {
        self.version.send_if_modified(|current| {
            let newer = version > *current;
            if newer {
                *current = version;
            }
            newer
        });
    }

    /// Whether a request is waiting for a change now.
    pub fn has_waiters(&self) -> bool {
        self.version.receiver_count() > 0
    }

    /// Makes every waiter answer now, with the current state; used at shutdown so that
    /// long waits do not hold it up.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Waits until the stored version differs from `after` (a newer one, or an older
    /// one after the store was replaced), or until `wait` has passed, or until the feed
    /// closes; then answers the current state.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails while reading.
    pub async fn wait_for_change(
        &self,
        store: &Store,
        after: i64,
        wait: Duration,
    ) -> Result<Arc<Snapshot>, StoreError> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        // Subscribe before reading so that a change between the read and the wait wakes us.
        let mut versions = self.version.subscribe();
        let mut closing = self.closing.subscribe();
        loop {
            versions.borrow_and_update();
            let snapshot = store.snapshot().await?;
            if snapshot.version != after || *closing.borrow() {
                return Ok(snapshot);
            }
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() {
                        return Ok(snapshot);
                    }
                }
                _ = closing.wait_for(|closing| *closing) => {}
                () = tokio::time::sleep_until(deadline) => return store.snapshot().await,
            }
        }
    }

    /// Reads the stored version every `every` while someone waits, and publishes it;
    /// runs until dropped.
    pub async fn poll(self, store: Store, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.has_waiters() {
                continue;
            }
            match store.version().await {
                Ok(version) => self.publish(version),
                Err(error) => {
                    tracing::debug!(error = %error, "change feed could not read the version")
                }
            }
        }
    }
}
