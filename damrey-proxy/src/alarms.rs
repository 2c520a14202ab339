//! The alarm evaluator: what each rule fires on, and the task that fires and resolves
//! alarms in the store every `alarm_eval_ms` (several proxies may run one each; the store
//! makes every transition happen once) and hands its own transitions to the webhook.
//! What an alarm is lives in [`crate::alarm`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::alarm::{Alarm, Condition, Event, Rule, Transition};
use crate::monitor::{Monitor, Samples, StatsReport};
use crate::store::{StoreError, WorkerAlarmRules, now_ms};
use crate::webhook::Webhook;

/// How often samples of agents that stopped reporting are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// The evaluator's timings.
#[derive(Debug, Clone, Copy)]
pub struct EvaluatorSettings {
    /// How often the rules are evaluated.
    pub every: Duration,
    /// How long a worker may be without a live instance before `no_instance` fires,
    /// counted from the latest of its last sighting, its config change and the
    /// evaluator's start.
    pub no_instance_grace: Duration,
    /// How long an agent may be silent before `agent_silent` fires.
    pub agent_silent: Duration,
    /// How long an active alarm's condition must stay away before it resolves.
    pub resolve_after: Duration,
    /// How long samples are kept.
    pub retention: Duration,
    /// How long the samples read for the rates' rules are used again: agents' samples
    /// are stored this often at most (`stats_every_ms`), so reading them every
    /// evaluation would mostly read the same rows. The rules on instances and agents
    /// read the placement and the registry at every evaluation.
    pub samples_for: Duration,
    /// How long resolved alarms are kept.
    pub history: Duration,
}

/// Everything the rules look at, read at one moment.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// When the inputs were read (ms since the Unix epoch).
    pub now_ms: i64,
    /// Every configured worker's thresholds.
    pub rules: Vec<WorkerAlarmRules>,
    /// The stats over each window some worker's rules use, by window.
    pub reports: BTreeMap<u64, StatsReport>,
    /// Every agent in the registry and when it was last heard from.
    pub agents: Vec<(String, i64)>,
}

/// The conditions that hold in `inputs`, by key. `grace_from_ms` is the earliest time
/// the `no_instance` grace may count from (the evaluator's start).
pub fn conditions(
    inputs: &Inputs,
    settings: &EvaluatorSettings,
    grace_from_ms: i64,
) -> BTreeMap<String, Condition> {
    let now = inputs.now_ms;
    let grace = millis(settings.no_instance_grace);
    let mut found = Vec::new();
    for config in &inputs.rules {
        let rules = &config.rules;
        let Some(stats) = inputs.reports.get(&rules.window_ms).and_then(|report| {
            report
                .workers
                .iter()
                .find(|stats| stats.worker == config.worker)
        }) else {
            continue;
        };
        let name = config.worker.as_str();
        if rules.no_instance && stats.live_instances == 0 {
            let since = stats
                .last_seen_ms
                .unwrap_or(i64::MIN)
                .max(config.updated_ms)
                .max(grace_from_ms);
            if now.saturating_sub(since) >= grace {
                let seen = match stats.last_seen_ms {
                    Some(seen) => format!("last seen {} ms ago", now.saturating_sub(seen)),
                    None => format!("none reported within {} ms", millis(settings.retention)),
                };
                found.push(Condition::worker(
                    Rule::NoInstance,
                    name,
                    format!("worker {name} has no live instance ({seen})"),
                    0.0,
                    1.0,
                ));
            }
        }
        let ejected_ms = stats.usage.totals.ejected_ms;
        if ejected_ms > rules.ejected_ms {
            let out = stats
                .instances
                .iter()
                .filter(|instance| instance.usage.totals.ejected_ms > rules.ejected_ms)
                .map(|instance| format!("{}#{}", instance.agent, instance.instance))
                .collect::<Vec<_>>()
                .join(", ");
            found.push(Condition::worker(
                Rule::Ejected,
                name,
                format!(
                    "worker {name}: instance {out} out of the rotation for failing for {ejected_ms} ms (> {} ms)",
                    rules.ejected_ms
                ),
                ejected_ms as f64,
                rules.ejected_ms as f64,
            ));
        }
        let processed = stats.usage.window.processed;
        if processed > 0 && processed >= rules.min_messages {
            for (rule, count, threshold, what) in [
                (
                    Rule::ErrorRate,
                    stats.usage.window.errors,
                    rules.error_rate,
                    "errors",
                ),
                (
                    Rule::TimeoutRate,
                    stats.usage.window.timeouts,
                    rules.timeout_rate,
                    "timeouts",
                ),
            ] {
                let share = count as f64 / processed as f64;
                if share > threshold {
                    found.push(Condition::worker(
                        rule,
                        name,
                        format!(
                            "worker {name}: {count} {what} in {processed} steps over {} ms \
                             ({share:.3} > {threshold})",
                            rules.window_ms
                        ),
                        share,
                        threshold,
                    ));
                }
            }
            if let Some(p99) = stats.usage.latency_ms.p99.filter(|p99| *p99 > rules.p99_ms) {
                found.push(Condition::worker(
                    Rule::P99Latency,
                    name,
                    format!(
                        "worker {name}: p99 latency {p99} ms over {} ms > {} ms",
                        rules.window_ms, rules.p99_ms
                    ),
                    p99,
                    rules.p99_ms,
                ));
            }
        }
    }
    let silent = millis(settings.agent_silent);
    for (agent, last_seen_ms) in &inputs.agents {
        let quiet = now.saturating_sub(*last_seen_ms);
        if quiet > silent {
            found.push(Condition {
                key: format!("{}:{agent}", Rule::AgentSilent.as_str()),
                rule: Rule::AgentSilent,
                worker: None,
                agent: Some(agent.clone()),
                message: format!("agent {agent} has not been heard from for {quiet} ms"),
                value: Some(quiet as f64),
                threshold: Some(silent as f64),
            });
        }
    }
    found
        .into_iter()
        .map(|condition| (condition.key.clone(), condition))
        .collect()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The task that evaluates the rules and makes the transitions.
#[derive(Debug)]
pub struct Evaluator {
    monitor: Monitor,
    settings: EvaluatorSettings,
    webhook: Option<Webhook>,
    started_ms: i64,
    /// The samples last read, by window, and when.
    samples: Mutex<Option<(Instant, BTreeMap<u64, Samples>)>>,
}

impl Evaluator {
    /// An evaluator reading through `monitor`, posting its transitions to `webhook`.
    pub fn new(monitor: Monitor, settings: EvaluatorSettings, webhook: Option<Webhook>) -> Self {
        Evaluator {
            monitor,
            settings,
            webhook,
            started_ms: now_ms(),
            samples: Mutex::default(),
        }
    }

    /// Evaluates every `every` until dropped; failures are logged and retried next time.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.settings.every.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            ticks.tick().await;
            if let Err(error) = self.evaluate(now_ms()).await {
                tracing::warn!(error = %damrey_service::telemetry::error_chain(&error), "evaluating alarms failed");
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(tokio::time::Instant::now());
                let now = now_ms();
                let oldest = now.saturating_sub(millis(self.settings.retention));
                if let Err(error) = self.monitor.store.prune_samples(oldest).await {
                    tracing::warn!(error = %damrey_service::telemetry::error_chain(&error), "pruning samples failed");
                }
                let oldest = now.saturating_sub(millis(self.settings.history));
                if let Err(error) = self.monitor.store.prune_alarms(oldest).await {
                    tracing::warn!(error = %damrey_service::telemetry::error_chain(&error), "pruning alarms failed");
                }
            }
        }
    }

    /// Reads the inputs at `now_ms`, fires the alarms whose condition holds and that are
    /// not active, resolves the active ones whose condition does not hold, and returns
    /// the transitions this call made (each also sent to the webhook).
    ///
    /// The active alarms are read before the inputs: a condition that another proxy saw
    /// end, and resolved, is then seen ended here too, so it does not fire again.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails; transitions made before stay made.
    pub async fn evaluate(&self, now_ms: i64) -> Result<Vec<Transition>, StoreError> {
        let store = &self.monitor.store;
        let active = store.active_alarms().await?;
        let rules = store.worker_alarm_rules().await?;
        let agents = store.agents_last_seen().await?;
        let live_agents = self.monitor.live_agents(now_ms).await?;
        let configured: BTreeSet<String> = rules.iter().map(|r| r.worker.clone()).collect();
        let windows: BTreeSet<u64> = rules.iter().map(|r| r.rules.window_ms).collect();
        let reports = self
            .samples(now_ms, windows)
            .await?
            .into_iter()
            .map(|(window_ms, samples)| {
                let report =
                    StatsReport::build(now_ms, configured.iter().cloned(), &live_agents, samples);
                (window_ms, report)
            })
            .collect();
        let known_agents: HashSet<String> = agents.iter().map(|(agent, _)| agent.clone()).collect();
        let inputs = Inputs {
            now_ms,
            rules,
            reports,
            agents,
        };
        let holding = conditions(&inputs, &self.settings, self.started_ms);
        let active_keys: HashSet<&str> = active
            .iter()
            .map(|alarm| alarm.condition.key.as_str())
            .collect();
        let mut transitions = Vec::new();
        for (key, condition) in &holding {
            if active_keys.contains(key.as_str()) {
                continue;
            }
            if let Some(alarm) = store.fire_alarm(condition, now_ms).await? {
                tracing::warn!(rule = alarm.condition.rule.as_str(), key = %alarm.condition.key, message = %alarm.condition.message, "alarm fired");
                transitions.push(self.announce(Event::Fire, alarm));
            }
        }
        let resolve_after = millis(self.settings.resolve_after);
        for alarm in &active {
            let key = &alarm.condition.key;
            if holding.contains_key(key) {
                if alarm.clear_since_ms.is_some() {
                    store.alarm_holds_again(key).await?;
                }
                continue;
            }
            // Resolved only once the condition has stayed away for a while: one alarm
            // for a condition that comes and goes, not a storm of them. An alarm about a
            // worker deleted or an agent forgotten resolves at once.
            let gone = alarm
                .condition
                .worker
                .as_ref()
                .is_some_and(|w| !configured.contains(w))
                || alarm
                    .condition
                    .agent
                    .as_ref()
                    .is_some_and(|a| !known_agents.contains(a));
            if !gone {
                let clear_since = match alarm.clear_since_ms {
                    Some(since) => since,
                    None => store.alarm_clear_since(key, now_ms).await?,
                };
                if now_ms.saturating_sub(clear_since) < resolve_after {
                    continue;
                }
            }
            if let Some(alarm) = store.resolve_alarm(key, now_ms).await? {
                tracing::info!(rule = alarm.condition.rule.as_str(), key = %alarm.condition.key, "alarm resolved");
                transitions.push(self.announce(Event::Resolve, alarm));
            }
        }
        Ok(transitions)
    }

    /// The samples of each of `windows` at `now_ms`: those read within
    /// [`EvaluatorSettings::samples_for`] when they cover the same windows, else read now.
    async fn samples(
        &self,
        now_ms: i64,
        windows: BTreeSet<u64>,
    ) -> Result<BTreeMap<u64, Samples>, StoreError> {
        if let Some((read_at, held)) = &*self.samples.lock().unwrap_or_else(|p| p.into_inner())
            && read_at.elapsed() < self.settings.samples_for
            && held.keys().eq(windows.iter())
        {
            return Ok(held.clone());
        }
        let read_at = Instant::now();
        let mut read = BTreeMap::new();
        for window_ms in windows {
            read.insert(window_ms, self.monitor.samples(now_ms, window_ms).await?);
        }
        *self.samples.lock().unwrap_or_else(|p| p.into_inner()) = Some((read_at, read.clone()));
        Ok(read)
    }

    /// Queues the transition for the webhook, if any, and returns it.
    fn announce(&self, event: Event, alarm: Alarm) -> Transition {
        let transition = Transition { event, alarm };
        if let Some(webhook) = &self.webhook {
            webhook.send(transition.clone());
        }
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_wire::spec::AlarmRules;

    fn settings() -> EvaluatorSettings {
        EvaluatorSettings {
            every: Duration::from_millis(500),
            no_instance_grace: Duration::from_secs(3),
            agent_silent: Duration::from_secs(5),
            resolve_after: Duration::from_secs(5),
            retention: Duration::from_secs(600),
            history: Duration::from_secs(86_400),
            samples_for: Duration::ZERO,
        }
    }

    fn inputs(now_ms: i64, updated_ms: i64, last_seen_ms: Option<i64>) -> Inputs {
        let mut report = StatsReport::build(
            now_ms,
            ["add".to_owned()],
            &[],
            Samples {
                window_ms: 60_000,
                instances: Vec::new(),
                routes: Vec::new(),
            },
        );
        report.workers[0].last_seen_ms = last_seen_ms;
        Inputs {
            now_ms,
            rules: vec![WorkerAlarmRules {
                worker: "add".to_owned(),
                rules: AlarmRules::default(),
                updated_ms,
            }],
            reports: BTreeMap::from([(60_000, report)]),
            agents: vec![
                ("h:1".to_owned(), now_ms - 5_000),
                ("h:2".to_owned(), now_ms - 5_001),
            ],
        }
    }

    #[test]
    fn no_instance_waits_for_the_grace_from_the_latest_sighting_change_or_start() {
        let keys = |inputs: &Inputs, started: i64| -> Vec<String> {
            conditions(inputs, &settings(), started)
                .into_keys()
                .collect()
        };
        let now = 100_000;
        assert_eq!(
            keys(&inputs(now, now - 2_999, None), 0),
            ["agent_silent:h:2"]
        );
        assert_eq!(
            keys(&inputs(now, now - 3_000, None), 0),
            ["agent_silent:h:2", "no_instance:add"]
        );
        assert_eq!(
            keys(&inputs(now, 0, Some(now - 1_000)), 0),
            ["agent_silent:h:2"]
        );
        assert_eq!(keys(&inputs(now, 0, None), now - 10), ["agent_silent:h:2"]);
    }

    #[test]
    fn an_instance_out_of_the_rotation_longer_than_the_threshold_fires_ejected() {
        use crate::store::stats::{Sample, SamplePair};
        use damrey_wire::report::{Counters, Latency};
        let now = 100_000;
        let sample = |ejected_ms| Sample {
            agent: "h:1".to_owned(),
            instance: 2,
            worker: "add".to_owned(),
            at_ms: now - 500,
            counters: Counters {
                ejections: 4,
                ejected_ms,
                ..Counters::default()
            },
            latency: Latency::default(),
        };
        let ejected = |ejected_ms| {
            let mut inputs = inputs(now, 0, Some(now - 500));
            let pair = SamplePair {
                latest: sample(ejected_ms),
                baseline: sample(0),
            };
            let agent = crate::registry::AgentEntry {
                agent: "h:1".to_owned(),
                last_seen_ms: now - 500,
                instances: vec![damrey_wire::report::InstanceCount {
                    worker: "add".to_owned(),
                    count: 1,
                }],
                first_seen_ms: 0,
                age_ms: 500,
            };
            let report = StatsReport::build(
                now,
                ["add".to_owned()],
                &[agent],
                Samples {
                    window_ms: 60_000,
                    instances: vec![pair],
                    routes: Vec::new(),
                },
            );
            inputs.reports = BTreeMap::from([(60_000, report)]);
            conditions(&inputs, &settings(), 0).remove("ejected:add")
        };

        assert_eq!(ejected(30_000), None, "not longer than the 30 s default");
        let fired = ejected(30_001).expect("fires");
        assert_eq!(
            fired.message,
            "worker add: instance h:1#2 out of the rotation for failing for 30001 ms (> 30000 ms)"
        );
        assert_eq!(
            (fired.value, fired.threshold),
            (Some(30_001.0), Some(30_000.0))
        );
    }
}
