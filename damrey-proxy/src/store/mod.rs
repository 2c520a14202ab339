//! The proxy's store: all SQL, the migrator, and the mapping of database failures.
//!
//! One code path serves Postgres and SQLite through sqlx's `Any` driver; every statement
//! is parameterized and sticks to SQL that Postgres, SQLite, CockroachDB and YugabyteDB
//! all run. Every change to the workers bumps the stored config version in the same
//! transaction, and the bump is the transaction's first statement: on Postgres it
//! serializes writers on one row lock, and on SQLite it takes the write lock up front so
//! that the busy timeout, not an immediate `SQLITE_BUSY`, handles contention.
//!
//! The agent registry ([`agents`]) keeps a placement version the same way: every write
//! that changes what `GET /agents` lists bumps it in its own transaction, as its last
//! statement (so the one row's lock is held the shortest), and agents wait on it.
//!
//! Monitoring lives in [`stats`] (the samples agents report) and alarms in [`alarms`].

mod agents;
pub mod alarms;
pub mod placement;
pub mod stats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use damrey_wire::spec::{AlarmRules, CommandSpec};
use damrey_wire::{WorkerSpec, spec::Mpu};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Any, AnyPool, Row, Transaction};

use damrey_wire::rest::AgentEntry;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (or a database that speaks its protocol).
    Postgres,
    /// The embedded SQLite file.
    Sqlite,
}

impl Backend {
    /// The backend a URL names.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for anything but `postgres://`, `postgresql://` and `sqlite:`.
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            Err(StoreError::UnsupportedUrl(scheme))
        }
    }
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A worker of that name is already stored.
    #[error("worker {0:?} already exists")]
    Conflict(String),
    /// No worker of that name is stored.
    #[error("no worker named {0:?}")]
    NotFound(String),
    /// The database cannot be reached or is too busy right now; retrying later may work.
    #[error("the store is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// An operation took longer than the query timeout.
    #[error("the store did not answer within {0:?}")]
    TimedOut(Duration),
    /// Any other database failure.
    #[error("a store query failed")]
    Query(#[source] sqlx::Error),
    /// A stored row could not be read back as a worker.
    #[error("stored worker {name:?} is unreadable")]
    Corrupt {
        /// The worker's name.
        name: String,
        /// Why its commands or alarms do not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A stored agent's instance list could not be read back.
    #[error("stored agent {agent:?} has an unreadable instance list")]
    CorruptAgent {
        /// The agent's address.
        agent: String,
        /// Why its instances do not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The task that writes batches has stopped (the proxy is shutting down).
    #[error("the store's writer has stopped")]
    Stopped,
    /// A batched write failed: every request of the batch answers the one cause.
    #[error(transparent)]
    Batch(Arc<StoreError>),
    /// A stored sample's latency histogram could not be read back.
    #[error("stored sample of instance {instance} of agent {agent:?} is unreadable")]
    CorruptSample {
        /// The reporting agent.
        agent: String,
        /// The instance's number.
        instance: i64,
        /// Why its buckets do not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A stored alarm names a rule this proxy does not know.
    #[error("stored alarm {id} has the unknown rule {rule:?}")]
    UnknownRule {
        /// The alarm's id.
        id: i64,
        /// The rule as stored.
        rule: String,
    },
    /// The migrations could not be applied.
    #[error("applying the migrations failed")]
    Migrate(#[source] MigrateError),
    /// The URL names a database the proxy does not support.
    #[error("unsupported database URL scheme {0:?}; use postgres:// or sqlite://")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the store could not be reached or did not answer in time, rather than
    /// refusing this operation: trying the same again later may work.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) | StoreError::TimedOut(_) | StoreError::Stopped => true,
            StoreError::Batch(cause) => cause.is_unavailable(),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Query(error)
        }
    }
}

/// Whether a database error means "not reachable right now" rather than "wrong query".
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => match e.code().as_deref() {
            // Postgres: connection exceptions, shutdown, starting up, too many
            // connections, serialization failures, deadlocks. SQLite: busy, locked.
            Some(code) => {
                code.starts_with("08")
                    || matches!(
                        code,
                        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "5" | "6"
                    )
            }
            None => false,
        },
        _ => false,
    }
}

/// Every stored worker and the config version they belong to, read in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The config version; it grows by one with every change.
    pub version: i64,
    /// The workers, sorted by name (byte order).
    pub workers: Vec<WorkerSpec>,
}

/// The result of a change: the worker as stored (or as removed) and the new version.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The config version this change created.
    pub version: i64,
    /// The worker as stored, or as it was before removal.
    pub worker: WorkerSpec,
}

/// The listed agents at one placement version: all of them, or the changes since an
/// earlier version.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Moves whenever the listing changes by a write: an agent listed (new, or back
    /// after it was found silent), other instances, an agent leaving, forgotten, or
    /// found silent past the TTL.
    pub version: i64,
    /// `None`: `agents` lists every listed agent. `Some(V)`: only those whose listing
    /// changed after version V, and `gone` those listed at V and no longer.
    pub since: Option<i64>,
    /// The agents, sorted by address.
    pub agents: Vec<AgentEntry>,
    /// With `since`, the addresses no longer listed, sorted.
    pub gone: Vec<String>,
}

impl Placement {
    /// Every listed agent at `version`.
    pub fn whole(version: i64, agents: Vec<AgentEntry>) -> Placement {
        Placement {
            version,
            since: None,
            agents,
            gone: Vec::new(),
        }
    }
}

/// A write to the agent registry: what it answers, and the placement version when the
/// write moved it (to wake this proxy's waiters at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Registered<T> {
    /// The write's answer.
    pub value: T,
    /// The new placement version, when the write changed the placement.
    pub placement: Option<i64>,
}

/// A worker's alarm thresholds as the alarm evaluator needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerAlarmRules {
    /// The worker's name.
    pub worker: String,
    /// Its own thresholds, or the defaults.
    pub rules: AlarmRules,
    /// When its config was last added or changed (ms since the Unix epoch).
    pub updated_ms: i64,
}

/// The worker configurations and the agent registry, in Postgres or SQLite.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    query_timeout: Duration,
    /// The last snapshot read, served again while the stored version is unchanged.
    latest: Arc<Mutex<Option<Arc<Snapshot>>>>,
    /// The placement held in memory, served while its version is current.
    placement_cache: Arc<placement::PlacementCache>,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://...` or `sqlite://...`.
    pub url: String,
    /// The most connections.
    pub max_connections: u32,
    /// How long a request waits for a connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
    /// The longest one store operation may take before it counts as unavailable.
    pub query_timeout: Duration,
}

const WORKER_COLUMNS: &str = "name, agent, mpu, commands, alarms, outlier";

impl Store {
    /// Opens a pool on `options.url` (connections are made when first needed).
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] or a malformed URL.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&options.url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // A connection that died in an outage is found and replaced here, so
            // the store recovers by itself when the database is back.
            .test_before_acquire(true)
            .connect_lazy(&options.url)?;
        Ok(Store {
            pool,
            backend,
            query_timeout: options.query_timeout,
            latest: Arc::default(),
            placement_cache: Arc::default(),
        })
    }

    /// Opens the store and applies the migrations.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be reached or a migration fails.
    pub async fn connect(options: &StoreOptions) -> Result<Store, StoreError> {
        let store = Store::open(options)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet; running it again changes nothing.
    ///
    /// # Errors
    /// [`StoreError::Migrate`] when a migration fails or the database cannot be reached.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => {
                // WAL lets readers go on while one writer writes; it is a property of the file.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&self.pool)
                    .await?;
                &SQLITE_MIGRATIONS
            }
        };
        migrator.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// Runs `work`, giving up after the query timeout: a database that stops answering
    /// mid-query (a network partition rather than a restart) makes a 503, not a hang.
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.query_timeout, work)
            .await
            .unwrap_or(Err(StoreError::TimedOut(self.query_timeout)))
    }

    /// The backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tests and tools.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection; later calls fail as unavailable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
        .await
    }

    /// The first of this proxy's migrations that the store has not applied, if any: a
    /// store behind this binary's schema (restored from an old backup, or not migrated
    /// yet) answers, but not to every query this proxy makes.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or keeps no migration history.
    pub async fn unapplied_migration(&self) -> Result<Option<i64>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?;
            let applied = rows
                .iter()
                .map(|row| row.try_get::<i64, _>("version"))
                .collect::<Result<std::collections::HashSet<i64>, _>>()?;
            let migrator = match self.backend {
                Backend::Postgres => &POSTGRES_MIGRATIONS,
                Backend::Sqlite => &SQLITE_MIGRATIONS,
            };
            Ok(migrator
                .iter()
                .filter(|migration| migration.migration_type.is_up_migration())
                .map(|migration| migration.version)
                .find(|version| !applied.contains(version)))
        })
        .await
    }

    /// The current config version.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn version(&self) -> Result<i64, StoreError> {
        self.bounded(async move {
            let row = sqlx::query("SELECT version FROM config_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("version")?)
        })
        .await
    }

    /// The current placement version.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn placement_version(&self) -> Result<i64, StoreError> {
        self.bounded(async move {
            let row = sqlx::query("SELECT version FROM placement_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("version")?)
        })
        .await
    }

    /// Every worker and the version, consistent with each other.
    ///
    /// Every change bumps the version in its own transaction, so a snapshot read at
    /// version N holds exactly version N's workers: while the stored version is still
    /// N, the last snapshot is served again and only the version is read. Several
    /// proxies on one database stay correct, since each checks the stored version.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let version = self.version().await?;
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(latest) = latest.filter(|latest| latest.version == version) {
            return Ok(latest);
        }
        let fresh = Arc::new(self.read_snapshot().await?);
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// Reads every worker and the version in one statement.
    async fn read_snapshot(&self) -> Result<Snapshot, StoreError> {
        self.bounded(async move {
            // One statement, so one snapshot on every backend, even at READ COMMITTED.
            let rows = sqlx::query(
                "SELECT c.version, w.name, w.agent, w.mpu, w.commands, w.alarms, w.outlier \
                 FROM config_version c LEFT JOIN workers w ON 1 = 1 WHERE c.id = 1",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut version = 0;
            let mut workers = Vec::with_capacity(rows.len());
            for row in rows {
                version = row.try_get("version")?;
                if row.try_get::<Option<String>, _>("name")?.is_some() {
                    workers.push(worker_from_row(&row)?);
                }
            }
            workers.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Snapshot { version, workers })
        })
        .await
    }

    /// The worker called `name`, if stored.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn worker(&self, name: &str) -> Result<Option<WorkerSpec>, StoreError> {
        self.bounded(async move {
            let row = sqlx::query(&format!(
                "SELECT {WORKER_COLUMNS} FROM workers WHERE name = $1"
            ))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(worker_from_row).transpose()
        })
        .await
    }

    /// Stores a new worker.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken, or a database failure.
    pub async fn add_worker(&self, spec: &WorkerSpec) -> Result<Change, StoreError> {
        self.bounded(async move {
            let commands = commands_json(spec);
            let now = now_ms();
            let mut tx = self.pool.begin().await?;
            let version = bump_version(&mut tx).await?;
            let inserted = sqlx::query(
                "INSERT INTO workers \
                 (name, agent, mpu, commands, alarms, outlier, version, created_ms, updated_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&spec.name)
            .bind(&spec.agent)
            .bind(i64::from(spec.mpu.0))
            .bind(&commands)
            .bind(alarms_json(spec))
            .bind(outlier_json(spec))
            .bind(version)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(StoreError::Conflict(spec.name.clone()));
                }
                other => other?,
            };
            tx.commit().await?;
            Ok(Change {
                version,
                worker: spec.clone(),
            })
        })
        .await
    }

    /// Replaces a stored worker's configuration.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when no worker has that name, or a database failure.
    pub async fn change_worker(&self, spec: &WorkerSpec) -> Result<Change, StoreError> {
        self.bounded(async move {
            let commands = commands_json(spec);
            let mut tx = self.pool.begin().await?;
            let version = bump_version(&mut tx).await?;
            let row = sqlx::query(&format!(
                "UPDATE workers SET agent = $2, mpu = $3, commands = $4, alarms = $5, \
                 outlier = $6, version = $7, updated_ms = $8 WHERE name = $1 RETURNING {WORKER_COLUMNS}"
            ))
            .bind(&spec.name)
            .bind(&spec.agent)
            .bind(i64::from(spec.mpu.0))
            .bind(&commands)
            .bind(alarms_json(spec))
            .bind(outlier_json(spec))
            .bind(version)
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(spec.name.clone()));
            };
            let worker = worker_from_row(&row)?;
            tx.commit().await?;
            Ok(Change { version, worker })
        })
        .await
    }

    /// Removes a worker and returns it as it was.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when no worker has that name, or a database failure.
    pub async fn delete_worker(&self, name: &str) -> Result<Change, StoreError> {
        self.bounded(async move {
            let mut tx = self.pool.begin().await?;
            let version = bump_version(&mut tx).await?;
            let row = sqlx::query(&format!(
                "DELETE FROM workers WHERE name = $1 RETURNING {WORKER_COLUMNS}"
            ))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(name.to_owned()));
            };
            let worker = worker_from_row(&row)?;
            tx.commit().await?;
            Ok(Change { version, worker })
        })
        .await
    }

    /// Every stored worker's alarm thresholds and when its config last changed.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or a stored `alarms` object is unreadable.
    pub async fn worker_alarm_rules(&self) -> Result<Vec<WorkerAlarmRules>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query("SELECT name, alarms, updated_ms FROM workers ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|row| {
                    let worker: String = row.try_get("name")?;
                    let rules = alarms_from_column(&worker, row.try_get("alarms")?)?;
                    Ok(WorkerAlarmRules {
                        rules: rules.unwrap_or_default(),
                        updated_ms: row.try_get("updated_ms")?,
                        worker,
                    })
                })
                .collect()
        })
        .await
    }
}

/// Bumps the config version inside `tx` and returns the new one.
async fn bump_version(tx: &mut Transaction<'_, Any>) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("version")?)
}

fn commands_json(spec: &WorkerSpec) -> String {
    serde_json::to_string(&spec.commands).expect("commands are plain strings and always serialize")
}

/// The worker's `alarms` object as JSON, or `None` (SQL NULL) when it has none.
fn alarms_json(spec: &WorkerSpec) -> Option<String> {
    spec.alarms.map(|alarms| {
        serde_json::to_string(&alarms).expect("alarm rules are numbers and always serialize")
    })
}

/// The worker's `outlier` object as JSON, or `None` (SQL NULL) when it has none.
fn outlier_json(spec: &WorkerSpec) -> Option<String> {
    spec.outlier.map(|outlier| {
        serde_json::to_string(&outlier).expect("outlier rules are numbers and always serialize")
    })
}

/// A stored JSON column (`alarms`, `outlier`) read back; `name` names the row in errors.
fn json_from_column<T: serde::de::DeserializeOwned>(
    name: &str,
    column: Option<String>,
) -> Result<Option<T>, StoreError> {
    column
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|source| StoreError::Corrupt {
            name: name.to_owned(),
            source,
        })
}

/// The stored `alarms` column read back; `name` names the row in errors.
fn alarms_from_column(
    name: &str,
    alarms: Option<String>,
) -> Result<Option<AlarmRules>, StoreError> {
    json_from_column(name, alarms)
}

fn worker_from_row(row: &AnyRow) -> Result<WorkerSpec, StoreError> {
    let name: String = row.try_get("name")?;
    let commands: String = row.try_get("commands")?;
    let commands: Vec<CommandSpec> =
        serde_json::from_str(&commands).map_err(|source| StoreError::Corrupt {
            name: name.clone(),
            source,
        })?;
    let mpu: i64 = row.try_get("mpu")?;
    let alarms = alarms_from_column(&name, row.try_get("alarms")?)?;
    let outlier = json_from_column(&name, row.try_get("outlier")?)?;
    Ok(WorkerSpec {
        name,
        agent: row.try_get("agent")?,
        mpu: Mpu(u32::try_from(mpu).unwrap_or(u32::MAX)),
        commands,
        alarms,
        outlier,
    })
}

/// A duration in whole milliseconds, as the store keeps times.
fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
