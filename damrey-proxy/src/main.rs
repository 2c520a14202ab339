//! `damrey-proxy -p 7700`: parse flags, load settings, start logging, raise the open
//! files limit, serve until a signal.

use anyhow::Context;
use clap::Parser;
use damrey_proxy::{Application, Cli, Settings};
use damrey_service::{connections, telemetry};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli).context("loading settings")?;
    telemetry::init(settings.log_format).context("starting telemetry")?;
    connections::raise_open_files_limit();
    let app = Application::build(settings)
        .await
        .context("starting damrey-proxy")?;
    app.run_until_stopped()
        .await
        .context("serving damrey-proxy")?;
    Ok(())
}
