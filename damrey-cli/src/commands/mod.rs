//! One module per command; [`run`] picks it.

mod call;
pub mod certs;
mod monitor;
mod watch;
mod worker;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use damrey_service::tls::client_config;

use crate::cli::{Cli, Command};
use crate::client::{Api, base_url};

/// How long a request to the proxy may take (calls wait for their own timeout instead).
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// The exit code of a command that did what was asked.
pub const SUCCESS: u8 = 0;
/// The exit code when the command could not be done (no answer, refused, bad input).
pub const FAILURE: u8 = 1;

/// Runs the command line's command; its exit code.
///
/// # Errors
/// The command could not be done: what went wrong, in words.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Before the CA of --tls-ca is read: making certificates needs no mesh.
    let command = match cli.command {
        Command::Certs(args) => return certs::run(&args),
        command => command,
    };
    let proxy = base_url(&cli.proxy);
    let tls = match &cli.tls_ca {
        Some(ca) => Some(Arc::new(client_config(ca, None).with_context(|| {
            format!("the CA certificate {} cannot be used", ca.display())
        })?)),
        None => None,
    };
    let api = Api::new(cli.token.clone(), PROXY_TIMEOUT, tls.as_ref());
    match command {
        Command::Worker(command) => worker::run(&api, &proxy, command, cli.json).await,
        Command::Call(args) => {
            call::run(
                cli.token,
                tls.as_ref(),
                &base_url(&cli.agent),
                args,
                cli.json,
            )
            .await
        }
        Command::Stats(args) => monitor::stats(&api, &proxy, &args, cli.json).await,
        Command::Alarms(args) => monitor::alarms(&api, &proxy, &args, cli.json).await,
        Command::Agents => monitor::agents(&api, &proxy, cli.json).await,
        Command::Watch(args) => watch::watch(&api, &proxy, &args, cli.json).await,
        Command::Certs(args) => certs::run(&args),
    }
}

/// Prints a JSON value as the service answered it, indented.
fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}
