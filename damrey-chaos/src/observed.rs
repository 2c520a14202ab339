//! What a run saw: every call's outcome, every step the workers recorded, the outbox
//! sends, process events, config versions and the spans when something was wrong on
//! purpose. [`crate::run`] fills it in; [`crate::check`] judges it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::Message;

use crate::mesh::CallResult;
use crate::model::Configs;
use crate::plan::{Signal, Target};

/// Milliseconds since the run's load started (negative before).
pub type Ms = i64;

/// A span of time when something was wrong on purpose.
#[derive(Debug, Clone)]
pub struct Span {
    /// The fault's index in the plan (`None` for the mesh's start).
    pub fault: Option<usize>,
    /// What it was.
    pub label: String,
    /// From.
    pub from: Ms,
    /// To (until recovery: restarted and attached again, changed back and propagated).
    pub to: Ms,
    /// The process it hit, if any; for an isolated host, its agent.
    pub target: Option<Target>,
    /// How; an isolated host's agent counts as frozen (`Stop`): out of the checker's
    /// reach.
    pub signal: Option<Signal>,
    /// An outage that should cost requests nothing but time (DESIGN §5.8): an agent
    /// killed or stopped and restarted, a link cut and healed, a host isolated and put
    /// back.
    pub outage: bool,
}

/// One config version and when it was in force.
#[derive(Debug, Clone)]
pub struct Version {
    /// When the change that made it was sent.
    pub sent: Ms,
    /// When the proxy acknowledged it.
    pub acked: Ms,
    /// The configs.
    pub configs: Arc<Configs>,
}

/// A request the checker put to an agent, and what came of it.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The request id.
    pub request_id: String,
    /// The planned load item (`None` for the final batch).
    pub load: Option<usize>,
    /// The agent it was put to.
    pub entry: usize,
    /// The worker it was put to.
    pub worker: String,
    /// The message.
    pub message: Message,
    /// The deadline given.
    pub deadline: Duration,
    /// When it was sent and when the answer was complete.
    pub start: Ms,
    /// See `start`.
    pub end: Ms,
    /// The answer.
    pub result: CallResult,
}

/// A step a worker recorded.
#[derive(Debug, Clone)]
pub struct StepSeen {
    /// Request id.
    pub request_id: String,
    /// Hop.
    pub hop: u64,
    /// Worker name.
    pub worker: String,
    /// When.
    pub at: Ms,
    /// Which process: worker index, instance, incarnation.
    pub process: (usize, usize, usize),
}

/// A sub-request's reply a worker recorded.
#[derive(Debug, Clone)]
pub struct OutboxSeen {
    /// The sub-request id.
    pub sub_id: String,
    /// The line.
    pub line: usize,
    /// The value.
    pub value: u64,
    /// The deadline.
    pub deadline: Duration,
    /// When it was sent.
    pub start: Ms,
    /// How long the reply took (the worker's clock).
    pub elapsed: Duration,
    /// The reply.
    pub reply: Message,
    /// Which process.
    pub process: (usize, usize, usize),
}

/// A SIGKILL or freeze of one worker incarnation.
#[derive(Debug, Clone)]
pub struct ProcessEvent {
    /// Worker index, instance, incarnation.
    pub process: (usize, usize, usize),
    /// How.
    pub signal: Signal,
    /// From.
    pub from: Ms,
    /// To (for a freeze, the SIGCONT; else equal to `from`).
    pub to: Ms,
}

/// Everything a run observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Fault spans.
    pub spans: Vec<Span>,
    /// Config versions in order.
    pub versions: Vec<Version>,
    /// Calls.
    pub calls: Vec<CallOutcome>,
    /// Recorded steps.
    pub steps: Vec<StepSeen>,
    /// Recorded outbox replies.
    pub outbox: Vec<OutboxSeen>,
    /// Kills and freezes of worker processes.
    pub events: Vec<ProcessEvent>,
    /// When the checker itself was not scheduled (from, to).
    pub stalls: Vec<(Ms, Ms)>,
    /// Notes that are not violations.
    pub notes: Vec<String>,
    /// Planned requests not sent because too many were still in flight at the load's end.
    pub skipped: usize,
    /// Lines that never answered `RESPONSE` in the warm-up (before any fault).
    pub broken_lines: BTreeSet<usize>,
    /// Each (line, agent) that never answered `RESPONSE` in the warm-up, described.
    pub warm_up_failures: Vec<String>,
    /// Agent counters around the final batch, per worker: (received, responses, others).
    pub counted: Option<BTreeMap<String, (u64, u64, u64)>>,
}
