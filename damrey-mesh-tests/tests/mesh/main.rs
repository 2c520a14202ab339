//! Mesh tests with real processes on 127.0.0.1: a proxy, agents and worker processes,
//! on ports the OS hands out (read back from each process; a TLS agent's is handed out
//! just before it starts, since its certificate names it: `tls_agent`), killed (and
//! frozen) to test faults. Every child is killed when its handle drops, even when a test fails.
//!
//! The binaries are built from this tree by the support before the first one starts
//! (`damrey_mesh_tests::binaries`), so no test here runs a stale build.

mod faults;
mod lines;
mod monitoring;
mod outbox;
mod outliers;
mod placement;
mod proxy_binary;
mod readiness;
mod security;
mod shutdown;
mod stats;
mod tls;

/// The shared support under the one name the test modules use.
mod support {
    pub use damrey_mesh_tests::binaries::binary;
    pub use damrey_mesh_tests::mesh::*;
    pub use damrey_mesh_tests::process::*;
    pub use damrey_mesh_tests::raw_http;
    pub use damrey_mesh_tests::wait::*;
}
