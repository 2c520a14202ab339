//! Damrey's actor library: the worker runtime, the routing core that every agent uses,
//! and a test kit for user workers, with the message model (declared in `damrey-wire`)
//! re-exported so that a worker needs this crate only.
//!
//! A worker is an actix actor that implements `Handler<Message>`; see [`Worker`]. Workers
//! are chained into collaboration lines by their configs ([`WorkerSpec`]) and a
//! [`Router`] drives each line. `use damrey_actors::prelude::*;` brings what a worker
//! author needs.
//!
//! Inside, the runtime is shared state plus tasks, not actors: in this crate the only
//! actors are the users' workers. A [`Router`], an instance's host and a worker's link
//! to its agent are state behind an `Arc` (locks held briefly, atomics, watch
//! channels), and the work is done by tasks: one drive per line, which owns its message
//! and awaits each step, and one connection task per link. A line is a sequence of
//! awaits bounded by one deadline, which a task expresses directly; as actors, every
//! step would cross mailboxes and need its own timeout and reply plumbing.
//!
//! What crosses a process (the message, configs, faults, the envelope and the frames)
//! is declared in `damrey-wire` and re-exported here under the same module paths
//! ([`message`], [`spec`], [`fault`], [`id`], [`report`], [`envelope`], [`frame`]); the
//! plumbing shared with the services (backoff, TLS, telemetry, signals) comes from
//! `damrey-service`. This crate's own modules form layers, each built only on the
//! layers before it (no module cycle; `scripts/module-cycles` checks it):
//! - leaves: [`deadline`], [`inflight`], [`error`];
//! - the parts of routing: [`admission`] (the mpu cap), [`outlier`] (an instance's
//!   health), [`route_counters`], and [`instance`], the router's view of an instance;
//! - the runtime: [`router`] (the routing core), `host` (the actor host behind an
//!   in-process instance), `outbox` and [`link`] (a worker process's connection to its
//!   agent);
//! - the worker builder and handle, [`worker`], and what is built on it: [`process`] (a
//!   whole worker process) and [`testkit`].

// What crosses a process is declared in `damrey-wire`; its modules keep their paths here
// (`damrey_actors::message::Message`, `crate::spec::WorkerSpec`).
pub use damrey_wire::{envelope, fault, frame, message, report, spec};

/// The hash map of the tables every step touches (waiters, pending replies, routes,
/// suspects, the outbox): foldhash, whose hashing is several times cheaper than std's
/// SipHash, whose resistance to chosen keys these keys do not need (our own numbers
/// and UUIDs; worker names and agent addresses from the configs and the proxy's
/// placement). Tables keyed by what peers choose stay on std's hasher.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub mod admission;
pub mod deadline;
pub mod error;
mod host;
pub mod inflight;
pub mod instance;
pub mod link;
mod outbox;
pub mod outlier;
pub mod process;
pub mod route_counters;
pub mod router;
pub mod testkit;
pub mod worker;

// The shared plumbing, under the paths this crate's modules use.
use damrey_service::{backoff, signal, telemetry, tls};

use std::future::Future;
use std::pin::Pin;

pub use envelope::Envelope;
pub use envelope::MAX_HOPS;
pub use error::{MessageError, RemoteError, SpecError, WorkerError};
pub use fault::{FAULT_HEADER, Fault, Terminal};
pub use inflight::InFlight;
pub use instance::{Endpoint, Instance, Lost};
pub use message::{Message, Tag};
pub use router::{Remote, Router};
pub use spec::{AlarmRules, CommandSpec, Mpu, OutlierRules, WorkerSpec};
pub use worker::{Config, Worker, WorkerHandle};

/// A boxed future that can move between threads, as the [`Remote`] trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a worker author needs: our [`Message`] and runtime types, and actix's actor
/// traits (but not the `actix::Message` trait, so nothing clashes).
pub mod prelude {
    pub use crate::message::{Message, Tag};
    pub use crate::router::Router;
    pub use crate::spec::WorkerSpec;
    pub use crate::testkit::TestMesh;
    pub use crate::worker::{Config, Worker, WorkerHandle};
    pub use actix::{
        Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, ResponseActFuture,
        ResponseFuture, WrapFuture,
    };
}
