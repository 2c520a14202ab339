//! Starts a Damrey mesh in containers for integration tests: Postgres, a proxy on it and
//! one or more agents, each its own container on a private network, from the project's
//! image (`damrey:local` unless `DAMREY_IMAGE` or [`MeshBuilder::image`] says otherwise).
//! A test registers its worker configs with the same call, attaches its own worker to an
//! agent — in-process with `Worker::agent(mesh.agent(0))`, or as a spawned binary — and
//! calls its lines:
//!
//! ```no_run
//! use std::time::Duration;
//! use damrey_actors::prelude::*;
//! use damrey_testcontainers::Mesh;
//!
//! struct Square;
//! impl Actor for Square { type Context = Context<Self>; }
//! impl Handler<Message> for Square {
//!     type Result = Message;
//!     fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
//!         let n: i64 = msg.args[0].parse().unwrap();
//!         Message::response(msg.kind, [(n * n).to_string()])
//!     }
//! }
//!
//! # actix::System::new().block_on(async {
//! let mesh = Mesh::builder()
//!     .config(WorkerSpec::new("square").command("sq", ""))
//!     .start()
//!     .await
//!     .unwrap();
//! let square = Worker::new(Config::named("square"))
//!     .agent(mesh.agent(0))
//!     .start(|| Square)
//!     .await
//!     .unwrap();
//! let reply = mesh.call(0, "square", Message::request("sq", ["7"]), Duration::from_secs(5)).await;
//! assert_eq!(reply.unwrap(), Message::response("sq", ["49"]));
//! square.stop().await;
//! # });
//! ```
//!
//! Containers run through the docker command line (the `testcontainers` crate's CLI
//! client), so any Docker Engine from API 1.41 on works. Everything a mesh starts is
//! removed when it is dropped, and also when the test process ends without dropping it
//! (a panic that aborts, Ctrl-C, a static): a small reaper process per network or
//! container waits for the test process to go.

mod docker;
mod error;
mod mesh;
mod postgres;

pub use docker::{
    DAMREY_IMAGE_VAR, POSTGRES_IMAGE_VAR, REQUIRE_DOCKER_VAR, docker_available, docker_or_skip,
};
pub use error::Error;
pub use mesh::{AGENT_PORT, Mesh, MeshBuilder, PROXY_PORT};
pub use postgres::Postgres;
