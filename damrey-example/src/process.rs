//! The example workers as processes. `add`, `square` and `nap` are each one call of
//! [`damrey_actors::process::run`]; `entry` also serves the HTTP front door, so it takes
//! the same flags plus `--http`.

use clap::Parser;
pub use damrey_actors::process::WorkerArgs;

/// The flags of `entry`: a worker's, plus the HTTP front door's address.
#[derive(Debug, Clone, Parser)]
#[command(about = "The example's front door: HTTP on --http, worker `entry` on the agent")]
pub struct EntryArgs {
    /// The worker's flags.
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Where the HTTP front door listens.
    #[arg(long, env = "DAMREY_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
}
