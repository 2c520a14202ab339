//! The agents this agent knows from its proxy's placement list: the only ones an
//! envelope's origin may name. The terminal reply of a line goes to its origin over a
//! link this agent opens, with its credential; an origin taken on trust would make it
//! dial any `host:port` a sender names and hand it the credential.
//!
//! An agent stays known for [`KNOWN_FOR`] after the proxy last listed it (a stopping
//! agent leaves the list at the start of its drain, yet still waits for its replies).
//! Entries only expire when a list arrives, so a proxy outage forgets no one. An
//! envelope from an origin not known yet is not acknowledged: its sender resends it,
//! and meanwhile [`KnownAgents::unknown`] asks the placement loop for a fresh list at
//! once (an agent just started is listed before other agents' long waits end).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cache::ConfigCache;
use tokio::time::Instant;

/// How long an agent stays known after the proxy last listed it: longer than the
/// longest call (`max_call_ms`, 5 minutes by default), so replies reach an agent that
/// left the list while its requests still ran.
pub const KNOWN_FOR: Duration = Duration::from_secs(600);

/// The agents listed by the proxy lately, and the envelopes refused for naming others.
#[derive(Debug)]
pub struct KnownAgents {
    me: String,
    /// Where the names are kept across a restart: an agent restarted while its proxy is
    /// away must still take the lines of the agents it knew.
    disk: Option<ConfigCache>,
    /// Each agent and when a list last named it.
    listed: Mutex<HashMap<String, Instant>>,
    /// Wakes the placement loop for a list now.
    refresh: Notify,
    refused: AtomicU64,
}

impl KnownAgents {
    /// Nobody known yet but `me`, this agent's advertised address.
    pub fn new(me: impl Into<String>) -> Self {
        KnownAgents {
            me: me.into(),
            disk: None,
            listed: Mutex::default(),
            refresh: Notify::new(),
            refused: AtomicU64::new(0),
        }
    }

    /// The agents `disk` kept from an earlier run, known from now (a proxy outage across
    /// the restart forgets no one); later lists are kept there whenever the names change.
    /// A file that cannot be read is logged and starts empty, as the config cache does.
    pub fn remembered(me: impl Into<String>, disk: ConfigCache) -> Self {
        let names = disk.load_agents().unwrap_or_else(|error| {
            tracing::warn!(error = %error, "the known agents on disk cannot be read; starting with none");
            Vec::new()
        });
        let now = Instant::now();
        let known = KnownAgents {
            disk: Some(disk),
            ..KnownAgents::new(me)
        };
        known
            .listed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(names.into_iter().map(|name| (name, now)));
        known
    }

    /// Records a placement list from the proxy: every agent it names is known from now,
    /// and those it has not named for [`KNOWN_FOR`] are forgotten.
    pub fn listed<'a>(&self, agents: impl IntoIterator<Item = &'a str>) {
        let now = Instant::now();
        let mut listed = self
            .listed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = listed.len();
        let mut added = false;
        for agent in agents {
            added |= listed.insert(agent.to_owned(), now).is_none();
        }
        listed.retain(|_, at| now.duration_since(*at) < KNOWN_FOR);
        if let Some(disk) = self
            .disk
            .as_ref()
            .filter(|_| added || listed.len() != before)
        {
            let mut names: Vec<String> = listed.keys().cloned().collect();
            names.sort();
            if let Err(error) = disk.store_agents(&names) {
                tracing::warn!(error = %error, "the known agents cannot be kept on disk");
            }
        }
    }

    /// Whether `agent` may be an envelope's origin: this agent, or one listed lately.
    pub fn knows(&self, agent: &str) -> bool {
        agent == self.me
            || self
                .listed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains_key(agent)
    }

    /// Counts and logs an envelope refused for its unknown `origin`, and asks for a
    /// fresh list (the origin may have just started).
    pub fn unknown(&self, origin: &str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // Resends repeat a refusal many times a second: the 1st, 2nd, 4th, 8th... are
        // logged, so a sender cannot flood the log.
        if refused.is_power_of_two() {
            tracing::warn!(
                agent = origin,
                refused,
                "refused an envelope whose origin is no agent the proxy lists; not acknowledged"
            );
        }
        self.refresh.notify_one();
    }

    /// Resolves when a fresh list is wanted.
    pub async fn refresh_wanted(&self) {
        self.refresh.notified().await;
    }

    /// Envelopes refused so far for an unknown origin.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_known_before_a_restart_are_known_after_it() {
        let dir = std::env::temp_dir().join(format!("damrey-known-{}", uuid::Uuid::new_v4()));
        let me = "10.0.0.1:7701";
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let before = KnownAgents::remembered(me, ConfigCache::new(&dir, me));
            before.listed(["10.0.0.2:7701"]);

            // The restart: no list from the proxy yet.
            let after = KnownAgents::remembered(me, ConfigCache::new(&dir, me));

            assert!(after.knows("10.0.0.2:7701"));
            assert!(!after.knows("10.0.0.3:7701"));
        });
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_is_known_once_listed_until_lists_leave_it_out_for_long() {
        let known = KnownAgents::new("10.0.0.1:7701");
        assert!(known.knows("10.0.0.1:7701"), "itself");
        assert!(!known.knows("10.0.0.2:7701"));

        known.listed(["10.0.0.2:7701", "10.0.0.3:7701"]);
        assert!(known.knows("10.0.0.2:7701"));

        tokio::time::advance(KNOWN_FOR).await;
        assert!(
            known.knows("10.0.0.3:7701"),
            "no list came: a proxy outage forgets no one"
        );
        known.listed(["10.0.0.2:7701"]);
        assert!(known.knows("10.0.0.2:7701"));
        assert!(
            !known.knows("10.0.0.3:7701"),
            "left out of lists for too long"
        );
    }

    #[tokio::test]
    async fn an_unknown_origin_is_counted_and_asks_for_a_fresh_list() {
        let known = KnownAgents::new("10.0.0.1:7701");
        known.unknown("evil:1");
        known.refresh_wanted().await;
        assert_eq!(known.refused(), 1);
    }
}
