//! Mesh tests with real processes on 127.0.0.1: a proxy, agents and worker processes,
//! on ports the OS hands out, killed (and frozen) to test faults. Every child is
//! killed when its handle drops, even when a test fails.
//!
//! The proxy and worker binaries come from the other workspace packages;
//! `cargo test --workspace` builds them before any test runs.

mod faults;
mod lines;
mod monitoring;
mod outbox;
mod outliers;
mod placement;
mod readiness;
mod security;
mod shutdown;
mod stats;
mod support;
mod tls;
