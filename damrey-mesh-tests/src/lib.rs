//! Damrey's process-level tests: a real proxy, agents and worker processes on
//! 127.0.0.1, started, killed, frozen and restarted by the tests in `tests/` (`mesh`: the
//! agent's and proxy's behaviour across processes; `example`: the example's workers and
//! its `run`/`stop` scripts as a user runs them; `seeds`: the seeded fault checker's CI
//! seeds) and the benches in `benches/`. This library is their shared support.
//!
//! Why a crate of its own: a test can only trust a binary built from the source it is
//! checking. `CARGO_BIN_EXE_*` gives that only for the test's own package, and the mesh
//! needs binaries of four (`damrey-proxy`, `damrey-agent`, the example's workers,
//! `chaos-worker`); a path next to one of them may hold a stale build, and dev-depending
//! on the packages to get them built made a dev-dependency cycle (agent → example →
//! agent). So [`binaries`] runs `cargo build --bins` for those packages, with the
//! running test's cargo, profile and target directory, once per test binary, before the
//! first process starts: `cargo test -p damrey-mesh-tests` can never run a binary older
//! than the source. (A nested `cargo build` does not wait for the outer `cargo test`:
//! cargo holds the build directory's lock only while it builds, not while tests run.)
//! Artifact dependencies would say the same in `Cargo.toml`, but they are unstable.
//!
//! The rules the support keeps: every process is started on port 0 and the test reads
//! the bound port back from the process ([`process`]), never a port picked first and
//! bound later; a test waits for a state with [`wait::eventually`], never for a fixed
//! time, and asserts no upper bound on wall-clock time; every child is killed when its
//! handle drops, even when a test fails.

pub mod binaries;
pub mod example;
pub mod load;
pub mod mesh;
pub mod process;
pub mod raw_http;
pub mod wait;
