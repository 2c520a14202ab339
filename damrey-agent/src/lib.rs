//! Damrey's per-machine agent (DESIGN §7): worker processes attach to it over one
//! WebSocket each ([`attach`]); it routes lines with `damrey_actors::Router`, hands
//! lines to other agents over persistent links ([`peers`]), follows the proxy's
//! configs and where every agent's instances are ([`proxy_client`]), keeps the last
//! configs on disk ([`cache`]), counts every step ([`stats`], served at `/metrics`),
//! and lets curl put requests to any worker (`/call`).

pub mod attach;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod known;
pub mod outbox;
pub mod peers;
pub mod proxy_client;
pub mod routes;
pub mod shutdown;
pub mod socket;
pub mod startup;
pub mod stats;

pub use config::{Cli, Settings};
pub use startup::Application;
