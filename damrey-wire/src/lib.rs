//! Everything that crosses a Damrey process, declared once for both sides: the message
//! and its wire form, worker configs, the runtime's faults, the agent's
//! heartbeat with its step counters and latency histogram, the Prometheus text of those
//! counters, and the REST bodies agent and proxy both read or write.
//!
//! No I/O and no runtime: serde, serde_json, uuid and thiserror only (and actix behind
//! the `actix` feature, for `Message` as an actix message). Layers, bottom up: `message`,
//! `spec`, `latency`; `fault` and `envelope` (on `message`); `binary` (the links'
//! two forms, on `message`, `fault`); `frame` (worker ⇄ agent, on `binary`) and `peer`
//! (agent ⇄ agent, on `binary`, `envelope`);
//! `steps` (on `latency`); `report` (on `spec`, `steps`, `latency`); `prometheus` (on
//! `steps`, `latency`); `rest` (on `spec`, `report`).

pub mod binary;
pub mod envelope;
pub mod fault;
pub mod frame;
pub mod latency;
pub mod message;
pub mod peer;
pub mod prometheus;
pub mod report;
pub mod rest;
pub mod spec;
pub mod steps;

pub use fault::{FAULT_HEADER, Fault, Terminal};
pub use message::{Message, MessageError, Tag};
pub use spec::{SpecError, WorkerSpec};
