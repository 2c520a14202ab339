//! The configs as the proxy holds them, and what a line may answer under them: the
//! rule of DESIGN §4 applied to the pure worker function of [`crate::step`]. When the
//! configs changed during a request, every hop may have been routed by any config
//! in force then, so the answer is a set.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use damrey_actors::{MAX_HOPS, Message};
use serde_json::{Value, json};

use crate::step;

/// One worker's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The pinned agent's `host:port`, or empty.
    pub agent: String,
    /// The `mpu` (0 is unlimited).
    pub mpu: u32,
    /// Accepted types and where each goes when it leaves the worker ("" ends the line).
    pub commands: BTreeMap<String, String>,
}

impl Spec {
    /// The seed's worker JSON.
    pub fn to_json(&self, name: &str) -> Value {
        let commands: Vec<Value> = self
            .commands
            .iter()
            .map(|(kind, worker)| json!({"name": kind, "worker": worker, "mpu": ""}))
            .collect();
        json!({
            "name": name,
            "agent": self.agent,
            "mpu": if self.mpu == 0 { String::new() } else { self.mpu.to_string() },
            "commands": commands,
        })
    }
}

/// Every worker's config by name.
pub type Configs = BTreeMap<String, Spec>;

/// What a request may be answered with.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// The `RESPONSE`s the line can end with, as JSON.
    pub responses: BTreeSet<String>,
    /// The configuration errors it can meet (reason texts, for reports).
    pub errors: BTreeSet<String>,
}

/// What a request of type `kind` put to `worker` may end with when every hop is routed
/// by one of `versions`.
pub fn outcomes(
    versions: &[Arc<Configs>],
    worker: &str,
    kind: &str,
    request_id: &str,
    value: u64,
) -> Outcomes {
    let mut out = Outcomes::default();
    let mut seen = HashSet::new();
    let mut todo = vec![(worker.to_owned(), kind.to_owned(), 0u32, value)];
    while let Some((worker, kind, hop, value)) = todo.pop() {
        if !seen.insert((worker.clone(), kind.clone(), hop, value)) {
            continue;
        }
        if hop >= MAX_HOPS {
            out.errors.insert("hop limit".to_owned());
            continue;
        }
        let next = step::next_type(&kind).expect("the checker's own types");
        let result = step::transform(&worker, value);
        for version in versions {
            let Some(spec) = version.get(&worker) else {
                out.errors.insert(format!("{worker} not configured"));
                continue;
            };
            if !spec.commands.contains_key(&kind) {
                out.errors
                    .insert(format!("{worker} does not accept {kind}"));
                continue;
            }
            for routing in versions {
                match routing
                    .get(&worker)
                    .and_then(|spec| spec.commands.get(&next))
                {
                    None => {
                        out.errors.insert(format!("{worker} has no command {next}"));
                    }
                    Some(to) if to.is_empty() => {
                        let reply = Message::response(
                            next.clone(),
                            [
                                request_id.to_owned(),
                                (hop + 1).to_string(),
                                result.to_string(),
                            ],
                        );
                        out.responses.insert(reply.to_json());
                    }
                    Some(to) => todo.push((to.clone(), next.clone(), hop + 1, result)),
                }
            }
        }
    }
    out
}

/// A reply that blames the configuration: the worker and what it blames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blame {
    /// `no worker named "W" is configured`.
    NotConfigured(String),
    /// `worker W does not accept type "T"`.
    DoesNotAccept(String, String),
    /// `worker W has no command for type "T"`.
    NoCommand(String, String),
}

impl Blame {
    /// Reads the blame out of an `ERROR`'s reason, if it blames the configuration.
    pub fn of(reply: &Message) -> Option<Blame> {
        let reason = reply.args.join(" ");
        let quoted = |text: &str| -> Option<String> {
            let start = text.find('"')? + 1;
            let end = start + text[start..].find('"')?;
            Some(text[start..end].to_owned())
        };
        if let Some(at) = reason.find("no worker named ") {
            let rest = &reason[at..];
            if rest.contains("is configured") {
                return Some(Blame::NotConfigured(quoted(rest)?));
            }
        }
        for (marker, make) in [
            (
                " does not accept type ",
                Blame::DoesNotAccept as fn(String, String) -> Blame,
            ),
            (" has no command for type ", Blame::NoCommand),
        ] {
            if let Some(at) = reason.find(marker) {
                let worker = reason[..at].rsplit("worker ").next()?.trim().to_owned();
                return Some(make(worker, quoted(&reason[at..])?));
            }
        }
        None
    }

    /// Whether every one of `versions` contradicts the blame.
    pub fn contradicted_by_all(&self, versions: &[Arc<Configs>]) -> bool {
        versions.iter().all(|configs| match self {
            Blame::NotConfigured(worker) => configs.contains_key(worker),
            Blame::DoesNotAccept(worker, kind) | Blame::NoCommand(worker, kind) => configs
                .get(worker)
                .is_some_and(|spec| spec.commands.contains_key(kind)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blames_are_read_from_the_routers_words() {
        let error = |reason: &str| Message::error("l0t1", reason);
        assert_eq!(
            Blame::of(&error("no worker named \"w3\" is configured")),
            Some(Blame::NotConfigured("w3".into()))
        );
        assert_eq!(
            Blame::of(&error("worker w3 does not accept type \"l0t1\"")),
            Some(Blame::DoesNotAccept("w3".into(), "l0t1".into()))
        );
        assert_eq!(
            Blame::of(&error("worker w3 has no command for type \"l0t2\"")),
            Some(Blame::NoCommand("w3".into(), "l0t2".into()))
        );
        assert_eq!(Blame::of(&error("worker w3 has no live instance")), None);
    }

    #[test]
    fn a_change_during_a_request_allows_either_path() {
        let spec = |commands: &[(&str, &str)]| Spec {
            agent: String::new(),
            mpu: 0,
            commands: commands
                .iter()
                .map(|(kind, to)| ((*kind).to_owned(), (*to).to_owned()))
                .collect(),
        };
        let before: Configs = [
            ("a".to_owned(), spec(&[("l0t0", ""), ("l0t1", "b")])),
            ("b".to_owned(), spec(&[("l0t1", ""), ("l0t2", "")])),
            ("c".to_owned(), spec(&[("l0t1", ""), ("l0t2", "")])),
        ]
        .into();
        let mut after = before.clone();
        after
            .get_mut("a")
            .unwrap()
            .commands
            .insert("l0t1".into(), "c".into());
        let one = outcomes(&[Arc::new(before.clone())], "a", "l0t0", "r", 1);
        let both = outcomes(&[Arc::new(before), Arc::new(after)], "a", "l0t0", "r", 1);
        assert_eq!(one.responses.len(), 1);
        assert_eq!(both.responses.len(), 2);
        assert!(both.responses.is_superset(&one.responses));
    }
}
