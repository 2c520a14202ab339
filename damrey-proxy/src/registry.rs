//! The agent registry's writers: heartbeats gathered into batches, each one
//! transaction of a few statements (group commit), so that N agents beating once a
//! second cost a few statements a second rather than several each; and the sweep that
//! takes agents silent past the TTL off the placement. The entries `GET /agents` lists
//! are declared with the other bodies agents read in [`damrey_wire::rest`]; the
//! heartbeat agents send is [`damrey_wire::report::Heartbeat`].

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use damrey_wire::report::{Heartbeat, InstanceCount};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use damrey_wire::rest::AgentEntry;

use crate::feed::Feed;
use crate::store::{Store, StoreError, now_ms};

/// The most heartbeats one transaction records.
pub const MAX_BATCH: usize = 512;

/// A batch written less than this after the one before finds the writer busy: it then
/// waits up to [`BATCH_LINGER`] for more heartbeats before writing, so that a steady
/// stream of heartbeats (1,000 agents beating once a second) makes a few dozen
/// transactions a second instead of hundreds. A quiet proxy writes each heartbeat at
/// once.
pub const BUSY_GAP: Duration = Duration::from_millis(50);

/// How long a busy writer gathers heartbeats for one batch (5 ms: at 1,000 agents, batches
/// of about ten, p50 11 ms and p99 about 80 ms; 10 ms made batches of twenty and a p99 no
/// better).
pub const BATCH_LINGER: Duration = Duration::from_millis(5);

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
    /// Starts the writer on the current runtime: it records into `store` (an agent
    /// silent for longer than `ttl` counts as first seen again), stores an agent's
    /// samples at most every `stats_every` (see [`Sampling`]), and publishes the
    /// placement versions it makes on `placement`. It ends when every `Recorder` is
    /// dropped.
    pub fn start(store: Store, ttl: Duration, stats_every: Duration, placement: Feed) -> Recorder {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sampling = Sampling::new(stats_every);
        tokio::spawn(write_batches(store, ttl, sampling, placement, pending));
        Recorder { queue }
    }

    /// Records `heartbeat` with the others queued now, after any earlier heartbeat of
    /// its agent (a farewell too, so that no heartbeat left waiting brings a departed
    /// agent back); its entry as recorded.
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
/// gathered for [`BATCH_LINGER`] more when busy (see [`BUSY_GAP`]), recorded in one
/// transaction, then the next.
async fn write_batches(
    store: Store,
    ttl: Duration,
    mut sampling: Sampling,
    placement: Feed,
    mut pending: mpsc::Receiver<Pending>,
) {
    let mut deferred: Vec<Pending> = Vec::new();
    let mut last_batch: Option<Instant> = None;
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
        if last_batch.is_some_and(|at| at.elapsed() < BUSY_GAP) {
            let until = Instant::now() + BATCH_LINGER;
            while queued.len() < MAX_BATCH {
                match tokio::time::timeout_at(until, pending.recv()).await {
                    Ok(Some(next)) => queued.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        last_batch = Some(Instant::now());
        let mut agents = HashSet::with_capacity(queued.len());
        let (mut batch, later): (Vec<Pending>, Vec<Pending>) = queued
            .into_iter()
            .partition(|pending| agents.insert(pending.heartbeat.agent.clone()));
        deferred = later;
        // In address order, so that two transactions that share agents (two proxies'
        // batches) take their rows' locks in one order and cannot deadlock.
        batch.sort_by(|a, b| a.heartbeat.agent.cmp(&b.heartbeat.agent));
        let (farewells, beats): (Vec<Pending>, Vec<Pending>) = batch
            .into_iter()
            .partition(|pending| pending.heartbeat.leaving);
        write_batch(&store, ttl, &mut sampling, &placement, beats).await;
        for farewell in farewells {
            write_alone(&store, ttl, &placement, farewell).await;
        }
    }
}

/// Records one heartbeat (a farewell, or one of a batch that failed) in its own
/// transaction and answers it.
async fn write_alone(store: &Store, ttl: Duration, placement: &Feed, pending: Pending) {
    let recorded = store
        .heartbeat(&pending.heartbeat, now_ms(), ttl)
        .await
        .map(|recorded| {
            if let Some(version) = recorded.placement {
                placement.publish(version);
            }
            recorded.value
        });
    let _ = pending.answer.send(recorded);
}

/// Records `batch` (of distinct agents, none leaving) in one transaction and answers
/// each of its heartbeats. When the transaction fails for another reason than the
/// store being unavailable (a value the store refuses, a deadlock), each heartbeat is
/// tried alone, so that one bad heartbeat fails only its own request.
async fn write_batch(
    store: &Store,
    ttl: Duration,
    sampling: &mut Sampling,
    placement: &Feed,
    batch: Vec<Pending>,
) {
    if batch.is_empty() {
        return;
    }
    let heartbeats: Vec<&Heartbeat> = batch.iter().map(|p| &p.heartbeat).collect();
    let now = now_ms();
    let sampled: Vec<&Heartbeat> = heartbeats
        .iter()
        .copied()
        .filter(|heartbeat| sampling.due(heartbeat, now))
        .collect();
    let result = store.heartbeats(&heartbeats, &sampled, now, ttl).await;
    let sampled: Vec<String> = sampled.iter().map(|h| h.agent.clone()).collect();
    let error = match result {
        Ok(recorded) => {
            if let Some(version) = recorded.placement {
                placement.publish(version);
            }
            for (pending, entry) in batch.into_iter().zip(recorded.value) {
                let _ = pending.answer.send(Ok(entry));
            }
            return;
        }
        Err(error) => error,
    };
    tracing::debug!(error = %damrey_service::telemetry::error_chain(&error), heartbeats = batch.len(), "recording heartbeats failed");
    for agent in &sampled {
        sampling.forget(agent);
    }
    if error.is_unavailable() || batch.len() == 1 {
        let error = Arc::new(error);
        for pending in batch {
            let _ = pending.answer.send(Err(StoreError::Batch(error.clone())));
        }
        return;
    }
    for pending in batch {
        write_alone(store, ttl, placement, pending).await;
    }
}

/// Which heartbeats' samples are stored: an agent's once in each interval of `every`
/// (intervals offset per agent, so that the store's load is even over the interval),
/// and at once when its instances or the instances it reports changed,
/// or while it reports the final counts of instances that left (more reports of a
/// worker than instances listed: an agent reports those for two heartbeats only). So a
/// window's rates, which instances are live and the counts of vanished instances stay
/// right while the store gets one row per instance every `every`, not every heartbeat.
#[derive(Debug)]
pub struct Sampling {
    every: i64,
    /// Each agent's last stored sample: when, and what it listed and reported.
    stored: HashMap<String, Stored>,
    /// When agents not heard from for a while were last forgotten.
    swept_ms: i64,
}

/// What an agent's last stored sample held.
#[derive(Debug)]
struct Stored {
    at_ms: i64,
    /// The agent's interval it fell in (see [`Sampling::slot`]).
    slot: i64,
    instances: Vec<InstanceCount>,
    reported: Vec<(String, u64)>,
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
                .retain(|_, stored| now_ms.saturating_sub(stored.at_ms) < horizon);
            self.swept_ms = now_ms;
        }
        let reported = || {
            heartbeat
                .stats
                .iter()
                .map(|report| (report.worker.as_str(), report.instance))
        };
        let slot = self.slot(&heartbeat.agent, now_ms);
        let due = departed_reported(heartbeat)
            || self.stored.get(&heartbeat.agent).is_none_or(|stored| {
                stored.slot != slot
                    || stored.instances != heartbeat.instances
                    || !stored
                        .reported
                        .iter()
                        .map(|(worker, instance)| (worker.as_str(), *instance))
                        .eq(reported())
            });
        if due {
            self.stored.insert(
                heartbeat.agent.clone(),
                Stored {
                    at_ms: now_ms,
                    slot,
                    instances: heartbeat.instances.clone(),
                    reported: reported()
                        .map(|(worker, instance)| (worker.to_owned(), instance))
                        .collect(),
                },
            );
        }
        due
    }

    /// Which of `agent`'s intervals `now_ms` falls in. Each agent's intervals start at
    /// its own offset, from a hash of its address, so that agents that started
    /// together are not all sampled in the same second of every interval.
    fn slot(&self, agent: &str, now_ms: i64) -> i64 {
        if self.every <= 0 {
            return now_ms;
        }
        let mut hasher = DefaultHasher::new();
        agent.hash(&mut hasher);
        let offset = i64::try_from(hasher.finish() % self.every.unsigned_abs()).unwrap_or(0);
        now_ms.saturating_add(offset).div_euclid(self.every)
    }

    /// `agent`'s samples were not stored after all: its next heartbeat's are.
    pub fn forget(&mut self, agent: &str) {
        self.stored.remove(agent);
    }
}

/// Whether `heartbeat` reports more instances of a worker than it lists: the final
/// counts of instances that left.
fn departed_reported(heartbeat: &Heartbeat) -> bool {
    let mut reports: HashMap<&str, u64> = HashMap::new();
    for report in &heartbeat.stats {
        *reports.entry(report.worker.as_str()).or_default() += 1;
    }
    reports.into_iter().any(|(worker, reported)| {
        let listed = heartbeat
            .instances
            .iter()
            .find(|instance| instance.worker == worker)
            .map_or(0, |instance| u64::from(instance.count));
        reported > listed
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_wire::report::{InstanceReport, Latency};

    fn beat(instances: &[(&str, u32)], reported: &[(&str, u64)]) -> Heartbeat {
        Heartbeat {
            agent: "h:1".to_owned(),
            instances: instances
                .iter()
                .map(|(worker, count)| InstanceCount {
                    worker: (*worker).to_owned(),
                    count: *count,
                })
                .collect(),
            stats: reported
                .iter()
                .map(|(worker, instance)| {
                    InstanceReport::new((*worker).to_owned(), *instance, Latency::default())
                })
                .collect(),
            routing: Default::default(),
            leaving: false,
        }
    }

    #[test]
    fn an_agent_is_sampled_once_per_interval_and_at_once_when_what_it_holds_changes() {
        let mut sampling = Sampling::new(Duration::from_secs(5));
        let steady = beat(&[("add", 1)], &[("add", 1)]);
        // Where one of this agent's intervals starts.
        let start = (1..5_000)
            .find(|t| sampling.slot("h:1", *t) != sampling.slot("h:1", t - 1))
            .unwrap_or(0);

        assert!(sampling.due(&steady, start), "first heard");
        assert!(!sampling.due(&steady, start + 1_000));
        assert!(!sampling.due(&steady, start + 4_999));
        assert!(sampling.due(&steady, start + 5_000), "the next interval");

        // Instance 1 left and instance 2 came: the listing holds one still, but the
        // reports hold the departed one's final counts for two heartbeats.
        let departing = beat(&[("add", 1)], &[("add", 1), ("add", 2)]);
        assert!(
            sampling.due(&departing, start + 5_100),
            "final counts reported"
        );
        assert!(sampling.due(&departing, start + 5_200), "still reported");
        let after = beat(&[("add", 1)], &[("add", 2)]);
        assert!(
            sampling.due(&after, start + 5_300),
            "other instances reported"
        );
        assert!(!sampling.due(&after, start + 6_000));
        assert!(
            sampling.due(&beat(&[], &[]), start + 6_100),
            "instances went"
        );

        sampling.forget("h:1");
        assert!(
            sampling.due(&beat(&[], &[]), start + 6_200),
            "not stored after all"
        );
    }

    #[test]
    fn agents_that_start_together_are_sampled_spread_over_the_interval() {
        let mut sampling = Sampling::new(Duration::from_secs(5));
        let agents: Vec<Heartbeat> = (0..1_000)
            .map(|n| Heartbeat {
                agent: format!("10.0.{}.{}:7701", n / 256, n % 256),
                ..beat(&[("add", 1)], &[("add", 1)])
            })
            .collect();
        for agent in &agents {
            assert!(sampling.due(agent, 0));
        }

        // Each beating once a second for the next 5 s: each is sampled once, and no
        // second takes much more than its fifth.
        let per_second: Vec<usize> = (1..=5)
            .map(|second| {
                agents
                    .iter()
                    .filter(|agent| sampling.due(agent, second * 1_000))
                    .count()
            })
            .collect();
        assert_eq!(per_second.iter().sum::<usize>(), 1_000, "{per_second:?}");
        assert!(per_second.iter().all(|n| *n < 300), "{per_second:?}");
    }
}
