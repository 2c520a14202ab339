//! What an alarm is: the rules, the condition that fires one, the alarm as stored and
//! listed, and the fire/resolve transitions the webhook posts. The evaluator that makes
//! them is [`crate::alarms`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an alarm watches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A configured worker has no live instance.
    NoInstance,
    /// A worker's share of `ERROR` answers is over its threshold.
    ErrorRate,
    /// A worker's share of timeouts is over its threshold.
    TimeoutRate,
    /// A worker's 99th percentile latency is over its threshold.
    P99Latency,
    /// An agent has not been heard from and did not say it was leaving.
    AgentSilent,
    /// An instance of a worker has been out of its agent's rotation for failing too long.
    Ejected,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 6] = [
        Rule::NoInstance,
        Rule::ErrorRate,
        Rule::TimeoutRate,
        Rule::P99Latency,
        Rule::AgentSilent,
        Rule::Ejected,
    ];

    /// The rule's name in JSON, the store and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::NoInstance => "no_instance",
            Rule::ErrorRate => "error_rate",
            Rule::TimeoutRate => "timeout_rate",
            Rule::P99Latency => "p99_latency",
            Rule::AgentSilent => "agent_silent",
            Rule::Ejected => "ejected",
        }
    }

    /// The rule named `name`.
    pub fn parse(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.as_str() == name)
    }
}

/// An alarm as stored and listed by `GET /alarms`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alarm {
    /// The alarm's id.
    pub id: i64,
    /// The condition that fired it, as it was then (flattened into the JSON object).
    #[serde(flatten)]
    pub condition: Condition,
    /// When it fired (ms since the Unix epoch).
    pub fired_ms: i64,
    /// When it resolved; `null` while active.
    pub resolved_ms: Option<i64>,
    /// Since when an active alarm's condition has stayed away (not in the JSON).
    #[serde(skip)]
    pub clear_since_ms: Option<i64>,
}

/// A condition that holds and should have an active alarm.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Condition {
    /// `rule:worker` or `agent_silent:agent`: at most one active alarm has a key (not in
    /// the JSON).
    #[serde(skip)]
    pub key: String,
    /// The rule.
    pub rule: Rule,
    /// The worker, for worker rules.
    pub worker: Option<String>,
    /// The agent, for `agent_silent`.
    pub agent: Option<String>,
    /// What happened, for people.
    pub message: String,
    /// The measured value.
    pub value: Option<f64>,
    /// The threshold crossed.
    pub threshold: Option<f64>,
}

impl Condition {
    pub(crate) fn worker(
        rule: Rule,
        worker: &str,
        message: String,
        value: f64,
        threshold: f64,
    ) -> Self {
        Condition {
            key: format!("{}:{worker}", rule.as_str()),
            rule,
            worker: Some(worker.to_owned()),
            agent: None,
            message,
            value: Some(value),
            threshold: Some(threshold),
        }
    }
}

/// Fire or resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The alarm fired.
    Fire,
    /// The alarm resolved.
    Resolve,
}

/// A transition this proxy made; the webhook's payload: `{"event":"fire","alarm":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Fire or resolve.
    pub event: Event,
    /// The alarm after the transition.
    pub alarm: Alarm,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_their_names() {
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.as_str()), Some(rule));
            assert_eq!(
                serde_json::to_value(rule).unwrap(),
                serde_json::json!(rule.as_str())
            );
        }
        assert_eq!(Rule::parse("nope"), None);
    }
}
