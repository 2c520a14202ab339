//! `damrey`: the operator's command line for a Damrey mesh (see the README's "The
//! `damrey` command line").

mod cli;
mod client;
mod commands;
mod holder;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match actix_rt::System::new().block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(commands::FAILURE)
        }
    }
}
