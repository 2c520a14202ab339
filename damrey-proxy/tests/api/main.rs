//! The proxy's integration tests: one binary, one `spawn_app()`; Postgres when
//! `DATABASE_URL` names one, else a fresh SQLite file per test.

mod helpers;

mod agents;
mod alarms;
mod auth;
mod consistency;
mod dashboard;
mod feed;
mod health;
mod metrics;
mod openapi;
mod outage;
mod routes;
mod stats;
mod store;
mod validation;
mod workers;
