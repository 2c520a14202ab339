//! `damrey call WORKER TYPE ARGS...`: a request through the agent's `/call`, and its
//! line's terminal reply.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use damrey_actors::{Message, Tag};
use damrey_service::credential::Secret;
use rustls::ClientConfig;

use super::{FAILURE, SUCCESS};
use crate::cli::CallArgs;
use crate::client::Api;

/// The exit code of an `ERROR` reply.
pub const ERROR: u8 = 3;
/// The exit code of a `TIMEOUT` reply.
pub const TIMEOUT: u8 = 4;
/// The exit code of a `STOP` reply.
pub const STOP: u8 = 5;

/// What the agent waits when the caller says nothing (its `/call` default).
const AGENT_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the call's own timeout the answer is waited for: the agent
/// answers `TIMEOUT` itself at the deadline, so this only covers a silent agent.
const SLACK: Duration = Duration::from_secs(10);

/// Puts the request and prints the reply: its words, or the JSON list with `json`.
///
/// # Errors
/// The agent did not answer with a message (unreachable, refused, bad request).
pub async fn run(
    token: Option<Secret>,
    tls: Option<&Arc<ClientConfig>>,
    agent: &str,
    args: CallArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let timeout = args
        .timeout
        .map_or(AGENT_DEFAULT_TIMEOUT, Duration::from_millis);
    let api = Api::new(token, timeout + SLACK, tls);
    let mut url = format!("{agent}/call/{}", args.worker);
    if let Some(ms) = args.timeout {
        url.push_str(&format!("?timeout_ms={ms}"));
    }
    let request = Message::request(args.kind, args.args);
    let answer = api.post(&url, request.to_json()).await?;
    // The agent answers every terminal reply as the message itself, whatever its status;
    // anything else (a malformed request, a missing token, a stopping agent) is an error.
    let reply = Message::from_json_slice(&answer.body).map_err(|_| answer.failure())?;
    if json {
        println!("{}", reply.to_json());
    } else {
        println!("{reply}");
    }
    Ok(ExitCode::from(exit_code(reply.tag)))
}

/// The exit code that tells the reply's tag.
fn exit_code(tag: Tag) -> u8 {
    match tag {
        Tag::Response | Tag::Request => SUCCESS,
        Tag::Error => ERROR,
        Tag::Timeout => TIMEOUT,
        Tag::Stop => STOP,
    }
}

/// Keeps `FAILURE` and the reply codes apart (1 is every other failure, 2 is clap's).
const _: () = assert!(FAILURE != ERROR && ERROR != TIMEOUT && TIMEOUT != STOP && ERROR > 2);
