//! Everything that crosses a Damrey process, declared once for both sides: the message
//! and its wire form, worker configs, the runtime's faults, line ids, and the agent's
//! heartbeat.
//!
//! No I/O and no runtime: serde, serde_json, uuid and thiserror only (and actix behind
//! the `actix` feature, for `Message` as an actix message).

pub mod fault;
pub mod id;
pub mod message;
pub mod report;
pub mod spec;

pub use fault::{FAULT_HEADER, Fault, Terminal};
pub use message::{Message, MessageError, Tag};
pub use spec::{SpecError, WorkerSpec};
