//! Damrey's actor library: the message model, the worker runtime, the routing core that
//! every agent uses, and a test kit for user workers.
//!
//! A worker is an actix actor that implements `Handler<Message>`; see [`Worker`].

pub mod error;
pub mod message;
pub mod spec;

pub use error::{MessageError, SpecError, WorkerError};
pub use message::{Message, Tag};
pub use spec::{CommandSpec, Mpu, WorkerSpec};
