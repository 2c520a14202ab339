//! The invariants, checked against what a run observed:
//!
//! - I1: every request that wants a reply gets exactly one terminal reply (one body that
//!   is a message, with the status of its tag), within its deadline plus 1 s;
//! - I2: every `RESPONSE` is what the line answers under a config in force during the
//!   request (hop by hop, any of them, when a change happened meanwhile);
//! - I3: no step ran twice for one request id;
//! - I4: with no fault active during the request or in the 2 s before it, the answer is
//!   `RESPONSE`;
//! - I5: no reply blames the configuration for a worker that was configured (to accept
//!   that type, to route it) throughout the request;
//! - I6: around the final, fault-free batch, the agents' counters moved by exactly the
//!   steps the workers recorded;
//! - I7: an outage shorter than a request's deadline (another agent restarting, a link
//!   cut and healed, another host isolated and put back) costs that request nothing but time (DESIGN §5.8): a line call
//!   that started during such an outage, met no other fault, and whose deadline left
//!   time to run the line after recovery answers `RESPONSE`; so does a call in flight
//!   when its entry agent is stopped cleanly, if it fits in the 5 s drain (not checked
//!   on lines that already failed without any fault: I4 reports those).
//!
//! What the checker itself causes is never blamed on the mesh: the entry agent killed
//! or frozen under a call (its connection or its clock is gone), the checker's own
//! thread not scheduled (the reply is late by the checker's delay), a config change
//! that could not reach a frozen or restarting agent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::fault::panicked_worker;
use damrey_actors::{Message, Tag};

use crate::mesh::CallResult;
use crate::model::{self, Blame, Configs};
use crate::observed::{Ms, Observed, Span};
use crate::plan::{Plan, Signal, Target};
use crate::step;

/// The slack past a deadline that a reply may take (DESIGN §5.1 "a small slack").
pub const SLACK: Duration = Duration::from_secs(1);
/// How long after a fault the mesh must be healthy again (I4).
pub const QUIET: Ms = 2_000;
/// How long a config change may take to reach every agent (DESIGN §5.6).
pub const PROPAGATION: Ms = 1_000;

/// One broken invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// `I1` … `I6`.
    pub invariant: &'static str,
    /// What happened, with the request, its reply, timing and the faults active then.
    pub text: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.text)
    }
}

/// The faults whose spans meet `[from, to]`.
fn active(spans: &[Span], from: Ms, to: Ms) -> Vec<&Span> {
    spans
        .iter()
        .filter(|span| span.from <= to && span.to >= from)
        .collect()
}

fn describe(spans: &[&Span]) -> String {
    if spans.is_empty() {
        "none".to_owned()
    } else {
        spans
            .iter()
            .map(|span| format!("[{} ({}..{}ms)]", span.label, span.from, span.to))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The config versions that may have routed a request running `[from, to]`: those in
/// force from a second before it (propagation) to its end, and older ones for as long
/// as an agent or the proxy was down, frozen or restarting when they were replaced
/// (a process that is not running cannot learn a change).
fn versions_during(observed: &Observed, from: Ms, to: Ms) -> Vec<Arc<Configs>> {
    let versions = &observed.versions;
    let mut found = Vec::new();
    for (i, version) in versions.iter().enumerate() {
        let mut until = versions.get(i + 1).map_or(Ms::MAX, |next| next.acked);
        if until != Ms::MAX {
            for span in &observed.spans {
                if matches!(span.target, Some(Target::Agent(_) | Target::Proxy))
                    && span.from <= until + PROPAGATION
                    && span.to >= until
                {
                    until = until.max(span.to + PROPAGATION);
                }
            }
        }
        if version.sent <= to && until.saturating_add(PROPAGATION) >= from {
            found.push(version.configs.clone());
        }
    }
    found
}

/// When the spans are all outages that spare the entry agent and began before the
/// request, the time the last one ended.
fn outage_only(spans: &[&Span], entry: usize, start: Ms) -> Option<Ms> {
    let all = !spans.is_empty()
        && spans.iter().all(|span| {
            span.outage && span.from <= start && span.target != Some(Target::Agent(entry))
        });
    all.then(|| spans.iter().map(|span| span.to).max().unwrap_or(start))
}

/// Stalls of the checker's own thread during `[from, to]`, summed.
fn stalled(observed: &Observed, from: Ms, to: Ms) -> Ms {
    observed
        .stalls
        .iter()
        .filter(|(start, end)| *start <= to && *end >= from)
        .map(|(start, end)| end - start)
        .sum()
}

/// Every violation in what a run observed.
pub fn check(plan: &Plan, observed: &Observed) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut push = |invariant, text| violations.push(Violation { invariant, text });
    // A handler's `ERROR` is 422, the runtime's for a handler's panic 500, one the mesh
    // made 502 or 503 (its fault).
    let status_fits = |reply: &Message, status: u16| match reply.tag {
        Tag::Request | Tag::Response => status == 200,
        Tag::Error if panicked_worker(reply).is_some() => status == 500,
        Tag::Error => matches!(status, 422 | 502 | 503),
        Tag::Stop => status == 503,
        Tag::Timeout => status == 504,
    };

    // Lines that failed a request with no fault around it: broken without any outage.
    let broken_anyway: BTreeSet<usize> = observed
        .calls
        .iter()
        .filter(|call| {
            !matches!(&call.result, CallResult::Reply(200, _))
                && matches!(call.result, CallResult::Reply(..))
                && active(&observed.spans, call.start - QUIET, call.end).is_empty()
        })
        .filter_map(|call| step::parse_line_type(&call.message.kind).map(|(line, _)| line))
        .chain(observed.broken_lines.iter().copied())
        .collect();

    // The warm-up runs before any fault, after every instance attached.
    for failure in &observed.warm_up_failures {
        push("I4", failure.clone());
    }

    for call in &observed.calls {
        let during = active(&observed.spans, call.start - QUIET, call.end);
        let entry_hit: Vec<&Span> = active(&observed.spans, call.start, call.end)
            .into_iter()
            .filter(|span| span.target == Some(Target::Agent(call.entry)))
            .collect();
        let what = format!(
            "request {} (put to {} at a{}: {}, deadline {}ms) sent at {}ms, done after {}ms",
            call.request_id,
            call.worker,
            call.entry,
            call.message.to_json(),
            call.deadline.as_millis(),
            call.start,
            call.end - call.start
        );
        let faults = format!("faults active then: {}", describe(&during));
        let reply = match &call.result {
            CallResult::Reply(status, reply) => {
                if !status_fits(reply, *status) {
                    push(
                        "I1",
                        format!("{what}: status {status} for {}; {faults}", reply.to_json()),
                    );
                }
                reply.clone()
            }
            CallResult::NotAMessage(status, body) => {
                if entry_hit.is_empty() {
                    push(
                        "I1",
                        format!("{what}: answered {status} {body:?}, not a message; {faults}"),
                    );
                }
                continue;
            }
            CallResult::NotDelivered(error) => {
                // Never entered the mesh; only a healthy entry agent must take it.
                if during
                    .iter()
                    .all(|span| span.target != Some(Target::Agent(call.entry)))
                {
                    push(
                        "I1",
                        format!(
                            "{what}: a{} refused the connection ({error}); {faults}",
                            call.entry
                        ),
                    );
                }
                continue;
            }
            CallResult::Lost(error) => {
                // A call dies with a killed entry agent, and one frozen past the
                // client's patience is the checker's doing; a clean stop (SIGTERM)
                // drains calls for 5 s and must answer those that fit in that time.
                let excused = entry_hit.iter().any(|span| match span.signal {
                    Some(Signal::Kill | Signal::Stop) => true,
                    Some(Signal::Term) => {
                        call.start + call.deadline.as_millis() as Ms > span.from + 5_000
                    }
                    None => false,
                });
                if !excused {
                    push("I1", format!("{what}: no reply ({error}); {faults}"));
                }
                continue;
            }
        };
        let late_by = (call.end - call.start) - (call.deadline + SLACK).as_millis() as Ms;
        let frozen_entry = entry_hit.iter().any(|span| span.signal.is_some());
        if late_by > 0 && !frozen_entry && late_by > stalled(observed, call.start, call.end) {
            push(
                "I1",
                format!(
                    "{what}: {} came {late_by}ms past deadline + 1 s; {faults}",
                    reply.to_json()
                ),
            );
        }
        // A clean stop of the entry agent drains: calls in flight that fit in the
        // drain's 5 s finish (docs/agent.md, "Stopping").
        if reply.tag != Tag::Response
            && let Some((line, _)) = step::parse_line_type(&call.message.kind)
            && !broken_anyway.contains(&line)
            && let [span] = during.as_slice()
            && span.target == Some(Target::Agent(call.entry))
            && span.signal == Some(Signal::Term)
            && span.from >= call.start
            && call.start + call.deadline.as_millis() as Ms + 500 <= span.from + 5_000
        {
            push(
                "I7",
                format!(
                    "{what}: {} though it was in flight when its entry agent was stopped cleanly at {}ms and fit in the 5 s drain; {faults}",
                    reply.to_json(),
                    span.from
                ),
            );
        }
        if reply.tag != Tag::Response
            && let Some((line, _)) = step::parse_line_type(&call.message.kind)
            && !broken_anyway.contains(&line)
            && let Some(recovered) = outage_only(&during, call.entry, call.start)
        {
            // Time to run the line after recovery: its steps, a heartbeat for the
            // agents to see the instances again, and a margin.
            let needed = recovered + 1_500 + 400 * plan.lines[line].len() as Ms;
            if call.start + call.deadline.as_millis() as Ms >= needed {
                push(
                    "I7",
                    format!(
                        "{what}: {} though the outage was over at {recovered}ms, with time left to run the line; {faults}",
                        reply.to_json()
                    ),
                );
            }
        }
        check_reply(
            observed,
            &call.request_id,
            &call.worker,
            &call.message,
            &reply,
            call.start,
            call.end,
            &what,
            &faults,
            during.is_empty(),
            &mut push,
        );
    }

    for outbox in &observed.outbox {
        let end = outbox.start + outbox.elapsed.as_millis() as Ms;
        let during = active(&observed.spans, outbox.start - QUIET, end);
        let (worker, instance, _) = outbox.process;
        let what = format!(
            "outbox request {} (w{worker}#{instance} put line {} with value {}, deadline {}ms) sent at {}ms, answered after {}ms",
            outbox.sub_id,
            outbox.line,
            outbox.value,
            outbox.deadline.as_millis(),
            outbox.start,
            outbox.elapsed.as_millis()
        );
        let faults = format!("faults active then: {}", describe(&during));
        let frozen_self = observed.events.iter().any(|event| {
            event.process == outbox.process && event.from <= end && event.to >= outbox.start
        });
        let late_by =
            outbox.elapsed.as_millis() as Ms - (outbox.deadline + SLACK).as_millis() as Ms;
        if late_by > 0 && !frozen_self && late_by > stalled(observed, outbox.start, end) {
            push(
                "I1",
                format!(
                    "{what}: {} came {late_by}ms past deadline + 1 s; {faults}",
                    outbox.reply.to_json()
                ),
            );
        }
        let first = &plan.workers[plan.lines[outbox.line][0]].name;
        let message = Message::request(
            step::line_type(outbox.line, 0),
            [
                outbox.sub_id.clone(),
                "0".to_owned(),
                outbox.value.to_string(),
            ],
        );
        check_reply(
            observed,
            &outbox.sub_id,
            first,
            &message,
            &outbox.reply,
            outbox.start,
            end,
            &what,
            &faults,
            during.is_empty(),
            &mut push,
        );
    }

    // I3: a step recorded twice for one request id and hop, unless the first run's
    // process was killed right after it (its result never left: DESIGN §5.5 retries it).
    let mut runs: BTreeMap<(&str, u64), Vec<&crate::observed::StepSeen>> = BTreeMap::new();
    for step in &observed.steps {
        runs.entry((step.request_id.as_str(), step.hop))
            .or_default()
            .push(step);
    }
    for ((request_id, hop), mut seen) in runs {
        if seen.len() < 2 {
            continue;
        }
        seen.sort_by_key(|step| step.at);
        let first = seen[0];
        let killed_after = observed.events.iter().any(|event| {
            event.process == first.process
                && event.signal == Signal::Kill
                && event.from >= first.at - 50
                && event.from <= first.at + 500
        });
        if killed_after && seen.len() == 2 {
            continue;
        }
        let runs: Vec<String> = seen
            .iter()
            .map(|step| {
                let (worker, instance, incarnation) = step.process;
                format!(
                    "{} (w{worker}#{instance}, start {incarnation}) at {}ms",
                    step.worker, step.at
                )
            })
            .collect();
        let during = active(&observed.spans, first.at - QUIET, seen[seen.len() - 1].at);
        push(
            "I3",
            format!(
                "request {request_id} hop {hop} ran {} times: {}; faults active then: {}",
                seen.len(),
                runs.join(", "),
                describe(&during)
            ),
        );
    }

    // I6.
    if let Some(counted) = &observed.counted {
        let mut recorded: BTreeMap<&str, u64> = BTreeMap::new();
        for step in observed
            .steps
            .iter()
            .filter(|step| step.request_id.starts_with('f'))
        {
            *recorded.entry(step.worker.as_str()).or_default() += 1;
        }
        let names: BTreeSet<&str> = counted
            .keys()
            .map(String::as_str)
            .chain(recorded.keys().copied())
            .collect();
        for name in names {
            let steps = recorded.get(name).copied().unwrap_or(0);
            let (received, responses, others) = counted.get(name).copied().unwrap_or_default();
            if received != steps || responses != steps || others != 0 {
                push(
                    "I6",
                    format!(
                        "final fault-free batch: worker {name} recorded {steps} steps; its agents \
                         counted {received} received, {responses} responses, {others} errors/timeouts/stops"
                    ),
                );
            }
        }
    }
    violations
}

/// I2, I4 and I5 for one reply.
#[allow(clippy::too_many_arguments)]
fn check_reply(
    observed: &Observed,
    request_id: &str,
    worker: &str,
    message: &Message,
    reply: &Message,
    start: Ms,
    end: Ms,
    what: &str,
    faults: &str,
    quiet: bool,
    push: &mut impl FnMut(&'static str, String),
) {
    let versions = versions_during(observed, start, end);
    let value = message
        .args
        .get(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if reply.tag == Tag::Response {
        let outcomes = model::outcomes(&versions, worker, &message.kind, request_id, value);
        if !outcomes.responses.contains(&reply.to_json()) {
            let expected: Vec<&str> = outcomes.responses.iter().map(String::as_str).collect();
            push(
                "I2",
                format!(
                    "{what}: {} is none of the answers of the {} config(s) in force: [{}]; {faults}",
                    reply.to_json(),
                    versions.len(),
                    expected.join(", ")
                ),
            );
        }
    } else if quiet {
        push(
            "I4",
            format!(
                "{what}: {} with no fault in the 2 s before or during it; {faults}",
                reply.to_json()
            ),
        );
    }
    if reply.tag == Tag::Error
        && let Some(blame) = Blame::of(reply)
        && blame.contradicted_by_all(&versions)
    {
        push(
            "I5",
            format!(
                "{what}: {} blames the configuration ({blame:?}) though every config in force said otherwise; {faults}",
                reply.to_json()
            ),
        );
    }
}

/// Counts of what was sent and answered, in one line.
pub fn summary(observed: &Observed) -> String {
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for call in &observed.calls {
        let key = match &call.result {
            CallResult::Reply(_, reply) => reply.tag.as_str().to_owned(),
            CallResult::NotAMessage(..) => "not-a-message".to_owned(),
            CallResult::NotDelivered(_) => "not-delivered".to_owned(),
            CallResult::Lost(_) => "lost".to_owned(),
        };
        *tags.entry(key).or_default() += 1;
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for call in &observed.calls {
        if let CallResult::Reply(_, reply) = &call.result
            && reply.tag == Tag::Error
        {
            *reasons.entry(reply.args.join(" ")).or_default() += 1;
        }
    }
    let mut outbox: BTreeMap<&str, usize> = BTreeMap::new();
    for seen in &observed.outbox {
        *outbox.entry(seen.reply.tag.as_str()).or_default() += 1;
    }
    let i6 = match &observed.counted {
        Some(counted) => format!(
            ", I6 compared over {} final steps",
            counted
                .values()
                .map(|(received, _, _)| received)
                .sum::<u64>()
        ),
        None => ", I6 not compared".to_owned(),
    };
    format!(
        "{} calls {:?} ({} not sent: slots still held at the end), {} outbox replies {:?}, {} steps recorded, {} config versions{i6}",
        observed.calls.len(),
        tags,
        observed.skipped,
        observed.outbox.len(),
        outbox,
        observed.steps.len(),
        observed.versions.len()
    ) + &reasons
        .iter()
        .map(|(reason, count)| format!("\n  error {count}x: {reason}"))
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::observed::{CallOutcome, ProcessEvent, StepSeen, Version};

    /// Seed 5's plan, its base configs, and one call of line 0 at agent 0.
    fn setup() -> (Plan, Observed, CallOutcome) {
        let plan = Plan::new(5, Duration::from_secs(6));
        let configs = plan.base_configs(&|agent| format!("10.0.0.{agent}:7701"));
        let observed = Observed {
            versions: vec![Version {
                sent: Ms::MIN / 2,
                acked: Ms::MIN / 2,
                configs: Arc::new(configs.clone()),
            }],
            ..Observed::default()
        };
        let worker = plan.workers[plan.lines[0][0]].name.clone();
        let message = Message::request(step::line_type(0, 0), ["r1", "0", "7"]);
        let expected = model::outcomes(&[Arc::new(configs)], &worker, &message.kind, "r1", 7);
        let reply = Message::from_json(expected.responses.iter().next().unwrap()).unwrap();
        let call = CallOutcome {
            request_id: "r1".into(),
            load: None,
            entry: 0,
            worker,
            message,
            deadline: Duration::from_millis(2_000),
            start: 10_000,
            end: 10_050,
            result: CallResult::Reply(200, reply),
        };
        (plan, observed, call)
    }

    fn broken(plan: &Plan, observed: &Observed) -> Vec<&'static str> {
        check(plan, observed).iter().map(|v| v.invariant).collect()
    }

    fn span(from: Ms, to: Ms, target: Option<Target>, signal: Option<Signal>) -> Span {
        Span {
            fault: Some(0),
            label: "fault".into(),
            from,
            to,
            target,
            signal,
            outage: false,
        }
    }

    #[test]
    fn the_expected_answer_breaks_nothing() {
        let (plan, mut observed, call) = setup();
        observed.calls.push(call);
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn a_wrong_value_breaks_i2() {
        let (plan, mut observed, mut call) = setup();
        if let CallResult::Reply(_, reply) = &mut call.result {
            reply.args[2] = "1".into();
        }
        observed.calls.push(call);
        assert_eq!(broken(&plan, &observed), ["I2"]);
    }

    #[test]
    fn a_stop_breaks_i4_only_when_no_fault_was_near() {
        let (plan, mut observed, mut call) = setup();
        call.result = CallResult::Reply(503, Message::stop());
        observed.calls.push(call);
        assert_eq!(broken(&plan, &observed), ["I4"]);
        observed.spans.push(span(7_000, 8_500, None, None));
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn a_late_reply_breaks_i1_unless_the_entry_agent_was_frozen_or_the_checker_stalled() {
        let (plan, mut observed, mut call) = setup();
        call.end = call.start + 3_200;
        observed.calls.push(call);
        assert_eq!(broken(&plan, &observed), ["I1"]);
        observed.stalls.push((10_100, 10_400));
        assert!(broken(&plan, &observed).is_empty());
        observed.stalls.clear();
        let frozen = span(10_100, 10_300, Some(Target::Agent(0)), Some(Signal::Stop));
        observed.spans.push(frozen);
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn a_lost_call_is_excused_only_by_its_entry_agent_dying() {
        let (plan, mut observed, mut call) = setup();
        call.result = CallResult::Lost("connection reset".into());
        observed.calls.push(call);
        assert_eq!(broken(&plan, &observed), ["I1"]);
        observed.spans.push(span(
            10_020,
            11_000,
            Some(Target::Agent(0)),
            Some(Signal::Kill),
        ));
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn blaming_the_configuration_of_a_configured_worker_breaks_i5() {
        let (plan, mut observed, mut call) = setup();
        let reason = format!("no worker named {:?} is configured", call.worker);
        call.result = CallResult::Reply(422, Message::error("l0t0", reason));
        observed.calls.push(call);
        observed
            .spans
            .push(span(9_000, 9_500, Some(Target::Proxy), Some(Signal::Kill)));
        assert_eq!(broken(&plan, &observed), ["I5"]);
    }

    #[test]
    fn a_step_run_twice_breaks_i3_unless_its_first_process_was_killed_right_after() {
        let (plan, mut observed, _) = setup();
        let step = |at, instance| StepSeen {
            request_id: "r1".into(),
            hop: 0,
            worker: "w0".into(),
            at,
            process: (0, instance, 0),
        };
        observed.steps = vec![step(100, 0), step(400, 1)];
        assert_eq!(broken(&plan, &observed), ["I3"]);
        observed.events.push(ProcessEvent {
            process: (0, 0, 0),
            signal: Signal::Kill,
            from: 120,
            to: 120,
        });
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn an_outage_over_in_time_must_cost_nothing_but_time() {
        let (plan, mut observed, mut call) = setup();
        call.result = CallResult::Reply(422, Message::error("l0t0", "agent unreachable"));
        call.deadline = Duration::from_millis(8_000);
        observed.calls.push(call);
        let mut outage = span(9_000, 10_500, Some(Target::Agent(1)), Some(Signal::Kill));
        outage.outage = true;
        observed.spans.push(outage);
        assert_eq!(broken(&plan, &observed), ["I7"]);
        // Not when the line is broken anyway, nor when the entry agent itself went down.
        observed.broken_lines.insert(0);
        assert!(broken(&plan, &observed).is_empty());
        observed.broken_lines.clear();
        observed.spans[0].target = Some(Target::Agent(0));
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn an_isolated_host_is_an_outage_to_others_and_out_of_reach_to_the_checker() {
        let (plan, mut observed, mut call) = setup();
        call.result = CallResult::Reply(422, Message::error("l0t0", "agent unreachable"));
        call.deadline = Duration::from_millis(8_000);
        observed.calls.push(call);
        // Host 1 isolated: a call entering host 0 while it was must still answer.
        let mut isolated = span(9_000, 10_500, Some(Target::Agent(1)), Some(Signal::Stop));
        isolated.outage = true;
        observed.spans.push(isolated);
        assert_eq!(broken(&plan, &observed), ["I7"]);
        // Host 0 isolated: the checker could not reach it, so a call put to it may be
        // lost or late.
        observed.spans[0].target = Some(Target::Agent(0));
        observed.calls[0].result = CallResult::Lost("timed out".into());
        observed.calls[0].end = observed.calls[0].start + 12_000;
        assert!(broken(&plan, &observed).is_empty());
    }

    #[test]
    fn a_clean_stop_of_the_entry_agent_drains_the_calls_that_fit() {
        let (plan, mut observed, mut call) = setup();
        call.result = CallResult::Reply(503, Message::stop());
        observed.calls.push(call);
        let term = span(10_020, 16_000, Some(Target::Agent(0)), Some(Signal::Term));
        observed.spans.push(term);
        assert_eq!(broken(&plan, &observed), ["I7"]);
        observed.calls[0].deadline = Duration::from_millis(4_800);
        assert!(broken(&plan, &observed).is_empty());
    }
}
