//! The agent registry's writers: heartbeats gathered into batches, each one
//! transaction of a few statements (group commit), so that N agents beating once a
//! second cost a few statements a second rather than several each; and the sweep that
//! takes agents silent past the TTL off the placement. The entries `GET /agents` lists
//! are declared with the other bodies agents read in [`damrey_wire::rest`]; the
//! heartbeat agents send is [`damrey_wire::report::Heartbeat`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use damrey_wire::report::{Heartbeat, InstanceCount};
use tokio::sync::{mpsc, oneshot};

pub use damrey_wire::rest::AgentEntry;

use crate::feed::Feed;
use crate::store::{Store, StoreError, now_ms};

/// The most heartbeats one transaction records.
pub const MAX_BATCH: usize = 512;

/// How many heartbeats may wait for the writer before senders wait too.
const QUEUE: usize = 8 * MAX_BATCH;

/// The most often the sweep looks for silent agents; a quarter of the TTL when shorter.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// A heartbeat waiting for its batch, and where its entry goes.
struct Pending {
    heartbeat: Heartbeat,
    answer: oneshot::Sender<Result<AgentEntry, StoreError>>,
}

/// Records heartbeats through one writer task, which takes whatever has queued while
/// the previous batch was written: alone under light load, hundreds at a time under
/// heavy load.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
}

impl Recorder {
    /// Starts the writer on the current runtime: it records into `store`, lists agents
    /// again after `ttl` of silence, stores an agent's samples at most every
    /// `stats_every` (see [`Sampling`]), and publishes the placement versions it makes
    /// on `placement`. It ends when every `Recorder` is dropped.
    pub fn start(store: Store, ttl: Duration, stats_every: Duration, placement: Feed) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sampling = Sampling::new(stats_every);
        tokio::spawn(write_batches(store, ttl, sampling, placement, pending));
        Recorder { queue }
    }

    /// Records `heartbeat` with the others queued now; its entry as recorded.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails (the whole batch fails alike), or
    /// [`StoreError::Stopped`] when the writer has stopped.
    pub async fn record(&self, heartbeat: Heartbeat) -> Result<AgentEntry, StoreError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { heartbeat, answer })
            .await
            .map_err(|_| StoreError::Stopped)?;
        answered.await.map_err(|_| StoreError::Stopped)?
    }
}

/// The writer: a batch of what has queued (each agent once: a second heartbeat of one
/// agent waits for the next batch, so an agent's heartbeats are recorded in order),
/// recorded in one transaction, then the next.
async fn write_batches(
    store: Store,
    ttl: Duration,
    mut sampling: Sampling,
    placement: Feed,
    mut pending: mpsc::Receiver<Pending>,
) {
    let mut deferred: Vec<Pending> = Vec::new();
    loop {
        let mut queued = std::mem::take(&mut deferred);
        if queued.is_empty() {
            match pending.recv().await {
                Some(first) => queued.push(first),
                None => return,
            }
        }
        while queued.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => queued.push(next),
                Err(_) => break,
            }
        }
        let mut agents = HashSet::with_capacity(queued.len());
        let (batch, later): (Vec<Pending>, Vec<Pending>) = queued
            .into_iter()
            .partition(|pending| agents.insert(pending.heartbeat.agent.clone()));
        deferred = later;
        let heartbeats: Vec<&Heartbeat> = batch.iter().map(|p| &p.heartbeat).collect();
        let now = now_ms();
        let sampled: Vec<&Heartbeat> = heartbeats
            .iter()
            .copied()
            .filter(|heartbeat| sampling.due(heartbeat, now))
            .collect();
        let result = store.heartbeats(&heartbeats, &sampled, now, ttl).await;
        let sampled: Vec<String> = sampled.iter().map(|h| h.agent.clone()).collect();
        match result {
            Ok(recorded) => {
                if let Some(version) = recorded.placement {
                    placement.publish(version);
                }
                for (pending, entry) in batch.into_iter().zip(recorded.value) {
                    let _ = pending.answer.send(Ok(entry));
                }
            }
            Err(error) => {
                tracing::debug!(error = %damrey_service::telemetry::error_chain(&error), heartbeats = batch.len(), "recording heartbeats failed");
                let error = Arc::new(error);
                for agent in &sampled {
                    sampling.forget(agent);
                }
                for pending in batch {
                    let _ = pending.answer.send(Err(StoreError::Batch(error.clone())));
                }
            }
        }
    }
}

/// Which heartbeats' samples are stored: an agent's at most every `every` (by this
/// proxy's count), and at once when its instances changed, so that a window's rates
/// and which instances are live stay right while the store gets one row per instance
/// every `every`, not every heartbeat.
#[derive(Debug)]
pub struct Sampling {
    every: i64,
    /// Each agent's last stored sample time and the instances it had then.
    stored: HashMap<String, (i64, Vec<InstanceCount>)>,
    /// When agents not heard from for a while were last forgotten.
    swept_ms: i64,
}

impl Sampling {
    /// Samples each agent at most every `every`.
    pub fn new(every: Duration) -> Sampling {
        Sampling {
            every: i64::try_from(every.as_millis()).unwrap_or(i64::MAX),
            stored: HashMap::new(),
            swept_ms: 0,
        }
    }

    /// Whether `heartbeat`'s samples, recorded at `now_ms`, are to be stored; when they
    /// are, counts them as stored.
    pub fn due(&mut self, heartbeat: &Heartbeat, now_ms: i64) -> bool {
        let horizon = self.every.saturating_mul(4).max(60_000);
        if now_ms.saturating_sub(self.swept_ms) >= horizon {
            self.stored
                .retain(|_, (at_ms, _)| now_ms.saturating_sub(*at_ms) < horizon);
            self.swept_ms = now_ms;
        }
        let due = self.stored.get(&heartbeat.agent).is_none_or(|(at_ms, instances)| {
            now_ms.saturating_sub(*at_ms) >= self.every || *instances != heartbeat.instances
        });
        if due {
            self.stored.insert(
                heartbeat.agent.clone(),
                (now_ms, heartbeat.instances.clone()),
            );
        }
        due
    }

    /// `agent`'s samples were not stored after all: its next heartbeat's are.
    pub fn forget(&mut self, agent: &str) {
        self.stored.remove(agent);
    }
}

/// Takes the agents silent for longer than `ttl` off the placement, every
/// [`SWEEP_EVERY`] (or a quarter of `ttl`), and publishes the versions that makes on
/// `placement`; runs until dropped. Every proxy sweeps; each agent is taken off once.
pub async fn sweep(store: Store, ttl: Duration, placement: Feed) {
    let every = SWEEP_EVERY.min(ttl / 4).max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.expire_agents(now_ms(), ttl).await {
            Ok(Some(version)) => placement.publish(version),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(error = %damrey_service::telemetry::error_chain(&error), "sweeping silent agents failed");
            }
        }
    }
}
