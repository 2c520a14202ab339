//! Damrey's actor library: the message model, the worker runtime, the routing core that
//! every agent uses, and a test kit for user workers.
//!
//! A worker is an actix actor that implements `Handler<Message>`; see [`Worker`]. Workers
//! are chained into collaboration lines by their configs ([`WorkerSpec`]) and a
//! [`Router`] drives each line. `use damrey_actors::prelude::*;` brings what a worker
//! author needs.

pub mod admission;
pub mod backoff;
pub mod credential;
pub mod deadline;
pub mod envelope;
pub mod error;
pub mod fault;
pub mod frame;
mod host;
pub mod id;
pub mod inflight;
pub mod instance;
pub mod limits;
pub mod link;
pub mod message;
mod outbox;
pub mod outlier;
pub mod process;
pub mod report;
pub mod route_counters;
pub mod router;
pub mod settings;
pub mod signal;
pub mod spec;
pub mod telemetry;
pub mod testkit;
pub mod tls;
pub mod worker;

use std::future::Future;
use std::pin::Pin;

pub use envelope::Envelope;
pub use error::{MessageError, RemoteError, SpecError, WorkerError};
pub use fault::{FAULT_HEADER, Fault, Terminal};
pub use inflight::InFlight;
pub use instance::{Endpoint, Instance, Lost};
pub use message::{Message, Tag};
pub use router::{MAX_HOPS, Remote, Router};
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
