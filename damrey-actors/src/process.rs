//! A worker process in one call: [`run`] reads the flags (or their `DAMREY_*`
//! environment variables), sets up logging, attaches the worker to its local agent,
//! serves until SIGINT or SIGTERM, then leaves the agent, drains and exits; its exit code
//! says how it ended.
//!
//! ```no_run
//! use damrey_actors::prelude::*;
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
//! fn main() -> std::process::ExitCode {
//!     damrey_actors::process::run("add", || Add)
//! }
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::MessageResponse;
use actix::{Actor, Context, Handler};
use clap::Parser;
use damrey_service::credential::Secret;

use crate::error::WorkerError;
use crate::message::Message;
use crate::signal::shutdown_signal;
use crate::telemetry::{self, LogFormat};
use crate::tls::client_config;
use crate::worker::{Config, Worker, WorkerHandle};

/// The flags of a worker process; each can also come from its environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "A Damrey worker process, attached to its local agent; SIGINT or SIGTERM \
                   make it leave the agent, finish what it is processing, and exit"
)]
pub struct WorkerArgs {
    /// The local agent's `host:port`.
    #[arg(long, env = "DAMREY_AGENT", default_value = "127.0.0.1:7701")]
    pub agent: String,
    /// The worker name to attach as; it must be configured in the proxy (default: the
    /// program's own worker name).
    #[arg(long, env = "DAMREY_WORKER_NAME")]
    pub name: Option<String>,
    /// The worker credential the agent wants, if it wants one (else `DAMREY_TOKEN`, the
    /// one-token development shortcut).
    #[arg(long, env = "DAMREY_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// The mesh's CA certificate (PEM): attach over TLS (WSS), trusting the agents it signed.
    #[arg(long, env = "DAMREY_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// How many times the worker's own requests and pushes are resent over a reconnect.
    #[arg(long, env = "DAMREY_RETRIES", default_value_t = 3)]
    pub retries: u32,
    /// The longest one message may be processed, in milliseconds.
    #[arg(long, env = "DAMREY_TIMEOUT_MS", default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// How log lines are written (the filter comes from `RUST_LOG`; default `info`).
    #[arg(long, env = "DAMREY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How a worker process ended, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Stopped by SIGINT or SIGTERM, after draining: 0.
    Stopped = 0,
    /// Anything else went wrong: 1.
    Failed = 1,
    /// The agent refused the worker (no config for its name, a wrong token): 3.
    Refused = 3,
    /// Nothing answered at the agent's address: 4.
    Unreachable = 4,
    /// The agent had no configs for as long as a starting worker waits (its proxy is
    /// unreachable): 5.
    NotReady = 5,
}

impl From<&WorkerError> for Exit {
    fn from(error: &WorkerError) -> Exit {
        match error {
            WorkerError::Refused { .. } | WorkerError::UnknownWorker(_) => Exit::Refused,
            WorkerError::Unreachable { .. } => Exit::Unreachable,
            WorkerError::NotReady { .. } => Exit::NotReady,
            _ => Exit::Failed,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// Runs the worker made by `factory` as this process: parses the flags (`--help` lists
/// them; clap exits with 2 on bad ones), logs to stderr, attaches as `name` (or `--name`),
/// and serves until SIGINT or SIGTERM; then it leaves the agent, lets what it is
/// processing finish, and returns [`Exit::Stopped`]. When it cannot attach it logs why
/// and returns the matching [`Exit`].
pub fn run<A, F>(name: &str, factory: F) -> ExitCode
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let args = WorkerArgs::parse();
    init_logging(args.log_format);
    let served = actix_rt::System::new().block_on(async {
        let worker = attach(&args, name, factory).await?;
        shutdown_signal().await;
        tracing::info!(worker = %worker.name(), "stopping: leaving the agent and draining");
        worker.stop().await;
        Ok::<_, WorkerError>(())
    });
    match served {
        Ok(()) => Exit::Stopped.into(),
        Err(error) => {
            tracing::error!(error = %error, "the worker could not attach");
            Exit::from(&error).into()
        }
    }
}

/// Installs the log subscriber for a worker process (a second call changes nothing).
pub fn init_logging(format: LogFormat) {
    // Installed already (a test, or a program that set up its own): keep that one.
    let _ = telemetry::init(format);
}

/// Attaches the worker made by `factory` to the agent `args` name, as `args.name` or
/// `default_name`.
///
/// # Errors
/// The agent refused the worker, did not answer, or had no configs; see
/// [`Worker::start`].
pub async fn attach<A, F>(
    args: &WorkerArgs,
    default_name: &str,
    factory: F,
) -> Result<WorkerHandle, WorkerError>
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let name = args.name.clone().unwrap_or_else(|| default_name.to_owned());
    let config = Config {
        retries: args.retries,
        name: name.clone(),
        timeout: Duration::from_millis(args.timeout_ms),
    };
    let token = args
        .token
        .as_ref()
        .map(|token| token.expose().to_owned())
        .or_else(|| std::env::var("DAMREY_TOKEN").ok());
    let tls = match args
        .tls_ca
        .as_deref()
        .filter(|ca| !ca.as_os_str().is_empty())
    {
        Some(ca) => Some(Arc::new(client_config(ca, None)?)),
        None => None,
    };
    let worker = Worker::new(config)
        .agent(args.agent.clone())
        .token(token)
        .tls(tls)
        .start(factory)
        .await?;
    tracing::info!(worker = %name, agent = %args.agent, "worker attached");
    Ok(worker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        WorkerArgs::command().debug_assert();
    }

    #[test]
    fn the_token_flag_is_read_but_never_shown_in_debug() {
        let args = WorkerArgs::parse_from(["worker", "--token", "tok-worker"]);
        assert_eq!(args.token.as_ref().map(Secret::expose), Some("tok-worker"));
        let debug = format!("{args:?}");
        assert!(!debug.contains("tok-worker"), "{debug}");
    }

    #[test]
    fn each_way_to_fail_has_its_own_exit_code() {
        let agent = || "127.0.0.1:7701".to_owned();
        let codes = [
            Exit::from(&WorkerError::Refused {
                agent: agent(),
                reason: String::new(),
            }),
            Exit::from(&WorkerError::Unreachable {
                agent: agent(),
                reason: String::new(),
            }),
            Exit::from(&WorkerError::NotReady {
                agent: agent(),
                waited: Duration::ZERO,
            }),
            Exit::from(&WorkerError::NoSystem),
        ];
        assert_eq!(
            codes.map(|exit| exit as u8),
            [3, 4, 5, 1],
            "2 is clap's, for bad flags"
        );
    }
}
