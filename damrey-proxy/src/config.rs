//! The proxy's settings and how they are loaded: defaults < file < `DAMREY_*` env < flags.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use damrey_service::credential::{Credentials, Role, Secret};
use damrey_service::settings::{self, Sources};
pub use damrey_service::telemetry::LogFormat;
use damrey_service::tls::{Identity, TlsError};
use serde::{Deserialize, Serialize};

use crate::alarms::EvaluatorSettings;

/// The command line of `damrey-proxy`. Each flag overrides the settings file and the
/// `DAMREY_*` variables; without it they (or the default shown) apply.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "damrey-proxy",
    version,
    about = "Damrey's proxy: keeps the worker configs, tells agents about them and about \
             each other, and shows the mesh's stats, alarms and dashboard.",
    after_help = "Every setting can also come from a settings file (--config) or a \
                  DAMREY_<SETTING> variable (for example DAMREY_AGENT_TTL_MS, DAMREY_TOKEN); \
                  flags win over variables, which win over the file. See docs/proxy.md."
)]
pub struct Cli {
    /// Port to listen on [default: 7700].
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0, every interface].
    #[arg(long)]
    pub host: Option<String>,
    /// Where configs are stored: `postgres://USER@HOST/DB` or `sqlite://FILE`; also read
    /// from DATABASE_URL [default: the SQLite file damrey-proxy.db].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// A TOML settings file: `setting = value` lines, with the names of the DAMREY_*
    /// variables in lower case without the prefix (for example `agent_ttl_ms = 10000`).
    /// An unknown name is refused.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How log lines are written [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// An http:// URL that each alarm, when it fires and when it resolves, is POSTed to.
    #[arg(long, value_name = "URL")]
    pub alarm_webhook: Option<String>,
}

/// Everything the proxy needs to run; tests build it directly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Address to bind.
    pub host: String,
    /// Port to listen on; `0` lets the OS choose.
    pub port: u16,
    /// The store: `postgres://...` or `sqlite://...`; `None` means [`Settings::sqlite_path`].
    pub database_url: Option<String>,
    /// The embedded SQLite file used when no `database_url` is set, created if missing.
    pub sqlite_path: String,
    /// `DAMREY_TOKEN`, the development shortcut: one token for every role. With any
    /// token set, every endpoint but `/`, `/healthz`, `/readyz` and `/metrics` wants
    /// `Authorization: Bearer <token>` (see [`Settings::credentials`]).
    pub token: Option<Secret>,
    /// `DAMREY_ADMIN_TOKEN`: config writes, `forget`, and every read.
    pub admin_token: Option<Secret>,
    /// `DAMREY_AGENT_TOKEN`: heartbeats, and the config and placement reads agents make.
    pub agent_token: Option<Secret>,
    /// `DAMREY_READ_TOKEN`: stats, alarms, and what the dashboard reads.
    pub read_token: Option<Secret>,
    /// `DAMREY_TLS_CERT`: with `tls_key`, the proxy serves HTTPS with this certificate
    /// chain (PEM, leaf first).
    pub tls_cert: Option<PathBuf>,
    /// `DAMREY_TLS_KEY`: the private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// `DAMREY_WORKER_TOKEN`: opens nothing on the proxy; known so that a worker's
    /// credential is told 403 (not its role) rather than 401 (not a credential).
    pub worker_token: Option<Secret>,
    /// Agents silent for longer than this are not listed and their instances not live.
    pub agent_ttl_ms: u64,
    /// How long instance samples (the counters agents report) are kept.
    pub stats_retention_ms: u64,
    /// The least time between two samples of one agent's counters that this proxy
    /// stores (an agent whose instances changed is sampled at once); `0` stores every
    /// heartbeat's. Rates are measured over the time between the two samples a window
    /// takes, so a window shorter than this is measured over this.
    pub stats_every_ms: u64,
    /// How long a configured worker may be without a live instance before `no_instance`
    /// fires, counted from its last sighting, its config change or the proxy's start.
    pub no_instance_grace_ms: u64,
    /// How long an agent may be silent, without having said it leaves, before
    /// `agent_silent` fires.
    pub agent_silent_ms: u64,
    /// How often the alarm rules are evaluated.
    pub alarm_eval_ms: u64,
    /// How long an active alarm's condition must stay away before it resolves, so that
    /// a condition that comes and goes keeps one alarm open.
    pub alarm_resolve_ms: u64,
    /// How long resolved alarms are kept in the history.
    pub alarm_history_ms: u64,
    /// An `http://` URL that each alarm fire and resolve is POSTed to.
    pub alarm_webhook: Option<String>,
    /// How often a waiting `GET /workers/get` looks at the stored version, to see
    /// changes made through other proxies.
    pub feed_poll_ms: u64,
    /// The longest a store connection is waited for before answering 503.
    pub acquire_timeout_ms: u64,
    /// The longest one store operation may take before the request answers 503.
    pub query_timeout_ms: u64,
    /// The most store connections.
    pub max_connections: u32,
    /// HTTP worker threads; `0` is one per core.
    pub http_workers: usize,
    /// Log output format.
    pub log_format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "0.0.0.0".to_owned(),
            port: 7700,
            database_url: None,
            sqlite_path: "damrey-proxy.db".to_owned(),
            token: None,
            admin_token: None,
            agent_token: None,
            read_token: None,
            worker_token: None,
            tls_cert: None,
            tls_key: None,
            agent_ttl_ms: 10_000,
            stats_retention_ms: 600_000,
            stats_every_ms: 5_000,
            no_instance_grace_ms: 3_000,
            agent_silent_ms: 5_000,
            alarm_eval_ms: 500,
            alarm_resolve_ms: 5_000,
            alarm_history_ms: 30 * 86_400_000,
            alarm_webhook: None,
            feed_poll_ms: 100,
            acquire_timeout_ms: 2_000,
            query_timeout_ms: 5_000,
            max_connections: 10,
            http_workers: 0,
            log_format: LogFormat::Text,
        }
    }
}

/// Settings that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file is missing or holds an unknown key, or a value has the wrong kind.
    #[error(transparent)]
    Load(#[from] settings::SettingsError),
    /// The alarm webhook is not a plain `http://` URL (the webhook client speaks plain HTTP only).
    #[error(
        "alarm_webhook {0:?} must be an http:// URL (put a TLS-terminating proxy in front of an https receiver)"
    )]
    Webhook(String),
}

impl Settings {
    /// The certificate and key to serve HTTPS with; none for plain HTTP.
    ///
    /// # Errors
    /// [`TlsError::HalfIdentity`] when only one of them is set.
    pub fn tls_identity(&self) -> Result<Option<Identity>, TlsError> {
        Identity::from_settings(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }

    /// The credentials the proxy accepts: `token` for every role, each role's own token
    /// for that role; none set, everything passes.
    pub fn credentials(&self) -> Credentials {
        Credentials::from_tokens(
            self.token.as_ref(),
            [
                (Role::Admin, self.admin_token.as_ref()),
                (Role::Agent, self.agent_token.as_ref()),
                (Role::Read, self.read_token.as_ref()),
                (Role::Worker, self.worker_token.as_ref()),
            ],
        )
    }

    /// Loads the settings from the process environment and the command line.
    ///
    /// # Errors
    /// [`SettingsError`] when the file is missing or a value has the wrong kind.
    pub fn load(cli: &Cli) -> Result<Settings, SettingsError> {
        Self::load_from(cli, std::env::vars().collect())
    }

    /// Loads the settings from `env` (the environment as a map) and the command line.
    ///
    /// `DATABASE_URL` and `DAMREY_TOKEN` are read by their well-known names; every other
    /// field is `DAMREY_<FIELD>` (for example `DAMREY_AGENT_TTL_MS`).
    ///
    /// # Errors
    /// [`SettingsError`] when the file is missing or a value has the wrong kind.
    pub fn load_from(cli: &Cli, env: HashMap<String, String>) -> Result<Settings, SettingsError> {
        let mut settings: Settings = settings::load(Sources {
            file: cli.config.as_deref(),
            well_known: &[("DATABASE_URL", "database_url")],
            env,
            flags: vec![
                ("port", cli.port.map(|port| port.to_string())),
                ("host", cli.host.clone()),
                ("database_url", cli.database_url.clone()),
                ("alarm_webhook", cli.alarm_webhook.clone()),
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
            &mut settings.read_token,
            &mut settings.worker_token,
        ]);
        settings.database_url = settings.database_url.filter(|url| !url.is_empty());
        settings.alarm_webhook = settings.alarm_webhook.filter(|url| !url.is_empty());
        if let Some(url) = &settings.alarm_webhook
            && !(url.starts_with("http://") && url.len() > "http://".len())
        {
            return Err(SettingsError::Webhook(url.clone()));
        }
        Ok(settings)
    }

    /// The store's URL: the configured one, or the embedded SQLite file (created if missing).
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.sqlite_path),
        }
    }

    /// [`Settings::agent_ttl_ms`] as a duration.
    pub fn agent_ttl(&self) -> Duration {
        Duration::from_millis(self.agent_ttl_ms)
    }

    /// [`Settings::stats_every_ms`] as a duration.
    pub fn stats_every(&self) -> Duration {
        Duration::from_millis(self.stats_every_ms)
    }

    /// [`Settings::stats_retention_ms`] as a duration.
    pub fn stats_retention(&self) -> Duration {
        Duration::from_millis(self.stats_retention_ms)
    }

    /// The alarm evaluator's timings.
    pub fn evaluator(&self) -> EvaluatorSettings {
        EvaluatorSettings {
            every: Duration::from_millis(self.alarm_eval_ms.max(1)),
            no_instance_grace: Duration::from_millis(self.no_instance_grace_ms),
            agent_silent: Duration::from_millis(self.agent_silent_ms),
            resolve_after: Duration::from_millis(self.alarm_resolve_ms),
            retention: self.stats_retention(),
            history: Duration::from_millis(self.alarm_history_ms),
            samples_for: self.stats_every(),
        }
    }

    /// [`Settings::feed_poll_ms`] as a duration.
    pub fn feed_poll(&self) -> Duration {
        Duration::from_millis(self.feed_poll_ms.max(1))
    }

    /// [`Settings::query_timeout_ms`] as a duration.
    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    /// [`Settings::acquire_timeout_ms`] as a duration.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn temp_file(contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "damrey-proxy-settings-{}-{:?}.toml",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let settings = Settings::load_from(&Cli::default(), env(&[])).unwrap();
        assert_eq!(settings.port, 7700);
        assert_eq!(settings.host, "0.0.0.0");
        assert_eq!(settings.database_url, None);
        assert_eq!(settings.token, None);
        assert_eq!(settings.agent_ttl_ms, 10_000);
        assert_eq!(
            (
                settings.stats_retention_ms,
                settings.no_instance_grace_ms,
                settings.agent_silent_ms,
                settings.alarm_eval_ms,
                settings.alarm_resolve_ms,
                settings.alarm_history_ms,
            ),
            (600_000, 3_000, 5_000, 500, 5_000, 2_592_000_000)
        );
        assert_eq!(settings.alarm_webhook, None);
        assert_eq!(settings.store_url(), "sqlite://damrey-proxy.db?mode=rwc");
    }

    #[test]
    fn the_file_beats_defaults_env_beats_the_file_and_flags_beat_env() {
        let file = temp_file("port = 7000\nagent_ttl_ms = 3000\nsqlite_path = \"f.db\"\n");
        let cli = Cli {
            config: Some(file.clone()),
            ..Cli::default()
        };
        let from_file = Settings::load_from(&cli, env(&[])).unwrap();
        assert_eq!((from_file.port, from_file.agent_ttl_ms), (7000, 3000));
        assert_eq!(from_file.sqlite_path, "f.db");

        let vars = env(&[("DAMREY_PORT", "7100"), ("DAMREY_AGENT_TTL_MS", "4000")]);
        let from_env = Settings::load_from(&cli, vars.clone()).unwrap();
        assert_eq!((from_env.port, from_env.agent_ttl_ms), (7100, 4000));

        let cli = Cli {
            port: Some(7200),
            ..cli
        };
        let from_flags = Settings::load_from(&cli, vars).unwrap();
        assert_eq!((from_flags.port, from_flags.agent_ttl_ms), (7200, 4000));
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn well_known_variables_are_read_and_the_flag_wins_over_database_url() {
        let vars = env(&[
            ("DATABASE_URL", "postgres://db/env"),
            ("DAMREY_TOKEN", "s3cret"),
            ("DAMREY_REQUIRE_POSTGRES", "1"),
        ]);
        let settings = Settings::load_from(&Cli::default(), vars.clone()).unwrap();
        assert_eq!(settings.database_url.as_deref(), Some("postgres://db/env"));
        assert_eq!(settings.token, Some(Secret::new("s3cret")));

        let cli = Cli {
            database_url: Some("postgres://db/flag".to_owned()),
            ..Cli::default()
        };
        let settings = Settings::load_from(&cli, vars).unwrap();
        assert_eq!(settings.database_url.as_deref(), Some("postgres://db/flag"));
    }

    #[test]
    fn database_url_beats_the_file_and_damrey_database_url_beats_it() {
        let file = temp_file("database_url = \"postgres://db/file\"\n");
        let cli = Cli {
            config: Some(file.clone()),
            ..Cli::default()
        };
        let from_file = Settings::load_from(&cli, env(&[])).unwrap();
        assert_eq!(
            from_file.database_url.as_deref(),
            Some("postgres://db/file")
        );
        let vars = env(&[("DATABASE_URL", "postgres://db/env")]);
        let from_env = Settings::load_from(&cli, vars).unwrap();
        assert_eq!(from_env.database_url.as_deref(), Some("postgres://db/env"));
        let vars = env(&[
            ("DATABASE_URL", "postgres://db/env"),
            ("DAMREY_DATABASE_URL", "postgres://db/damrey"),
        ]);
        let from_damrey = Settings::load_from(&cli, vars).unwrap();
        assert_eq!(
            from_damrey.database_url.as_deref(),
            Some("postgres://db/damrey")
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn empty_token_and_database_url_mean_unset() {
        let vars = env(&[("DATABASE_URL", ""), ("DAMREY_TOKEN", "")]);
        let settings = Settings::load_from(&Cli::default(), vars).unwrap();
        assert_eq!((settings.database_url, settings.token), (None, None));
    }

    #[test]
    fn no_token_shows_in_the_settings_debug_output() {
        let settings = Settings {
            token: Some(Secret::new("tok-shared")),
            admin_token: Some(Secret::new("tok-admin")),
            agent_token: Some(Secret::new("tok-agent")),
            read_token: Some(Secret::new("tok-read")),
            worker_token: Some(Secret::new("tok-worker")),
            ..Settings::default()
        };
        let debug = format!("{settings:?} {:?}", settings.credentials());
        assert!(!debug.contains("tok-"), "{debug}");
        assert!(debug.contains("Secret(***)"), "{debug}");
    }

    #[test]
    fn the_alarm_webhook_comes_from_the_file_env_or_flag() {
        let file = temp_file("alarm_webhook = \"http://file/hook\"\nagent_silent_ms = 9000\n");
        let cli = Cli {
            config: Some(file.clone()),
            ..Cli::default()
        };
        let from_file = Settings::load_from(&cli, env(&[])).unwrap();
        assert_eq!(from_file.alarm_webhook.as_deref(), Some("http://file/hook"));
        assert_eq!(from_file.agent_silent_ms, 9_000);
        let vars = env(&[("DAMREY_ALARM_WEBHOOK", "http://env/hook")]);
        let from_env = Settings::load_from(&cli, vars.clone()).unwrap();
        assert_eq!(from_env.alarm_webhook.as_deref(), Some("http://env/hook"));
        let cli =
            Cli::try_parse_from(["damrey-proxy", "--alarm-webhook", "http://flag/hook"]).unwrap();
        let cli = Cli {
            config: Some(file.clone()),
            ..cli
        };
        let from_flag = Settings::load_from(&cli, vars).unwrap();
        assert_eq!(from_flag.alarm_webhook.as_deref(), Some("http://flag/hook"));
        for url in ["https://tls/hook", "hook.example.com", "http://"] {
            let loaded =
                Settings::load_from(&Cli::default(), env(&[("DAMREY_ALARM_WEBHOOK", url)]));
            assert!(
                matches!(loaded, Err(SettingsError::Webhook(ref bad)) if bad == url),
                "{url}: {loaded:?}"
            );
        }
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn the_seed_short_port_flag_parses() {
        let cli = Cli::try_parse_from(["damrey-proxy", "-p", "7700"]).unwrap();
        assert_eq!(cli.port, Some(7700));
        let cli =
            Cli::try_parse_from(["damrey-proxy", "--port", "1", "--log-format", "json"]).unwrap();
        assert_eq!((cli.port, cli.log_format), (Some(1), Some(LogFormat::Json)));
    }

    #[test]
    fn a_port_that_is_not_a_number_is_an_error() {
        let error = Settings::load_from(&Cli::default(), env(&[("DAMREY_PORT", "x")])).unwrap_err();
        assert!(format!("{:?}", error).contains("port"), "{error:?}");
    }

    #[test]
    fn a_misspelt_setting_in_the_file_is_refused_by_name() {
        let file = temp_file("agent_tll_ms = 3000\n");
        let cli = Cli {
            config: Some(file.clone()),
            ..Cli::default()
        };
        let error = Settings::load_from(&cli, env(&[])).unwrap_err().to_string();
        std::fs::remove_file(file).unwrap();
        assert!(
            error.contains(r#"unknown setting "agent_tll_ms""#),
            "{error}"
        );
    }

    #[test]
    fn a_bad_log_format_says_which_there_are() {
        let error = Settings::load_from(&Cli::default(), env(&[("DAMREY_LOG_FORMAT", "yaml")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(r#"log_format: "yaml" is not one of text, json"#),
            "{error}"
        );
    }
}
