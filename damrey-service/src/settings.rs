//! The one settings loader of the agent and the proxy: defaults < file < environment <
//! flags, with the checks an operator needs to hear about at start.
//!
//! - A key in the settings file that is no setting is refused by name (a typo such as
//!   `agent_tll_ms` would otherwise be ignored and the default used).
//! - `DAMREY_*` variables are not checked that way: worker processes, scripts and the
//!   example share the prefix (`DAMREY_BIN_DIR`, `DAMREY_WORKER_TOKEN`, ...).
//! - A value of the wrong kind names its setting; a log format names the ones there are.
//! - [`check_host_port`] refuses an address without its port.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file is missing or unreadable, or a value has the wrong kind.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The settings file holds a key that is no setting.
    #[error("{file}: unknown setting {key:?}; the settings are: {known}")]
    UnknownKey {
        /// The settings file.
        file: PathBuf,
        /// The key it holds.
        key: String,
        /// Every setting, comma-separated.
        known: String,
    },
    /// An address setting is not `host:port`.
    #[error("{setting}: {value:?} is not host:port (for example 127.0.0.1:7700)")]
    Address {
        /// The setting's name.
        setting: &'static str,
        /// Its value.
        value: String,
    },
    /// Settings could not be turned into layers (a bug, not an operator's mistake).
    #[error("the default settings cannot be listed")]
    Defaults(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where the settings come from, lowest first after the defaults.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    /// A TOML settings file whose keys are setting names.
    pub file: Option<&'a Path>,
    /// Variables read by a name of their own, as `(variable, setting)`, between the
    /// file and the `DAMREY_*` variables (for example `DATABASE_URL`).
    pub well_known: &'a [(&'a str, &'a str)],
    /// The environment; `DAMREY_<SETTING>` sets a setting.
    pub env: HashMap<String, String>,
    /// Flags given on the command line, as `(setting, value)`.
    pub flags: Vec<(&'static str, Option<String>)>,
}

/// Loads `T` from its defaults and `sources`.
///
/// # Errors
/// [`SettingsError`] when the file is missing, holds an unknown key, or a value has the
/// wrong kind.
pub fn load<T>(sources: Sources<'_>) -> Result<T, SettingsError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let defaults = serde_json::to_value(T::default())
        .map_err(|error| SettingsError::Defaults(error.into()))?;
    let known: Vec<String> = defaults
        .as_object()
        .map(|fields| fields.keys().cloned().collect())
        .unwrap_or_default();
    let mut builder = Config::builder().add_source(
        Config::try_from(&T::default()).map_err(|error| SettingsError::Defaults(error.into()))?,
    );
    if let Some(path) = sources.file {
        check_file_keys(path, &known)?;
        builder = builder.add_source(File::from(path).required(true));
    }
    let well_known: HashMap<String, String> = sources
        .well_known
        .iter()
        .filter_map(|(variable, setting)| {
            let value = sources
                .env
                .get(*variable)
                .filter(|value| !value.is_empty())?;
            Some((setting.to_uppercase(), value.clone()))
        })
        .collect();
    builder = builder
        .add_source(Environment::default().source(Some(well_known)))
        .add_source(
            Environment::with_prefix("DAMREY")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(sources.env)),
        );
    for (setting, value) in sources.flags {
        builder = builder.set_override_option(setting, value)?;
    }
    Ok(builder.build()?.try_deserialize()?)
}

/// Refuses a file key that is none of `known`.
fn check_file_keys(path: &Path, known: &[String]) -> Result<(), SettingsError> {
    let file = Config::builder()
        .add_source(File::from(path).required(true))
        .build()?;
    let keys: HashMap<String, config::Value> = file.try_deserialize()?;
    let mut unknown: Vec<&String> = keys.keys().filter(|key| !known.contains(key)).collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(key) => Err(SettingsError::UnknownKey {
            file: path.to_owned(),
            key: (*key).clone(),
            known: known.join(", "),
        }),
    }
}

/// Refuses `value` unless it is `host:port` with a port from 1 to 65535.
///
/// # Errors
/// [`SettingsError::Address`] naming `setting`.
pub fn check_host_port(setting: &'static str, value: &str) -> Result<(), SettingsError> {
    let valid = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(SettingsError::Address {
            setting,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::telemetry::LogFormat;

    #[derive(Debug, Serialize, Deserialize)]
    struct Example {
        port: u16,
        agent_ttl_ms: u64,
        token: Option<String>,
        log_format: LogFormat,
    }

    impl Default for Example {
        fn default() -> Self {
            Example {
                port: 7700,
                agent_ttl_ms: 10_000,
                token: None,
                log_format: LogFormat::Text,
            }
        }
    }

    fn file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "damrey-settings-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn layers_apply_in_order() {
        let path = file("layers", "port = 1\nagent_ttl_ms = 2\n");
        let loaded: Example = load(Sources {
            file: Some(&path),
            env: HashMap::from([("DAMREY_AGENT_TTL_MS".to_owned(), "3".to_owned())]),
            flags: vec![("port", Some("4".to_owned())), ("token", None)],
            ..Sources::default()
        })
        .unwrap();
        assert_eq!((loaded.port, loaded.agent_ttl_ms), (4, 3));
        assert_eq!((loaded.token, loaded.log_format), (None, LogFormat::Text));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_unknown_key_in_the_file_is_refused_by_name() {
        let path = file("typo", "agent_tll_ms = 3000\n");
        let error = load::<Example>(Sources {
            file: Some(&path),
            ..Sources::default()
        })
        .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, SettingsError::UnknownKey { key, .. } if key == "agent_tll_ms"),
            "{text}"
        );
        assert!(text.contains("agent_ttl_ms"), "lists the settings: {text}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn unknown_damrey_variables_are_left_to_others() {
        let loaded: Example = load(Sources {
            env: HashMap::from([("DAMREY_BIN_DIR".to_owned(), "x".to_owned())]),
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(loaded.port, 7700);
    }

    #[test]
    fn a_bad_log_format_names_the_ones_there_are() {
        let path = file("format", "log_format = \"yaml\"\n");
        for sources in [
            Sources {
                env: HashMap::from([("DAMREY_LOG_FORMAT".to_owned(), "yaml".to_owned())]),
                ..Sources::default()
            },
            Sources {
                file: Some(&path),
                ..Sources::default()
            },
        ] {
            let error = load::<Example>(sources).unwrap_err().to_string();
            assert!(
                error.contains(r#"log_format: "yaml" is not one of text, json"#),
                "{error}"
            );
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_address_wants_its_port() {
        assert!(check_host_port("proxy", "127.0.0.1:7700").is_ok());
        assert!(check_host_port("proxy", "proxy.example:80").is_ok());
        assert!(check_host_port("proxy", "[::1]:7700").is_ok());
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":7700",
            "h:0",
            "h:99999",
            "h:port",
        ] {
            let error = check_host_port("proxy", bad).unwrap_err().to_string();
            assert_eq!(
                error,
                format!("proxy: {bad:?} is not host:port (for example 127.0.0.1:7700)")
            );
        }
    }
}
