//! The `entry` process: the example's HTTP front door on `--http` (default
//! 127.0.0.1:8080) and the `entry` worker attached to the agent on `--agent`.
//! `curl 'localhost:8080/sqsum?a=3&b=4'` answers `49`. Exit codes as every worker
//! process's ([`damrey_actors::process::Exit`]).

use std::process::ExitCode;

use clap::Parser;
use damrey_actors::process::{self, Exit};
use damrey_example::process::EntryArgs;
use damrey_example::{Entry, front};
use damrey_service::signal::shutdown_signal;
use damrey_service::{connections, telemetry};

fn main() -> ExitCode {
    let args = EntryArgs::parse();
    process::init_logging(args.worker.log_format);
    connections::raise_open_files_limit();
    actix_web::rt::System::new().block_on(serve(args)).into()
}

async fn serve(args: EntryArgs) -> Exit {
    let worker = match process::attach(&args.worker, "entry", || Entry).await {
        Ok(worker) => worker,
        Err(error) => {
            tracing::error!(error = %error, "the worker could not attach");
            return Exit::from(&error);
        }
    };
    let server = actix_web::HttpServer::new({
        let worker = worker.clone();
        move || {
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(telemetry::log_requests))
                .configure(front::configure(worker.clone()))
        }
    })
    .workers(1)
    .disable_signals()
    .backlog(u32::from(connections::BACKLOG))
    .keep_alive(connections::KEEP_ALIVE)
    .bind(&args.http);
    // The address bound, not the one asked for: with port 0 the OS chose the port, and
    // the "front door open" line is how a script or a test learns it.
    let mut http = args.http.clone();
    let server = match server {
        Ok(server) => {
            if let Some(bound) = server.addrs().first() {
                http = bound.to_string();
            }
            server.run()
        }
        Err(error) => {
            tracing::error!(error = %error, http = %args.http, "cannot listen for the front door");
            worker.stop().await;
            return Exit::Failed;
        }
    };
    let handle = server.handle();
    tracing::info!(%http, "front door open");
    let exit = tokio::select! {
        served = server => match served {
            Ok(()) => Exit::Stopped,
            Err(error) => {
                tracing::error!(error = %error, "the front door failed");
                Exit::Failed
            }
        },
        () = shutdown_signal() => {
            tracing::info!("stopping");
            handle.stop(true).await;
            Exit::Stopped
        }
    };
    worker.stop().await;
    exit
}
