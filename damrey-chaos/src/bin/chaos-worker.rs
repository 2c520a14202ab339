//! `chaos-worker --agent HOST:PORT --name W --record FILE`: the checker's generic test
//! worker. Its answer is a pure function of the message ([`damrey_chaos::step`]); it
//! sleeps the step's time, appends the step to its record file before returning the
//! result, and on `o{k}` puts a sub-request along line `k` from its own outbox.
//! SIGINT/SIGTERM: leaves the agent, drains, exits. SIGUSR1 makes it a failing instance
//! (every step's handler panics at once, which the runtime answers `ERROR`) until SIGUSR2.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use damrey_actors::prelude::*;
use damrey_chaos::record::{Record, Recorder, now_ms};
use damrey_chaos::step;
use damrey_service::signal::shutdown_signal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(about = "Damrey's chaos test worker")]
struct Args {
    /// The local agent's `host:port`.
    #[arg(long)]
    agent: String,
    /// The worker name to attach as.
    #[arg(long)]
    name: String,
    /// The longest one message may be processed, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// The file steps are appended to.
    #[arg(long)]
    record: PathBuf,
}

/// Set by SIGUSR1, cleared by SIGUSR2: every step fails.
static FAILING: AtomicBool = AtomicBool::new(false);

/// Follows SIGUSR1 and SIGUSR2 into [`FAILING`].
fn follow_failing_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, failing) in [
        (SignalKind::user_defined1(), true),
        (SignalKind::user_defined2(), false),
    ] {
        let mut signals = signal(kind).context("installing a SIGUSR handler")?;
        actix_rt::spawn(async move {
            while signals.recv().await.is_some() {
                FAILING.store(failing, Ordering::Relaxed);
            }
        });
    }
    Ok(())
}

/// The actor: its name, its record file, and its own handle for the outbox.
struct Chaos {
    name: Arc<str>,
    recorder: Arc<Recorder>,
    handle: Arc<OnceLock<WorkerHandle>>,
    subs: Arc<AtomicU64>,
}

impl Actor for Chaos {
    type Context = Context<Self>;
}

impl Handler<Message> for Chaos {
    type Result = ResponseFuture<Message>;

    fn handle(&mut self, message: Message, _: &mut Context<Self>) -> Self::Result {
        let name = self.name.clone();
        let recorder = self.recorder.clone();
        let handle = self.handle.clone();
        let sub = self.subs.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            // Before anything is recorded: the step did not run.
            assert!(
                !FAILING.load(Ordering::Relaxed),
                "failing instance (the checker's fault)"
            );
            let Some(args) = step::StepArgs::parse(&message) else {
                return Message::error(message.kind, "not a chaos message");
            };
            let answer = match step::answer(&name, &message) {
                Ok(answer) => answer,
                Err(reason) => return Message::error(message.kind, reason),
            };
            actix_rt::time::sleep(step::step_sleep(&args.request_id, args.hop)).await;
            let sub_id = format!("{}~{}.{sub}", args.request_id, std::process::id());
            if let Some((line, sub, deadline, push)) = step::drive(&message, &sub_id) {
                let handle = own_handle(&handle).await;
                if push {
                    let at_ms = now_ms();
                    // A push that fails (detached) shows as a drive without pushed steps.
                    let _ = handle.push(sub).await;
                    recorder.write(&Record::Pushed {
                        sub_id,
                        line,
                        value: args.value,
                        at_ms,
                    });
                } else {
                    let (sent_ms, started) = (now_ms(), Instant::now());
                    let reply = handle.request(sub, deadline).await;
                    recorder.write(&Record::Outbox {
                        sub_id,
                        line,
                        value: args.value,
                        deadline_ms: deadline.as_millis() as u64,
                        sent_ms,
                        elapsed_ms: started.elapsed().as_millis() as u64,
                        reply,
                    });
                }
            }
            recorder.write(&Record::Step {
                request_id: args.request_id,
                hop: args.hop,
                worker: name.to_string(),
                at_ms: now_ms(),
            });
            answer
        })
    }
}

/// The worker's handle, which `start` returns just after the first message may arrive.
async fn own_handle(cell: &OnceLock<WorkerHandle>) -> WorkerHandle {
    loop {
        if let Some(handle) = cell.get() {
            return handle.clone();
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let recorder = Arc::new(
        Recorder::open(&args.record)
            .with_context(|| format!("opening {}", args.record.display()))?,
    );
    actix_rt::System::new().block_on(async move {
        follow_failing_signals()?;
        let handle = Arc::new(OnceLock::new());
        let subs = Arc::new(AtomicU64::new(0));
        let config = Config {
            retries: 3,
            name: args.name.clone(),
            timeout: Duration::from_millis(args.timeout_ms),
        };
        let name: Arc<str> = args.name.clone().into();
        let worker = Worker::new(config)
            .agent(args.agent.clone())
            .start({
                let (recorder, handle) = (recorder.clone(), handle.clone());
                move || Chaos {
                    name: name.clone(),
                    recorder: recorder.clone(),
                    handle: handle.clone(),
                    subs: subs.clone(),
                }
            })
            .await
            .with_context(|| format!("attaching {} to {}", args.name, args.agent))?;
        let _ = handle.set(worker.clone());
        recorder.write(&Record::Attached { at_ms: now_ms() });
        shutdown_signal().await;
        worker.stop().await;
        Ok(())
    })
}
