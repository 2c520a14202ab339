//! The command line: what `damrey --help` shows.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use damrey_service::credential::Secret;

/// Damrey's command line: manage worker configs on the proxy, put requests to workers
/// through an agent, and read the mesh's numbers and alarms.
#[derive(Debug, Parser)]
#[command(name = "damrey", version)]
pub struct Cli {
    /// The proxy: `host:port` or a URL.
    #[arg(
        long,
        global = true,
        env = "DAMREY_PROXY",
        default_value = "127.0.0.1:7700"
    )]
    pub proxy: String,
    /// The agent that `call` goes through: `host:port` or a URL.
    #[arg(
        long,
        global = true,
        env = "DAMREY_AGENT",
        default_value = "127.0.0.1:7701"
    )]
    pub agent: String,
    /// Bearer token, when the proxy and agent want one.
    #[arg(long, global = true, env = "DAMREY_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// The mesh's CA certificate (PEM), for `https://` proxies and agents.
    #[arg(long, global = true, env = "DAMREY_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Print the JSON the service answered instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Worker configs stored by the proxy.
    #[command(subcommand)]
    Worker(WorkerCommand),
    /// Put a request to a worker and print its line's terminal reply. The exit code
    /// tells the reply: 0 RESPONSE, 3 ERROR, 4 TIMEOUT, 5 STOP.
    Call(CallArgs),
    /// Each worker's live instances, rates and latency.
    Stats(StatsArgs),
    /// Active alarms (or all, with --all).
    Alarms(AlarmsArgs),
    /// Agents the proxy heard from recently, and the instances attached to each.
    Agents,
    /// The collaboration lines with live rates, redrawn every interval.
    Watch(WatchArgs),
    /// Make a development CA (once, in DIR; reused by later runs) and a certificate and
    /// key per process, `DIR/NAME.pem` and `DIR/NAME.key`. Give an agent its advertised
    /// `HOST:PORT`: its certificate then names it (`damrey-agent://HOST:PORT`), as peer
    /// links under mutual TLS require.
    Certs(CertsArgs),
}

/// `damrey certs ...`
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The directory of the CA and the certificates (made if missing).
    pub dir: PathBuf,
    /// A process's certificate: NAME=HOST (the proxy, a worker) or NAME=HOST:PORT (an
    /// agent, at its advertised address); HOST is an IP address or a DNS name, an IPv6
    /// address with a port in brackets (`[::1]:7701`).
    #[arg(required = true, value_name = "NAME=HOST[:PORT]", value_parser = crate::holder::parse_holder)]
    pub holders: Vec<crate::holder::Holder>,
}

/// `damrey worker ...`
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Register a new worker config (from a JSON file, or from flags).
    Add(WorkerInput),
    /// Replace a stored worker config (from a JSON file, or from flags).
    Chg(WorkerInput),
    /// Remove a worker config.
    Del {
        /// The worker's name.
        name: String,
    },
    /// Show one worker config.
    Get {
        /// The worker's name.
        name: String,
    },
    /// List every worker config.
    List,
}

/// A worker config, from a file or from flags.
#[derive(Debug, Args)]
pub struct WorkerInput {
    /// A JSON file with one worker config or a list of them (`-` reads stdin).
    #[arg(conflicts_with_all = ["name", "mpu", "pin", "commands"], required_unless_present = "name")]
    pub file: Option<PathBuf>,
    /// The worker's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The most messages one instance processes at once (0: unlimited).
    #[arg(long)]
    pub mpu: Option<u32>,
    /// Pin the worker to the agent at this `host:port`.
    #[arg(long, value_name = "HOST:PORT")]
    pub pin: Option<String>,
    /// A message type the worker accepts and the next worker for it, as `TYPE=NEXT`
    /// (`TYPE=` ends the line there). Repeat for several types.
    #[arg(long = "command", value_name = "TYPE=NEXT")]
    pub commands: Vec<String>,
}

/// `damrey call ...`
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The worker that takes the request first.
    pub worker: String,
    /// The message type.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// The request's arguments.
    pub args: Vec<String>,
    /// How long to wait for the reply, in milliseconds (the agent's default: 5000).
    #[arg(long, value_name = "MS")]
    pub timeout: Option<u64>,
}

/// `damrey stats ...`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this worker.
    #[arg(long)]
    pub worker: Option<String>,
    /// The window the rates and latencies are over, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub window: u64,
}

/// `damrey alarms ...`
#[derive(Debug, Args)]
pub struct AlarmsArgs {
    /// Resolved alarms too, newest first.
    #[arg(long)]
    pub all: bool,
}

/// `damrey watch ...`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// How often to redraw, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    pub interval: u64,
    /// Stop after this many draws (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// The window the rates are over, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub window: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_worker_comes_from_a_file_or_from_flags_not_both() {
        assert!(Cli::try_parse_from(["damrey", "worker", "add", "add.json"]).is_ok());
        assert!(
            Cli::try_parse_from(["damrey", "worker", "add", "--name", "add", "--mpu", "2"]).is_ok()
        );
        assert!(Cli::try_parse_from(["damrey", "worker", "add"]).is_err());
        assert!(
            Cli::try_parse_from(["damrey", "worker", "add", "add.json", "--name", "x"]).is_err()
        );
    }

    #[test]
    fn certs_wants_a_directory_and_at_least_one_holder() {
        assert!(Cli::try_parse_from(["damrey", "certs", "dir", "one=127.0.0.1:7701"]).is_ok());
        assert!(Cli::try_parse_from(["damrey", "certs", "dir"]).is_err());
        assert!(Cli::try_parse_from(["damrey", "certs", "dir", "one"]).is_err());
    }
}
