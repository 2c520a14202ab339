//! Damrey's proxy: worker configurations in Postgres or embedded SQLite behind the seed's
//! REST API, a change feed agents wait on, the registry of live agents, monitoring of
//! the counters they report, and alarms (stored, listed, posted to a webhook).
//!
//! `main.rs` only parses flags, loads [`config::Settings`], starts `damrey_service::telemetry` and runs
//! [`startup::Application`]; everything else lives here so that tests reach it.

pub mod alarm;
pub mod alarms;
pub mod auth;
pub mod config;
pub mod error;
pub mod feed;
pub mod monitor;
pub mod registry;
pub mod routes;
pub mod startup;
pub mod store;
pub mod webhook;

pub use config::{Cli, Settings};
pub use error::ApiError;
pub use startup::Application;
pub use store::Store;
