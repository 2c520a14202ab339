//! The routing table: for each worker, its config, its instances here, the agents known
//! to hold it elsewhere (and those that stopped being listed lately), and its routing
//! counters. It is copied on write, so a line reads one consistent table without
//! holding a lock; every change wakes the lines waiting for one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::Router;
use crate::FastMap;
use crate::instance::Instance;
use crate::route_counters::{Rejection, RouteCounters};
use crate::spec::WorkerSpec;

#[derive(Clone, Default)]
pub(super) struct Table {
    pub(super) routes: FastMap<String, Route>,
    /// When configs were first set.
    pub(super) loaded_at: Option<Instant>,
}

#[derive(Clone, Default)]
pub(super) struct Route {
    pub(super) spec: Option<Arc<WorkerSpec>>,
    pub(super) local: Vec<Instance>,
    /// Agents known to hold instances of this worker.
    pub(super) remote: Vec<String>,
    /// When the worker last went from some instances (here or elsewhere) to none.
    pub(super) emptied_at: Option<Instant>,
    /// Agents that stopped being listed as holders lately, and when: an agent that is
    /// draining (it left the proxy's list first) still runs what is handed to it, and a
    /// line already under way may need its instances to finish.
    pub(super) departed: Vec<(String, Instant)>,
    /// Its routing events (shared by every copy of the table).
    pub(super) counters: Arc<RouteCounters>,
}

impl Route {
    fn has_instances(&self) -> bool {
        !self.local.is_empty() || !self.remote.is_empty()
    }
}

/// How long after a worker lost its last instance a line waits, within its deadline,
/// for an instance to (re)appear rather than answer `no live instance` at once: a
/// worker process or an agent restarting, or a link healing, takes about this long.
pub(super) const INSTANCE_GRACE: Duration = Duration::from_secs(10);

impl Router {
    pub(super) fn table(&self) -> Arc<Table> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Changes the table (copy on write) and wakes the lines waiting for a change.
    pub(super) fn update(&self, change: impl FnOnce(&mut Table)) {
        let mut guard = self
            .inner
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut table = Table::clone(&guard);
        change(&mut table);
        let now = Instant::now();
        for (name, route) in table.routes.iter_mut() {
            let before = guard.routes.get(name);
            if before.is_some_and(Route::has_instances) && !route.has_instances() {
                route.emptied_at = Some(now);
            }
            let gone = before
                .into_iter()
                .flat_map(|before| &before.remote)
                .filter(|agent| !route.remote.contains(agent))
                .map(|agent| (agent.clone(), now))
                .collect::<Vec<_>>();
            route.departed.extend(gone);
            let remote = &route.remote;
            route.departed.retain(|(agent, since)| {
                now.duration_since(*since) < INSTANCE_GRACE && !remote.contains(agent)
            });
        }
        *guard = Arc::new(table);
        drop(guard);
        self.inner.changes.send_modify(|version| *version += 1);
    }

    pub(super) fn count(&self, worker: &str, event: impl FnOnce(&RouteCounters)) {
        if let Some(route) = self.table().routes.get(worker) {
            event(&route.counters);
        }
    }

    pub(super) fn count_rejection(&self, worker: &str, why: Option<Rejection>) {
        match why {
            Some(why) => self.count(worker, |counters| counters.rejected(why)),
            None => {
                self.inner.not_configured.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
