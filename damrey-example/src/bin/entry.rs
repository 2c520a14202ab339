//! The `entry` process: the example's HTTP front door on `--http` (default
//! 127.0.0.1:8080) and the `entry` worker attached to the agent on `--agent`.
//! `curl 'localhost:8080/sqsum?a=3&b=4'` answers `49`.

use anyhow::Context as _;
use clap::Parser;
use damrey_example::process::{self, EntryArgs};
use damrey_example::{Entry, front};

fn main() -> anyhow::Result<()> {
    let args = EntryArgs::parse();
    process::init_logging();
    actix_web::rt::System::new().block_on(async move {
        let worker = process::attach(&args.worker, "entry", || Entry).await?;
        let server = actix_web::HttpServer::new({
            let worker = worker.clone();
            move || actix_web::App::new().configure(front::configure(worker.clone()))
        })
        .workers(1)
        .disable_signals()
        .bind(&args.http)
        .with_context(|| format!("listening on {}", args.http))?
        .run();
        let handle = server.handle();
        tracing::info!(http = %args.http, "front door open");
        tokio::select! {
            served = server => served.context("serving the front door")?,
            () = process::shutdown_signal() => {
                tracing::info!("stopping");
                handle.stop(true).await;
            }
        }
        worker.stop().await;
        Ok(())
    })
}
