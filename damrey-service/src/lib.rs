//! What every Damrey process shares below its own logic, and nothing of the message
//! mesh: layered settings ([`settings`]), logs and request ids ([`telemetry`]), the
//! bearer-token check ([`credential`]), the services' route tables ([`api_route`]) and,
//! behind the `openapi` feature, what their OpenAPI documents share (`openapi`), TLS
//! from PEM files ([`tls`]), how a service takes connections ([`connections`]), the one
//! backoff of every retry loop ([`backoff`]) and the signals that stop a process
//! ([`signal`]).
//!
//! The proxy, the agent, the CLI and worker binaries depend on it; it depends on none of
//! them, and on no Damrey crate.

pub mod api_route;
pub mod backoff;
pub mod connections;
pub mod credential;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod settings;
pub mod signal;
pub mod telemetry;
pub mod tls;
