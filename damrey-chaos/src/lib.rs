//! Damrey's seeded fault checker (DESIGN §5.9): for a seed it builds a random topology
//! of agents on separate hosts (network namespaces, or loopback), workers whose configs
//! make lines that zigzag between agents, drives a known load through them, injects a
//! random schedule of process faults, link cuts and config changes, and checks every
//! reply against the guarantees of DESIGN §5 (see [`check`] for the invariants).
//!
//! Everything a seed decides is drawn up front by [`plan::Plan::new`], so a seed always
//! means the same topology, load and fault schedule; the processes' behaviour is not
//! reproducible bit for bit, so a failing schedule is shrunk by replaying it.
//!
//! The checker runs on one actix thread: shared state is `Rc` and `RefCell`, each
//! request and fault one local task.

pub mod check;
pub mod hosts;
pub mod mesh;
pub mod model;
pub mod observed;
pub mod plan;
pub mod procs;
pub mod record;
pub mod run;
pub mod shrink;
pub mod step;

/// How long faults are injected when no `--duration` is given.
pub const DEFAULT_DURATION: std::time::Duration = std::time::Duration::from_secs(6);
