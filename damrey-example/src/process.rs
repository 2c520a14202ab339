//! Running one worker as its own process attached to an agent: flags, logging, and a
//! clean stop on SIGINT/SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::MessageResponse;
use anyhow::Context as _;
use clap::Parser;
use damrey_actors::prelude::*;
pub use damrey_actors::signal::shutdown_signal;
use tracing_subscriber::EnvFilter;

/// The flags every example worker takes (`add`, `square`, `nap`; `entry` adds `--http`).
#[derive(Debug, Clone, Parser)]
#[command(about = "A Damrey example worker, attached to its local agent")]
pub struct WorkerArgs {
    /// The local agent's `host:port`.
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub agent: String,
    /// The worker name to attach as (must be configured in the proxy).
    #[arg(long)]
    pub name: Option<String>,
    /// The longest one message may be processed, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub timeout_ms: u64,
    /// Attempts to push a message onward.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// The flags of `entry`: a worker's, plus the HTTP front door's address.
#[derive(Debug, Clone, Parser)]
#[command(about = "The example's front door: HTTP on --http, worker `entry` on the agent")]
pub struct EntryArgs {
    /// The worker's flags.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Where the HTTP front door listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
}

/// Parses the flags, attaches the worker made by `factory` to the agent, and serves
/// until SIGINT or SIGTERM; then it leaves the agent, drains and exits.
///
/// # Errors
/// The agent refused the worker or could not be reached.
pub fn run<A, F>(default_name: &str, factory: F) -> anyhow::Result<()>
where
    A: Actor<Context = Context<A>> + Handler<Message>,
    <A as Handler<Message>>::Result: MessageResponse<A, Message>,
    F: Fn() -> A + Send + Sync + 'static,
{
    let args = WorkerArgs::parse();
    init_logging();
    actix_rt::System::new().block_on(async move {
        let worker = attach(&args, default_name, factory).await?;
        shutdown_signal().await;
        tracing::info!(worker = %worker.name(), "stopping");
        worker.stop().await;
        Ok(())
    })
}

/// Logs to stderr, `RUST_LOG` over a default of `info`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// The token a worker presents to its agent: `DAMREY_WORKER_TOKEN` (the worker role's),
/// else `DAMREY_TOKEN` (the development shortcut).
fn worker_token() -> Option<String> {
    ["DAMREY_WORKER_TOKEN", "DAMREY_TOKEN"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|token| !token.is_empty())
}

/// Attaches the worker made by `factory` to the agent named in `args`, with its
/// worker token when set.
///
/// # Errors
/// The agent refused the worker or could not be reached.
pub async fn attach<A, F>(
    args: &WorkerArgs,
    default_name: &str,
    factory: F,
) -> anyhow::Result<WorkerHandle>
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
    // With the mesh's CA in DAMREY_TLS_CA, the worker attaches over WSS.
    let tls = match std::env::var_os("DAMREY_TLS_CA").filter(|ca| !ca.is_empty()) {
        Some(ca) => Some(Arc::new(
            damrey_actors::tls::client_config(Path::new(&ca), None)
                .context("reading the CA of DAMREY_TLS_CA")?,
        )),
        None => None,
    };
    let worker = Worker::new(config)
        .agent(args.agent.clone())
        .token(worker_token())
        .tls(tls)
        .start(factory)
        .await
        .with_context(|| format!("attaching worker {name} to agent {}", args.agent))?;
    tracing::info!(worker = %name, agent = %args.agent, "worker attached");
    Ok(worker)
}
