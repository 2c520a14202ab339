//! `damrey worker add|chg|del|get|list`: the proxy's worker configs.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use damrey_actors::WorkerSpec;
use serde_json::{Value, json};

use super::{SUCCESS, print_json};
use crate::cli::{WorkerCommand, WorkerInput};
use crate::client::Api;
use crate::table::Table;

/// Runs a `worker` command against the proxy at `proxy`.
///
/// # Errors
/// The input is not a valid config, or the proxy refused or did not answer.
pub async fn run(
    api: &Api,
    proxy: &str,
    command: WorkerCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        WorkerCommand::Add(input) => {
            store(api, &format!("{proxy}/worker/add"), input, "added", json).await
        }
        WorkerCommand::Chg(input) => {
            store(api, &format!("{proxy}/worker/chg"), input, "changed", json).await
        }
        WorkerCommand::Del { name } => {
            let answer = api
                .post(
                    &format!("{proxy}/worker/del"),
                    json!({ "name": name }).to_string(),
                )
                .await?
                .json()?;
            if json {
                print_json(&answer);
            } else {
                println!("deleted worker {name}");
            }
            Ok(ExitCode::from(SUCCESS))
        }
        WorkerCommand::Get { name } => {
            let answer = api.get(&format!("{proxy}/workers/{name}")).await?.json()?;
            if json {
                print_json(&answer);
            } else {
                let spec: WorkerSpec = serde_json::from_value(answer)
                    .context("the proxy answered a worker config this command cannot read")?;
                print!("{}", table(&[spec]));
            }
            Ok(ExitCode::from(SUCCESS))
        }
        WorkerCommand::List => {
            let answer = api.get(&format!("{proxy}/workers/get")).await?.json()?;
            if json {
                print_json(&answer);
            } else {
                let specs: Vec<WorkerSpec> = serde_json::from_value(answer["workers"].clone())
                    .context("the proxy answered a worker list this command cannot read")?;
                print!("{}", table(&specs));
                print!("{}", warning_lines(&specs));
            }
            Ok(ExitCode::from(SUCCESS))
        }
    }
}

/// Sends each config of `input` to `url` (add or chg), in order, stopping at the first
/// the proxy refuses.
async fn store(
    api: &Api,
    url: &str,
    input: WorkerInput,
    done: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    for spec in specs(input)? {
        let body = serde_json::to_string(&spec).context("a config that cannot be written")?;
        let answer = api
            .post(url, body)
            .await?
            .json()
            .with_context(|| format!("worker {} was not {done}", spec.name))?;
        if json {
            print_json(&answer);
        } else {
            println!("{done} worker {}", spec.name);
            let warnings = answer["warnings"].as_array().into_iter().flatten();
            for warning in warnings.filter_map(|warning| warning.as_str()) {
                eprintln!("warning: worker {}: {warning}", spec.name);
            }
        }
    }
    Ok(ExitCode::from(SUCCESS))
}

/// The configs a command names: read from its file (one config or a list), or built
/// from its flags. Both are checked as the proxy checks them.
fn specs(input: WorkerInput) -> anyhow::Result<Vec<WorkerSpec>> {
    if let Some(file) = input.file {
        return read_specs(&file);
    }
    let Some(name) = input.name else {
        bail!("give a config file, or the worker's --name");
    };
    let mut spec = WorkerSpec::new(name);
    if let Some(mpu) = input.mpu {
        spec = spec.mpu(mpu);
    }
    if let Some(pin) = input.pin {
        spec = spec.agent(pin);
    }
    for command in &input.commands {
        let Some((kind, next)) = command.split_once('=') else {
            bail!("--command {command:?}: write it as TYPE=NEXT (TYPE= ends the line)");
        };
        spec = spec.command(kind, next);
    }
    spec.validate().context("the worker config is not valid")?;
    Ok(vec![spec])
}

/// Reads one config, or a list of them, from `file` (`-` is stdin).
fn read_specs(file: &Path) -> anyhow::Result<Vec<WorkerSpec>> {
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let parsed = match value {
        Value::Array(_) => serde_json::from_value(value),
        one => serde_json::from_value(one).map(|spec| vec![spec]),
    };
    parsed.with_context(|| format!("{} is not a valid worker config", file.display()))
}

/// The configs as a table: one row per worker, its types and where each goes.
/// One `warning: worker W: ...` line for each thing the listed configs cannot carry a
/// line through yet ([`WorkerSpec::warnings`]).
fn warning_lines(specs: &[WorkerSpec]) -> String {
    specs
        .iter()
        .flat_map(|spec| {
            spec.warnings(specs)
                .into_iter()
                .map(move |warning| format!("warning: worker {}: {warning}\n", spec.name))
        })
        .collect()
}

fn table(specs: &[WorkerSpec]) -> Table {
    let mut table = Table::new(&["NAME", "AGENT", "MPU", "COMMANDS"]);
    for spec in specs {
        let commands: Vec<String> = spec
            .commands
            .iter()
            .map(|command| {
                if command.worker.is_empty() {
                    format!("{} (ends)", command.name)
                } else {
                    format!("{} => {}", command.name, command.worker)
                }
            })
            .collect();
        table.row(vec![
            spec.name.clone(),
            if spec.agent.is_empty() {
                "any".to_owned()
            } else {
                spec.agent.clone()
            },
            spec.mpu
                .limit()
                .map_or_else(|| "unlimited".to_owned(), |mpu| mpu.to_string()),
            commands.join(", "),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(name: &str, commands: &[&str]) -> WorkerInput {
        WorkerInput {
            file: None,
            name: Some(name.to_owned()),
            mpu: Some(2),
            pin: None,
            commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn flags_make_the_same_config_as_the_seed_json() {
        let specs = specs(flags("add", &["sqsum=square", "done="])).unwrap();
        assert_eq!(
            specs,
            vec![
                WorkerSpec::new("add")
                    .mpu(2)
                    .command("sqsum", "square")
                    .command("done", "")
            ]
        );
    }

    #[test]
    fn a_command_without_an_equals_sign_is_refused_with_its_form() {
        let error = specs(flags("add", &["sqsum"])).unwrap_err();
        assert!(error.to_string().contains("TYPE=NEXT"), "{error}");
    }

    #[test]
    fn a_bad_name_is_refused_before_anything_is_sent() {
        assert!(specs(flags("no spaces", &[])).is_err());
    }

    #[test]
    fn the_list_warns_of_lines_the_configs_cannot_carry_yet() {
        let add = WorkerSpec::new("add").command("sqsum", "square");
        let square = WorkerSpec::new("square").command("sqsum", "");
        assert_eq!(
            warning_lines(std::slice::from_ref(&add)),
            "warning: worker add: type \"sqsum\" goes to worker square, which is not configured\n"
        );
        assert_eq!(warning_lines(&[add, square]), "");
    }

    #[test]
    fn the_table_says_where_each_type_goes() {
        let text = table(&[WorkerSpec::new("add").mpu(100).command("sqsum", "square")]).to_string();
        assert_eq!(
            text,
            "NAME  AGENT  MPU  COMMANDS\nadd   any    100  sqsum => square\n"
        );
    }
}
