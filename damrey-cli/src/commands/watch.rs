//! `damrey watch`: the collaboration lines the configs make, each step with its worker's
//! live instances and rate, redrawn every interval.

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use damrey_actors::{MAX_HOPS, WorkerSpec};
use serde::Serialize;
use serde_json::Value;

use super::SUCCESS;
use super::monitor::rate;
use crate::cli::WatchArgs;
use crate::client::Api;

/// Draws the lines until interrupted, or `count` times. A proxy that does not answer is
/// said on the screen and asked again at the next interval.
///
/// # Errors
/// Never for the proxy's answers; kept for the signature every command has.
pub async fn watch(
    api: &Api,
    proxy: &str,
    args: &WatchArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let clear = !json && std::io::stdout().is_terminal();
    let mut drawn = 0;
    loop {
        let screen = match snapshot(api, proxy, args.window).await {
            Ok((specs, stats)) => {
                let lines = lines(&specs);
                if json {
                    serde_json::to_string(&Draw {
                        lines: &lines,
                        workers: &stats,
                    })?
                } else {
                    render(&lines, &stats)
                }
            }
            Err(error) => format!("monitoring unavailable: {error:#}"),
        };
        if clear {
            print!("\x1b[2J\x1b[H");
            println!("damrey watch — {proxy} — rates over {} ms\n", args.window);
        }
        println!("{}", screen.trim_end());
        drawn += 1;
        if args.count.is_some_and(|count| drawn >= count) {
            return Ok(ExitCode::from(SUCCESS));
        }
        actix_rt::time::sleep(Duration::from_millis(args.interval)).await;
    }
}

/// One draw in `--json` mode (one JSON object per line).
#[derive(Serialize)]
struct Draw<'a> {
    lines: &'a [Line],
    workers: &'a HashMap<String, WorkerNumbers>,
}

/// What the watch shows of one worker.
#[derive(Debug, Default, Clone, Serialize)]
struct WorkerNumbers {
    live_instances: u64,
    received_per_s: Option<f64>,
    errors_per_s: Option<f64>,
    timeouts_per_s: Option<f64>,
}

/// The configs and each worker's numbers.
async fn snapshot(
    api: &Api,
    proxy: &str,
    window: u64,
) -> anyhow::Result<(Vec<WorkerSpec>, HashMap<String, WorkerNumbers>)> {
    let configs = api.get(&format!("{proxy}/workers/get")).await?.json()?;
    let specs: Vec<WorkerSpec> = serde_json::from_value(configs["workers"].clone())?;
    let stats = api
        .get(&format!("{proxy}/workers/stats?window_ms={window}"))
        .await?
        .json()?;
    let numbers = stats["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|worker| {
            Some((
                worker["worker"].as_str()?.to_owned(),
                WorkerNumbers::from(worker),
            ))
        })
        .collect();
    Ok((specs, numbers))
}

/// A collaboration line: a message type, the workers it passes through, and how it ends.
#[derive(Debug, PartialEq, Serialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    workers: Vec<String>,
    end: LineEnd,
}

/// How a line ends.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "worker")]
enum LineEnd {
    /// The last worker's result is the reply.
    Reply,
    /// The line comes back to a worker it passed (it ends at `MAX_HOPS` with `ERROR`).
    Loop(String),
    /// The next worker has no config.
    NotConfigured(String),
    /// The next worker does not accept the type.
    NotAccepted(String),
}

/// Every line the configs make: for each message type, from each worker that accepts it
/// and that no other worker sends it to (or, when all of them are sent it, from the
/// first by name), following each worker's command for the type.
fn lines(specs: &[WorkerSpec]) -> Vec<Line> {
    let by_name: HashMap<&str, &WorkerSpec> = specs
        .iter()
        .map(|spec| (spec.name.as_str(), spec))
        .collect();
    let kinds: BTreeSet<&str> = specs
        .iter()
        .flat_map(|spec| spec.commands.iter().map(|command| command.name.as_str()))
        .collect();
    let mut lines = Vec::new();
    for kind in kinds {
        let mut takers: Vec<&WorkerSpec> = specs
            .iter()
            .filter(|spec| spec.find_command(kind).is_some())
            .collect();
        takers.sort_by(|a, b| a.name.cmp(&b.name));
        let sent_to: BTreeSet<&str> = takers
            .iter()
            .filter_map(|spec| spec.next_worker(kind))
            .collect();
        let mut starts: Vec<&WorkerSpec> = takers
            .iter()
            .copied()
            .filter(|spec| !sent_to.contains(spec.name.as_str()))
            .collect();
        if starts.is_empty() {
            starts.extend(takers.first().copied());
        }
        for start in starts {
            lines.push(follow(kind, start, &by_name));
        }
    }
    lines
}

/// The line of type `kind` that starts at `start`.
fn follow(kind: &str, start: &WorkerSpec, by_name: &HashMap<&str, &WorkerSpec>) -> Line {
    let mut workers = vec![start.name.clone()];
    let mut current = start;
    let end = loop {
        let next = current.next_worker(kind).unwrap_or_default();
        if next.is_empty() {
            break LineEnd::Reply;
        }
        if workers.iter().any(|seen| seen == next) || workers.len() >= MAX_HOPS as usize {
            break LineEnd::Loop(next.to_owned());
        }
        let Some(spec) = by_name.get(next) else {
            break LineEnd::NotConfigured(next.to_owned());
        };
        if spec.find_command(kind).is_none() {
            break LineEnd::NotAccepted(next.to_owned());
        }
        workers.push(next.to_owned());
        current = spec;
    };
    Line {
        kind: kind.to_owned(),
        workers,
        end,
    }
}

/// The lines as text: `sqsum  entry[1] 3.0/s => add[2] 3.0/s => square[1] 3.0/s ○`.
fn render(lines: &[Line], numbers: &HashMap<String, WorkerNumbers>) -> String {
    if lines.is_empty() {
        return "no lines: no worker config lists a command".to_owned();
    }
    let width = lines.iter().map(|line| line.kind.len()).max().unwrap_or(0);
    let mut text = String::new();
    for line in lines {
        let steps: Vec<String> = line
            .workers
            .iter()
            .map(|worker| step(worker, numbers.get(worker)))
            .collect();
        let end = match &line.end {
            LineEnd::Reply => "○".to_owned(),
            LineEnd::Loop(worker) => format!("=> {worker} … loops"),
            LineEnd::NotConfigured(worker) => format!("=> {worker} (no config)"),
            LineEnd::NotAccepted(worker) => {
                format!("=> {worker} (does not accept {})", line.kind)
            }
        };
        text.push_str(&format!(
            "{:width$}  {} {end}\n",
            line.kind,
            steps.join(" => ")
        ));
    }
    text
}

/// One step: the worker, its live instances, its rate, and its failures when it has some.
fn step(worker: &str, numbers: Option<&WorkerNumbers>) -> String {
    let Some(numbers) = numbers else {
        return format!("{worker}[?]");
    };
    let mut text = format!(
        "{worker}[{}] {}/s",
        numbers.live_instances,
        rate(&numbers.received_per_s.into())
    );
    let failing = [
        ("err", numbers.errors_per_s),
        ("timeout", numbers.timeouts_per_s),
    ];
    for (what, per_s) in failing {
        if per_s.is_some_and(|per_s| per_s > 0.0) {
            text.push_str(&format!(" ({what} {}/s)", rate(&per_s.into())));
        }
    }
    text
}

/// The numbers of one worker's entry in `/workers/stats`.
impl From<&Value> for WorkerNumbers {
    fn from(worker: &Value) -> WorkerNumbers {
        WorkerNumbers {
            live_instances: worker["live_instances"].as_u64().unwrap_or(0),
            received_per_s: worker["rates"]["received"].as_f64(),
            errors_per_s: worker["rates"]["errors"].as_f64(),
            timeouts_per_s: worker["rates"]["timeouts"].as_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<WorkerSpec> {
        vec![
            WorkerSpec::new("square").command("sqsum", ""),
            WorkerSpec::new("entry").command("sqsum", "add"),
            WorkerSpec::new("add").command("sqsum", "square"),
        ]
    }

    #[test]
    fn the_example_makes_one_line_from_entry_to_square() {
        assert_eq!(
            lines(&example()),
            vec![Line {
                kind: "sqsum".into(),
                workers: vec!["entry".into(), "add".into(), "square".into()],
                end: LineEnd::Reply,
            }]
        );
    }

    #[test]
    fn lines_that_loop_or_lead_nowhere_say_so() {
        let specs = vec![
            WorkerSpec::new("a")
                .command("ping", "b")
                .command("x", "ghost"),
            WorkerSpec::new("b").command("ping", "a"),
            WorkerSpec::new("c").command("y", "b"),
        ];
        let lines = lines(&specs);
        let ends: Vec<&LineEnd> = lines.iter().map(|line| &line.end).collect();
        assert_eq!(
            ends,
            vec![
                &LineEnd::Loop("a".into()),
                &LineEnd::NotConfigured("ghost".into()),
                &LineEnd::NotAccepted("b".into()),
            ]
        );
    }

    #[test]
    fn a_step_shows_instances_rate_and_failures() {
        let numbers = WorkerNumbers {
            live_instances: 2,
            received_per_s: Some(3.0),
            errors_per_s: Some(0.5),
            timeouts_per_s: Some(0.0),
        };
        assert_eq!(step("add", Some(&numbers)), "add[2] 3.0/s (err 0.5/s)");
        assert_eq!(step("add", None), "add[?]");
    }
}
