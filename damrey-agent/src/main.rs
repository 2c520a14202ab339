//! `damrey-agent -p 7701 -a 127.0.0.1:7701 -pr 127.0.0.1:7700 -r 3`: parse flags, load
//! settings, start logging, raise the open files limit, serve until a signal.

use anyhow::Context;
use damrey_agent::{Application, Cli, Settings};
use damrey_service::{connections, telemetry};

/// mimalloc rather than glibc's malloc: the agent allocates and frees a little for every
/// frame and request, all on one thread, and glibc's spent about a tenth of the agent's
/// CPU under load (its fastbin consolidation among it); see docs/agent.md, "Speed".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_seed_args();
    let settings = Settings::load(&cli).context("loading settings")?;
    telemetry::init(settings.log_format).context("starting telemetry")?;
    connections::raise_open_files_limit();
    let app = Application::build(settings).context("starting damrey-agent")?;
    app.run_until_stopped()
        .await
        .context("serving damrey-agent")?;
    Ok(())
}
