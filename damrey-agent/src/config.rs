//! The agent's settings and how they are loaded: defaults < file < `DAMREY_*` env < flags.
//!
//! The seed writes `damrey-agent -p 7701 -a 127.0.0.1:7701 -pr 127.0.0.1:7700 -r 3`;
//! `-pr` is two letters behind one dash, which no argument parser takes as a short
//! flag, so [`Cli::parse_seed_args`] reads it as `--proxy` before parsing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use damrey_service::credential::{Credentials, Role, Secret};
pub use damrey_service::settings::SettingsError;
use damrey_service::settings::{self, Sources};
pub use damrey_service::telemetry::LogFormat;
use damrey_service::tls::{self, Identity, TlsError};
use serde::{Deserialize, Serialize};

/// The command line of `damrey-agent`. Each flag overrides the settings file and the
/// `DAMREY_*` variables; without it they (or the default shown) apply.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "damrey-agent",
    version,
    about = "Damrey's agent: runs on each machine, attaches its worker processes, routes \
             messages between them and to other agents, and reports to the proxy.",
    after_help = "Every setting can also come from a settings file (--config) or a \
                  DAMREY_<SETTING> variable (for example DAMREY_PROXY, DAMREY_TOKEN); \
                  flags win over variables, which win over the file. See docs/agent.md."
)]
pub struct Cli {
    /// Port to listen on for workers, other agents and calls [default: 7701].
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// host:port that other agents and the proxy reach this agent at
    /// [default: 127.0.0.1:PORT].
    #[arg(short = 'a', long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// host:port of the proxy; `-pr` works too [default: 127.0.0.1:7700].
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// How many times a message is sent again to another agent or instance before the
    /// request fails [default: 3].
    #[arg(short = 'r', long)]
    pub retries: Option<u32>,
    /// Address to listen on [default: 0.0.0.0, every interface].
    #[arg(long)]
    pub host: Option<String>,
    /// Directory where the agent keeps the last worker configs it got from the proxy,
    /// so that it can route when it starts while the proxy is down
    /// [default: damrey-agent-state].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// A TOML settings file: `setting = value` lines, with the names of the DAMREY_*
    /// variables in lower case without the prefix (for example `heartbeat_ms = 1000`).
    /// An unknown name is refused.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines are written [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Cli {
    /// Parses the process arguments, reading the seed's `-pr X` / `-pr=X` as `--proxy`.
    pub fn parse_seed_args() -> Cli {
        Cli::parse_from(Self::seed_args(std::env::args_os()))
    }

    /// Rewrites the seed's `-pr` into `--proxy`; other arguments pass unchanged.
    pub fn seed_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
        args.into_iter()
            .map(|arg| match arg.to_str() {
                Some("-pr") => OsString::from("--proxy"),
                Some(text) if text.starts_with("-pr=") => {
                    OsString::from(format!("--proxy={}", &text[4..]))
                }
                _ => arg,
            })
            .collect()
    }
}

/// Everything the agent needs to run; tests build it directly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Address to bind.
    pub host: String,
    /// Port to listen on; `0` lets the OS choose.
    pub port: u16,
    /// This agent's `host:port` as others reach it; empty means `127.0.0.1:<bound port>`.
    pub advertise: String,
    /// The proxy's `host:port`.
    pub proxy: String,
    /// Attempts to push a message onward (to another agent, or a step to another
    /// instance when its instance is lost).
    pub retries: u32,
    /// `DAMREY_TOKEN`, the development shortcut: one token for every role. With any
    /// token set, everything but `/healthz`, `/readyz` and `/metrics` wants
    /// `Authorization: Bearer <token>` (see [`Settings::credentials`]).
    pub token: Option<Secret>,
    /// `DAMREY_ADMIN_TOKEN`: calls (`/call`) and stats.
    pub admin_token: Option<Secret>,
    /// `DAMREY_AGENT_TOKEN`: peer links (`/peer`); the agent also presents it to other
    /// agents and to the proxy.
    pub agent_token: Option<Secret>,
    /// `DAMREY_WORKER_TOKEN`: worker processes attaching (`/attach`), and calls.
    pub worker_token: Option<Secret>,
    /// `DAMREY_READ_TOKEN`: stats (`/stats`).
    pub read_token: Option<Secret>,
    /// How often the agent tells the proxy its instances and their counters (it also
    /// does at once when its instances change), and the longest one wait on the proxy's
    /// placement feed lasts (agents that go silent leave it without a change).
    pub heartbeat_ms: u64,
    /// How long one wait on the proxy's change feed lasts.
    pub feed_wait_ms: u64,
    /// How often attached workers are pinged; a worker silent for three periods is dropped.
    pub ping_ms: u64,
    /// The longest a `/call` may wait (its `timeout_ms` is capped to this).
    pub max_call_ms: u64,
    /// How long a stopping agent lets the lines it drives finish before it ends the
    /// rest with `STOP`.
    pub drain_ms: u64,
    /// Whether steps are counted for `/metrics` (`false` only to measure what counting costs).
    pub stats: bool,
    /// Threads serving HTTP, attached workers and peer links; `0` is one per core.
    /// One is the default: the agent switches messages, and on one thread a line never
    /// waits for another thread (measured faster than one per core on two cores, where
    /// the worker processes need the other core; see `benches/mesh/main.rs`).
    pub http_workers: usize,
    /// Where the agent keeps the last configs it took from the proxy, to route from them
    /// when it starts while the proxy is away (created when first needed).
    pub state_dir: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
    /// `DAMREY_TLS_CERT`: with `tls_key`, the agent serves HTTPS and WSS with this
    /// certificate chain (PEM, leaf first; its subject names the advertised host), and
    /// presents it on its peer links (mutual TLS).
    pub tls_cert: Option<PathBuf>,
    /// `DAMREY_TLS_KEY`: the private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// `DAMREY_TLS_CA`: the mesh's CA (PEM). Set, the agent reaches the proxy over
    /// HTTPS and other agents over WSS trusting this CA only, and its listener verifies
    /// the certificates clients present against it (a peer link must present one).
    pub tls_ca: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "0.0.0.0".to_owned(),
            port: 7701,
            advertise: String::new(),
            proxy: "127.0.0.1:7700".to_owned(),
            retries: 3,
            token: None,
            admin_token: None,
            agent_token: None,
            worker_token: None,
            read_token: None,
            heartbeat_ms: 1_000,
            feed_wait_ms: 25_000,
            ping_ms: 1_000,
            max_call_ms: 300_000,
            drain_ms: 5_000,
            stats: true,
            http_workers: 1,
            state_dir: PathBuf::from("damrey-agent-state"),
            log_format: LogFormat::Text,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl Settings {
    /// Loads the settings from the process environment and the command line.
    ///
    /// # Errors
    /// [`SettingsError`] when the file is missing or holds an unknown key, a value has
    /// the wrong kind, or an address is not `host:port`.
    pub fn load(cli: &Cli) -> Result<Settings, SettingsError> {
        Self::load_from(cli, std::env::vars().collect())
    }

    /// Loads the settings from `env` (the environment as a map) and the command line.
    /// `DAMREY_TOKEN` is read by its well-known name; every other field is
    /// `DAMREY_<FIELD>` (for example `DAMREY_PROXY`).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(cli: &Cli, env: HashMap<String, String>) -> Result<Settings, SettingsError> {
        let mut settings: Settings = settings::load(Sources {
            file: cli.config.as_deref(),
            well_known: &[],
            env,
            flags: vec![
                ("port", cli.port.map(|port| port.to_string())),
                ("advertise", cli.advertise.clone()),
                ("proxy", cli.proxy.clone()),
                ("retries", cli.retries.map(|retries| retries.to_string())),
                ("host", cli.host.clone()),
                (
                    "state_dir",
                    cli.state_dir
                        .as_ref()
                        .map(|dir| dir.to_string_lossy().into_owned()),
                ),
                (
                    "log_format",
                    cli.log_format.map(|format| format.as_str().to_owned()),
                ),
            ],
        })?;
        Secret::unset_empty([
            &mut settings.token,
            &mut settings.admin_token,
            &mut settings.agent_token,
            &mut settings.worker_token,
            &mut settings.read_token,
        ]);
        settings::check_host_port("proxy", &settings.proxy)?;
        if !settings.advertise.is_empty() {
            settings::check_host_port("advertise", &settings.advertise)?;
        }
        Ok(settings)
    }

    /// The credentials the agent accepts: `token` for every role, each role's own token
    /// for that role; none set, everything passes.
    pub fn credentials(&self) -> Credentials {
        Credentials::from_tokens(
            self.token.as_ref(),
            [
                (Role::Admin, self.admin_token.as_ref()),
                (Role::Agent, self.agent_token.as_ref()),
                (Role::Worker, self.worker_token.as_ref()),
                (Role::Read, self.read_token.as_ref()),
            ],
        )
    }

    /// The certificate and key the agent serves and presents; none for plain HTTP.
    ///
    /// # Errors
    /// [`TlsError::HalfIdentity`] when only one of them is set.
    pub fn tls_identity(&self) -> Result<Option<Identity>, TlsError> {
        Identity::from_settings(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// The client config of the agent's links to the proxy and to other agents: none
    /// (plain HTTP and WS) without `tls_ca`.
    ///
    /// # Errors
    /// [`TlsError`] when a file cannot be used.
    pub fn tls_client(&self) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        Ok(Some(Arc::new(tls::client_config(
            ca,
            self.tls_identity()?.as_ref(),
        )?)))
    }

    /// The token the agent presents to the proxy and to other agents: the agent role's,
    /// else the shared one.
    pub fn own_token(&self) -> Option<Secret> {
        self.agent_token.clone().or_else(|| self.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(Cli::seed_args(
            std::iter::once("damrey-agent")
                .chain(args.iter().copied())
                .map(OsString::from),
        ))
    }

    #[test]
    fn the_seed_command_line_parses_with_its_single_dash_pr() {
        let cli = cli(&[
            "-p",
            "7701",
            "-a",
            "127.0.0.1:7701",
            "-pr",
            "127.0.0.1:7700",
            "-r",
            "3",
        ]);
        let settings = Settings::load_from(&cli, HashMap::new()).unwrap();
        assert_eq!(settings.port, 7701);
        assert_eq!(settings.advertise, "127.0.0.1:7701");
        assert_eq!(settings.proxy, "127.0.0.1:7700");
        assert_eq!(settings.retries, 3);
    }

    #[test]
    fn long_forms_work_too() {
        let cli = cli(&[
            "--port",
            "9",
            "--advertise",
            "h:9",
            "--proxy=p:1",
            "--retries",
            "5",
        ]);
        assert_eq!(
            (
                cli.port,
                cli.advertise.as_deref(),
                cli.proxy.as_deref(),
                cli.retries
            ),
            (Some(9), Some("h:9"), Some("p:1"), Some(5))
        );
        assert_eq!(self::cli(&["-pr=p:2"]).proxy.as_deref(), Some("p:2"));
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_defaults() {
        let env = HashMap::from([
            ("DAMREY_PROXY".to_owned(), "env:1".to_owned()),
            ("DAMREY_RETRIES".to_owned(), "7".to_owned()),
            ("DAMREY_TOKEN".to_owned(), "s3cret".to_owned()),
        ]);
        let settings = Settings::load_from(&cli(&["-r", "2"]), env).unwrap();
        assert_eq!(settings.proxy, "env:1");
        assert_eq!(settings.retries, 2);
        assert_eq!(settings.token, Some(Secret::new("s3cret")));
        assert_eq!(settings.port, 7701);
    }

    #[test]
    fn each_role_has_its_token_and_the_agent_presents_its_own() {
        let env = HashMap::from([
            ("DAMREY_ADMIN_TOKEN".to_owned(), "adm".to_owned()),
            ("DAMREY_AGENT_TOKEN".to_owned(), "agt".to_owned()),
            ("DAMREY_WORKER_TOKEN".to_owned(), "wrk".to_owned()),
            ("DAMREY_READ_TOKEN".to_owned(), String::new()),
        ]);
        let settings = Settings::load_from(&cli(&[]), env).unwrap();
        let credentials = settings.credentials();

        assert_eq!(settings.own_token(), Some(Secret::new("agt")));
        assert_eq!(settings.read_token, None, "empty means unset");
        assert!(
            credentials
                .authorize(Some(b"Bearer wrk"), &[Role::Worker])
                .is_ok()
        );
        assert!(
            credentials
                .authorize(Some(b"Bearer wrk"), &[Role::Agent])
                .is_err()
        );
        assert!(
            credentials
                .authorize(Some(b"Bearer agt"), &[Role::Agent])
                .is_ok()
        );
        let shared = Settings::load_from(
            &cli(&[]),
            HashMap::from([("DAMREY_TOKEN".to_owned(), "one".to_owned())]),
        )
        .unwrap();
        assert_eq!(shared.own_token(), Some(Secret::new("one")));
        assert!(
            shared
                .credentials()
                .authorize(Some(b"Bearer one"), &[Role::Agent])
                .is_ok()
        );
    }

    #[test]
    fn no_token_shows_in_the_settings_debug_output() {
        let settings = Settings {
            token: Some(Secret::new("tok-shared")),
            admin_token: Some(Secret::new("tok-admin")),
            agent_token: Some(Secret::new("tok-agent")),
            worker_token: Some(Secret::new("tok-worker")),
            read_token: Some(Secret::new("tok-read")),
            ..Settings::default()
        };
        let debug = format!("{settings:?} {:?}", settings.credentials());
        assert!(!debug.contains("tok-"), "{debug}");
        assert!(debug.contains("Secret(***)"), "{debug}");
    }

    #[test]
    fn the_drain_time_is_five_seconds_unless_the_environment_says_otherwise() {
        let default = Settings::load_from(&cli(&[]), HashMap::new()).unwrap();
        let env = HashMap::from([("DAMREY_DRAIN_MS".to_owned(), "500".to_owned())]);
        let set = Settings::load_from(&cli(&[]), env).unwrap();

        assert_eq!((default.drain_ms, set.drain_ms), (5_000, 500));
    }

    #[test]
    fn the_state_dir_comes_from_the_flag_then_the_environment_then_the_default() {
        let env = HashMap::from([("DAMREY_STATE_DIR".to_owned(), "/var/env".to_owned())]);
        let default = Settings::load_from(&cli(&[]), HashMap::new()).unwrap();
        let from_env = Settings::load_from(&cli(&[]), env.clone()).unwrap();
        let from_flag = Settings::load_from(&cli(&["--state-dir", "/var/flag"]), env).unwrap();
        assert_eq!(default.state_dir, PathBuf::from("damrey-agent-state"));
        assert_eq!(from_env.state_dir, PathBuf::from("/var/env"));
        assert_eq!(from_flag.state_dir, PathBuf::from("/var/flag"));
    }

    #[test]
    fn an_address_without_its_port_is_refused_at_start() {
        for (args, setting) in [
            (&["-pr", "127.0.0.1"][..], "proxy"),
            (&["-a", "10.0.0.5"][..], "advertise"),
        ] {
            let error = Settings::load_from(&cli(args), HashMap::new()).unwrap_err();
            assert!(
                matches!(error, SettingsError::Address { setting: named, .. } if named == setting),
                "{args:?}: {error}"
            );
        }
        let env = HashMap::from([("DAMREY_PROXY".to_owned(), "proxy".to_owned())]);
        assert!(Settings::load_from(&cli(&[]), env).is_err());
    }

    #[test]
    fn a_settings_file_with_an_unknown_key_is_refused() {
        let path = std::env::temp_dir().join(format!("damrey-agent-{}.toml", std::process::id()));
        std::fs::write(&path, "heartbeat_ms = 500\nhaertbeat_ms = 9\n").unwrap();
        let error =
            Settings::load_from(&cli(&["--config", path.to_str().unwrap()]), HashMap::new())
                .unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            error
                .to_string()
                .contains(r#"unknown setting "haertbeat_ms""#),
            "{error}"
        );
    }
}
