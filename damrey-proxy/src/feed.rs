//! Change feeds: waiting for a stored version newer than the one an agent has — the
//! config version (`GET /workers/get?after=`) or the placement version, which moves
//! when the instances `GET /agents` lists change (`GET /agents?after=`).
//!
//! Changes made through this process are published at once; changes made through
//! other proxies on the same database are found by one poller per feed and process that
//! reads the stored version every `feed_poll_ms`, and only while someone is waiting. The
//! stored version is the truth: a wake-up only makes a waiter read it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::store::{Placement, Snapshot, Store, StoreError};

/// The longest a `GET /workers/get?after=N` or `GET /agents?after=N` waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Which stored version a feed follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The workers' configs.
    Configs,
    /// Where instances are attached.
    Placement,
}

/// What a feed answers: a state read together with its version.
pub trait Versioned {
    /// The version the state belongs to.
    fn version(&self) -> i64;
}

impl Versioned for Arc<Snapshot> {
    fn version(&self) -> i64 {
        self.version
    }
}

impl Versioned for Placement {
    fn version(&self) -> i64 {
        self.version
    }
}

/// Wakes waiters when a stored version moves.
#[derive(Debug, Clone)]
pub struct Feed {
    topic: Topic,
    version: Arc<watch::Sender<i64>>,
    closing: Arc<watch::Sender<bool>>,
}

impl Feed {
    /// A feed of `topic` that starts at `version`.
    pub fn new(topic: Topic, version: i64) -> Feed {
        Feed {
            topic,
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

    /// The newest version this feed has seen: this proxy's own writes at once, other
    /// proxies' within the poll period while someone waits.
    pub fn latest(&self) -> i64 {
        *self.version.borrow()
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

    /// Waits until the version of what `read` reads differs from `after` (a newer one,
    /// or an older one after the store was replaced), or until `wait` has passed, or
    /// until the feed closes; then answers the current state.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails while reading.
    pub async fn wait_for_change<T, F, Fut>(
        &self,
        after: i64,
        wait: Duration,
        mut read: F,
    ) -> Result<T, StoreError>
    where
        T: Versioned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        // Subscribe before reading so that a change between the read and the wait wakes us.
        let mut versions = self.version.subscribe();
        let mut closing = self.closing.subscribe();
        loop {
            versions.borrow_and_update();
            let state = read().await?;
            if state.version() != after || *closing.borrow() {
                return Ok(state);
            }
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() {
                        return Ok(state);
                    }
                }
                _ = closing.wait_for(|closing| *closing) => {}
                () = tokio::time::sleep_until(deadline) => return read().await,
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
            let version = match self.topic {
                Topic::Configs => store.version().await,
                Topic::Placement => store.placement_version().await,
            };
            match version {
                Ok(version) => self.publish(version),
                Err(error) => {
                    tracing::debug!(topic = ?self.topic, error = %error, "change feed could not read the version")
                }
            }
        }
    }
}
