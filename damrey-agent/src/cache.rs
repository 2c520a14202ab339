//! The configs an agent keeps on its disk ("fail static", as Consul agents do): every
//! config version taken from the proxy is written to one file, and an agent that starts
//! while the proxy is down routes from it instead of refusing every worker.
//!
//! The file holds exactly what `GET /workers/get` answered. It is replaced atomically
//! (written to a temporary file, flushed to disk, renamed over the old one), so a crash
//! mid-write leaves the previous version, never half a file. Its name carries the
//! agent's advertised address, so agents sharing a directory keep apart.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use damrey_wire::rest::WorkerList;

/// The file of one agent's cached configs.
#[derive(Debug, Clone)]
pub struct ConfigCache {
    path: PathBuf,
    /// Beside the configs: the agents the proxy listed lately.
    agents_path: PathBuf,
}

/// A cache that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file exists but could not be read.
    #[error("cannot read the config cache {path}")]
    Read {
        /// The cache file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a config list (cut short, edited, or from elsewhere).
    #[error("the config cache {path} is corrupt")]
    Corrupt {
        /// The cache file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("cannot write the config cache {path}")]
    Write {
        /// The cache file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ConfigCache {
    /// The cache of the agent advertised as `agent`, in directory `dir`.
    pub fn new(dir: &Path, agent: &str) -> ConfigCache {
        let agent: String = agent
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        ConfigCache {
            path: dir.join(format!("configs-{agent}.json")),
            agents_path: dir.join(format!("agents-{agent}.json")),
        }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached configs; `None` when there is no cache yet.
    ///
    /// # Errors
    /// [`CacheError::Read`] or [`CacheError::Corrupt`].
    pub fn load(&self) -> Result<Option<WorkerList>, CacheError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CacheError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CacheError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Replaces the cached configs with `list`, atomically; blocks on the disk.
    ///
    /// # Errors
    /// [`CacheError::Write`].
    pub fn store(&self, list: &WorkerList) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(list).expect("configs always serialize");
        replace(&self.path, &bytes).map_err(|source| CacheError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The agents the proxy listed lately, as last stored (see [`crate::known`]); empty
    /// when none were.
    ///
    /// # Errors
    /// [`CacheError::Read`] or [`CacheError::Corrupt`].
    pub fn load_agents(&self) -> Result<Vec<String>, CacheError> {
        match std::fs::read(&self.agents_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CacheError::Corrupt {
                path: self.agents_path.clone(),
                source,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(CacheError::Read {
                path: self.agents_path.clone(),
                source,
            }),
        }
    }

    /// Replaces the stored agents with `agents`, atomically; blocks on the disk.
    ///
    /// # Errors
    /// [`CacheError::Write`].
    pub fn store_agents(&self, agents: &[String]) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(agents).expect("names always serialize");
        replace(&self.agents_path, &bytes).map_err(|source| CacheError::Write {
            path: self.agents_path.clone(),
            source,
        })
    }
}

/// Replaces the file at `path` with `bytes`: a crash leaves the old file or the new one.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension("json.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    // On disk before the rename makes it the file: a power cut then leaves the old file
    // or the new one, whole.
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename itself lives in the directory.
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use damrey_actors::WorkerSpec;

    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("damrey-cache-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn list(version: i64) -> WorkerList {
        WorkerList {
            version,
            workers: vec![WorkerSpec::new("add").command("sqsum", "square")],
            warnings: Default::default(),
        }
    }

    #[test]
    fn stored_configs_load_back_and_replace_the_previous_ones() {
        let dir = temp_dir();
        let cache = ConfigCache::new(&dir.join("state"), "127.0.0.1:7701");

        cache.store(&list(3)).unwrap();
        cache.store(&list(4)).unwrap();

        assert_eq!(cache.load().unwrap(), Some(list(4)));
        let names: Vec<_> = std::fs::read_dir(dir.join("state"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["configs-127.0.0.1_7701.json"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_file_is_no_cache_and_a_corrupt_one_is_an_error() {
        let dir = temp_dir();
        let cache = ConfigCache::new(&dir, "h:1");
        assert_eq!(cache.load().unwrap(), None);

        std::fs::write(cache.path(), b"{\"version\":1,\"work").unwrap();

        assert!(matches!(cache.load(), Err(CacheError::Corrupt { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn agents_sharing_a_directory_have_their_own_files() {
        let dir = Path::new("state");
        assert_ne!(
            ConfigCache::new(dir, "10.0.0.1:7701").path(),
            ConfigCache::new(dir, "10.0.0.2:7701").path()
        );
        assert_eq!(
            ConfigCache::new(dir, "[::1]:7701").path(),
            Path::new("state/configs-___1__7701.json")
        );
    }
}
