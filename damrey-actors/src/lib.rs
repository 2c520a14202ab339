//! Damrey's actor library: the message model, the worker runtime, the routing core that
//! every agent uses, and a test kit for user workers.
//!
//! A worker is an actix actor that implements `Handler<Message>`; see [`Worker`]. Workers
//! are chained into collaboration lines by their configs ([`WorkerSpec`]) and a
//! [`Router`] drives each line. `use damrey_actors::prelude::*;` brings what a worker
//! author needs.

// What crosses a process is declared in `damrey-wire`; its modules keep their paths here
// (`damrey_actors::message::Message`, `crate::spec::WorkerSpec`).
pub use damrey_wire::{fault, id, message, report, spec};

pub mod admission;
pub mod deadline;
pub mod error;
pub mod inflight;
pub mod link;
mod outbox;
pub mod outlier;
pub mod process;
pub mod route_counters;
pub mod routing;
pub mod testkit;
pub mod worker;

// The shared plumbing, under the paths this crate's modules use.
use damrey_service::{backoff, signal, telemetry, tls};

use std::future::Future;
use std::pin::Pin;

pub use error::{MessageError, RemoteError, SpecError, WorkerError};
pub use fault::{FAULT_HEADER, Fault, Terminal};
pub use inflight::InFlight;
pub use message::{Message, Tag};
pub use routing::{Envelope, MAX_HOPS, Remote, Router};
pub use spec::{AlarmRules, CommandSpec, Mpu, OutlierRules, WorkerSpec};
pub use worker::{Config, Endpoint, Instance, Lost, Worker, WorkerHandle};

/// A boxed future that can move between threads, as the [`Remote`] trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a worker author needs: our [`Message`] and runtime types, and actix's actor
/// traits (but not the `actix::Message` trait, so nothing clashes).
pub mod prelude {
    pub use crate::message::{Message, Tag};
    pub use crate::routing::Router;
    pub use crate::spec::WorkerSpec;
    pub use crate::testkit::TestMesh;
    pub use crate::worker::{Config, Worker, WorkerHandle};
    pub use actix::{
        Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, ResponseActFuture,
        ResponseFuture, WrapFuture,
    };
}
