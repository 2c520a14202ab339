//! `damrey stats`, `alarms` and `agents`: the proxy's monitoring, as tables.

use std::process::ExitCode;

use damrey_actors::report::Routing;
use serde::Deserialize as _;
use serde_json::Value;

use super::{SUCCESS, print_json};
use crate::cli::{AlarmsArgs, StatsArgs};
use crate::client::Api;
use crate::table::Table;

/// Prints each worker's live instances, rates and latency over the window, the steps its
/// agents' routers refused (counted in its errors too) and the steps it processed.
///
/// # Errors
/// The proxy refused or did not answer.
pub async fn stats(
    api: &Api,
    proxy: &str,
    args: &StatsArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut answer = api
        .get(&format!("{proxy}/workers/stats?window_ms={}", args.window))
        .await?
        .json()?;
    if let (Some(only), Some(workers)) = (&args.worker, answer["workers"].as_array_mut()) {
        workers.retain(|worker| worker["worker"].as_str() == Some(only.as_str()));
        if workers.is_empty() {
            anyhow::bail!("the proxy knows no worker named {only:?}");
        }
    }
    if json {
        print_json(&answer);
        return Ok(ExitCode::from(SUCCESS));
    }
    let mut table = Table::new(&[
        "WORKER",
        "LIVE",
        "IN FLIGHT",
        "RECEIVED/s",
        "ERRORS/s",
        "TIMEOUTS/s",
        "P50 ms",
        "P99 ms",
        "REFUSED",
        "PROCESSED",
    ]);
    for worker in answer["workers"].as_array().into_iter().flatten() {
        table.row(vec![
            text(&worker["worker"]),
            text(&worker["live_instances"]),
            text(&worker["totals"]["in_flight"]),
            rate(&worker["rates"]["received"]),
            rate(&worker["rates"]["errors"]),
            rate(&worker["rates"]["timeouts"]),
            text(&worker["latency_ms"]["p50"]),
            text(&worker["latency_ms"]["p99"]),
            refused(&worker["routing"]),
            text(&worker["totals"]["processed"]),
        ]);
    }
    println!("over the last {} ms:", answer["window_ms"]);
    print!("{table}");
    Ok(ExitCode::from(SUCCESS))
}

/// Prints the active alarms, or every alarm kept with `--all`.
///
/// # Errors
/// The proxy refused or did not answer.
pub async fn alarms(
    api: &Api,
    proxy: &str,
    args: &AlarmsArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let url = if args.all {
        format!("{proxy}/alarms?all=true")
    } else {
        format!("{proxy}/alarms")
    };
    let answer = api.get(&url).await?.json()?;
    if json {
        print_json(&answer);
        return Ok(ExitCode::from(SUCCESS));
    }
    let alarms = answer["alarms"].as_array().cloned().unwrap_or_default();
    if alarms.is_empty() {
        println!(
            "{}",
            if args.all {
                "no alarms kept"
            } else {
                "no active alarms"
            }
        );
        return Ok(ExitCode::from(SUCCESS));
    }
    let mut table = Table::new(&["ID", "STATE", "RULE", "WORKER", "AGENT", "MESSAGE"]);
    for alarm in &alarms {
        table.row(vec![
            text(&alarm["id"]),
            if alarm["resolved_ms"].is_null() {
                "active"
            } else {
                "resolved"
            }
            .to_owned(),
            text(&alarm["rule"]),
            text(&alarm["worker"]),
            text(&alarm["agent"]),
            text(&alarm["message"]),
        ]);
    }
    print!("{table}");
    Ok(ExitCode::from(SUCCESS))
}

/// Prints the agents the proxy lists and the instances attached to each.
///
/// # Errors
/// The proxy refused or did not answer.
pub async fn agents(api: &Api, proxy: &str, json: bool) -> anyhow::Result<ExitCode> {
    let answer = api.get(&format!("{proxy}/agents")).await?.json()?;
    if json {
        print_json(&answer);
        return Ok(ExitCode::from(SUCCESS));
    }
    let mut table = Table::new(&["AGENT", "LAST HEARD", "INSTANCES"]);
    for agent in answer["agents"].as_array().into_iter().flatten() {
        let instances: Vec<String> = agent["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|instance| format!("{}×{}", text(&instance["worker"]), text(&instance["count"])))
            .collect();
        table.row(vec![
            text(&agent["agent"]),
            format!("{} ms ago", text(&agent["age_ms"])),
            if instances.is_empty() {
                "none".to_owned()
            } else {
                instances.join(", ")
            },
        ]);
    }
    print!("{table}");
    Ok(ExitCode::from(SUCCESS))
}

/// A JSON value as a table cell: strings without quotes, `-` for null or absent.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A rate per second with one decimal, `-` when absent.
pub fn rate(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.1}"))
}

/// The steps a worker's routing counters say were refused, `-` when absent (a proxy
/// from before them).
pub fn refused(routing: &Value) -> String {
    Routing::deserialize(routing)
        .map_or_else(|_| "-".to_owned(), |routing| routing.refused().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_read_as_words() {
        assert_eq!(text(&json!("add")), "add");
        assert_eq!(text(&json!(null)), "-");
        assert_eq!(text(&json!(3)), "3");
        assert_eq!(rate(&json!(0.26)), "0.3");
        assert_eq!(rate(&json!(null)), "-");
        let routing = json!({"rejected_no_instance": 2, "rejected_type": 1, "handoff_retries": 4});
        assert_eq!(refused(&routing), "3");
        assert_eq!(refused(&json!(null)), "-");
    }
}
