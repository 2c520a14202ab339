//! The test kit: test one worker, or a whole line of workers with their configs,
//! in-process under `#[actix::test]`, in a few lines.
//!
//! ```
//! use damrey_actors::prelude::*;
//! use damrey_actors::testkit;
//!
//! struct Add;
//! impl Actor for Add { type Context = Context<Self>; }
//! impl Handler<Message> for Add {
//!     type Result = Message;
//!     fn handle(&mut self, msg: Message, _: &mut Context<Self>) -> Message {
//!         let sum: i64 = msg.args.iter().filter_map(|a| a.parse::<i64>().ok()).sum();
//!         Message::response(msg.kind, [sum.to_string()])
//!     }
//! }
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
//! // One worker:
//! let reply = testkit::call(|| Add, Message::request("sqsum", ["3", "4"])).await;
//! assert_eq!(reply, Message::response("sqsum", ["7"]));
//!
//! // A line of workers with their configs:
//! let mesh = TestMesh::new([
//!     WorkerSpec::new("add").command("sqsum", "square"),
//!     WorkerSpec::new("square").command("sqsum", ""),
//! ]).unwrap();
//! mesh.start("add", || Add).await.unwrap();
//! mesh.start("square", || Square).await.unwrap();
//! let reply = mesh.request("add", Message::request("sqsum", ["3", "4"])).await;
//! assert_eq!(reply, Message::response("sqsum", ["49"]));
//! # });
//! ```

use std::sync::Mutex;
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::{Actor, Context, Handler};

use crate::error::{SpecError, WorkerError};
use crate::message::Message;
use crate::router::Router;
use crate::spec::WorkerSpec;
use crate::worker::{Config, Worker, WorkerHandle};

/// How long a test request waits by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the actor made by `factory` as a standalone worker, puts `message` to it, and
/// returns its reply (within [`DEFAULT_TIMEOUT`]); the worker is stopped afterwards.
///
/// # Panics
/// Outside an actix system (use `#[actix::test]`).
pub async fn call<A, F>(factory: F, message: Message) -> Message
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let worker = Worker::new(Config::named("test"))
        .detached()
        .start(factory)
        .await
        .expect("testkit::call runs inside an actix system, e.g. under #[actix::test]");
    let reply = worker.call(message, DEFAULT_TIMEOUT).await;
    worker.stop().await;
    reply
}

/// A mesh in one process for tests: worker configs, the workers started on it, and
/// requests put to any of them.
pub struct TestMesh {
    router: Router,
    workers: Mutex<Vec<WorkerHandle>>,
}

impl TestMesh {
    /// A mesh with these worker configs and no workers started yet.
    ///
    /// # Errors
    /// The first invalid config.
    pub fn new(specs: impl IntoIterator<Item = WorkerSpec>) -> Result<Self, SpecError> {
        Ok(TestMesh {
            router: Router::new(specs)?,
            workers: Mutex::default(),
        })
    }

    /// Starts an instance of the configured worker `name` with the default [`Config`].
    ///
    /// # Errors
    /// As [`Worker::start`].
    pub async fn start<A, F>(&self, name: &str, factory: F) -> Result<WorkerHandle, WorkerError>
    where
        A: Actor<Context = Context<A>> + Handler<Message>,
        <A as Handler<Message>>::Result: MessageResponse<A, Message>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        self.start_with(Config::named(name), factory).await
    }

    /// Starts an instance with a given [`Config`] (its name picks the worker config).
    ///
    /// # Errors
    /// As [`Worker::start`].
    pub async fn start_with<A, F>(
        &self,
        config: Config,
        factory: F,
    ) -> Result<WorkerHandle, WorkerError>
    where
        A: Actor<Context = Context<A>> + Handler<Message>,
        <A as Handler<Message>>::Result: MessageResponse<A, Message>,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let worker = Worker::new(config)
            .attach(&self.router)
            .start(factory)
            .await?;
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(worker.clone());
        Ok(worker)
    }

    /// Puts a request to worker `to` and returns the line's terminal reply, waiting at
    /// most [`DEFAULT_TIMEOUT`].
    pub async fn request(&self, to: &str, message: Message) -> Message {
        self.router.request(to, message, DEFAULT_TIMEOUT).await
    }

    /// Puts a request to worker `to` with a deadline of `timeout`.
    pub async fn request_within(&self, to: &str, message: Message, timeout: Duration) -> Message {
        self.router.request(to, message, timeout).await
    }

    /// The router behind the mesh, to change configs while testing.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Stops every worker started here.
    pub async fn stop(&self) {
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in workers {
            worker.stop().await;
        }
    }
}
