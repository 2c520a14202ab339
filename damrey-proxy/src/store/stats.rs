//! Samples: the counters agents report each heartbeat, stored one row per series per
//! heartbeat, pruned after the retention, and read back two per series (the newest and
//! the window's baseline) so that rates come from two reports. Two kinds of series share
//! that machinery ([`SampleTable`]): an instance's step counters and latency
//! (`instance_samples`), and a worker's routing counters on one agent (`route_samples`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use damrey_wire::report::{Counters, Heartbeat, InstanceReport, Latency, Routing};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError};

/// The most sample rows one INSERT carries: a batch of heartbeats' samples in a few
/// statements, within the parameters SQLite takes in one (32,766).
const ROWS_PER_INSERT: usize = 512;

/// A table of samples and the table of its series' newest sample times.
struct SampleTable {
    /// The samples: one row per series per heartbeat, primary key `seek` and `at_ms`.
    samples: &'static str,
    /// One row per series with its newest sample's time (`latest_ms`), keyed by `key`.
    series: &'static str,
    /// The columns that name a series.
    key: &'static [&'static str],
    /// The key columns that lead the samples' primary key, before `at_ms`: the
    /// baseline's index seek.
    seek: &'static [&'static str],
    /// The columns after the key and `at_ms`, in the order of the INSERT's parameters.
    values: &'static [&'static [&'static str]],
    /// The INSERT of samples ([`SampleTable::insert_sql`]), made once.
    insert_sql: LazyLock<String>,
    /// The window query ([`SampleTable::pairs_sql`]), made once.
    pairs_sql: LazyLock<String>,
}

/// An instance's samples; the step counters' columns are named as
/// [`InstanceReport::COUNTERS`] declares.
static INSTANCES: SampleTable = SampleTable {
    samples: "instance_samples",
    series: "instance_series",
    key: &["agent", "instance", "worker"],
    seek: &["agent", "instance"],
    values: &[
        &["latency_sum_us", "latency_counts"],
        InstanceReport::COUNTERS,
    ],
    insert_sql: LazyLock::new(|| INSTANCES.insert_sql()),
    pairs_sql: LazyLock::new(|| INSTANCES.pairs_sql()),
};

/// A worker's routing samples on one agent; the columns are named as
/// [`Routing::COUNTERS`] declares.
static ROUTES: SampleTable = SampleTable {
    samples: "route_samples",
    series: "route_series",
    key: &["agent", "worker"],
    seek: &["agent", "worker"],
    values: &[Routing::COUNTERS],
    insert_sql: LazyLock::new(|| ROUTES.insert_sql()),
    pairs_sql: LazyLock::new(|| ROUTES.pairs_sql()),
};

/// Both kinds of samples, for what applies to every one (pruning, forgetting an agent).
static TABLES: [&SampleTable; 2] = [&INSTANCES, &ROUTES];

/// A value bound to a statement.
enum Cell {
    Text(String),
    Int(i64),
}

impl Cell {
    /// Binds the value as the query's next parameter.
    fn bind<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        match self {
            Cell::Text(text) => query.bind(text.clone()),
            Cell::Int(value) => query.bind(*value),
        }
    }
}

impl SampleTable {
    /// Every column of a sample, in the order of the INSERT's parameters.
    fn columns(&self) -> impl Iterator<Item = &'static str> {
        self.key
            .iter()
            .copied()
            .chain(["at_ms"])
            .chain(self.values.iter().flat_map(|values| values.iter().copied()))
    }

    /// `INSERT INTO samples (agent, ...) VALUES ` with the columns listed.
    fn insert_sql(&self) -> String {
        let columns: Vec<_> = self.columns().collect();
        format!(
            "INSERT INTO {} ({}) VALUES ",
            self.samples,
            columns.join(", ")
        )
    }

    /// Per series with a sample at or after `$2`: its newest sample (`newest` 1) and the
    /// newest at or before `$1` (`newest` 0). Per series: its newest sample's time from
    /// the series table, and the newest at or before the window's start by an index
    /// seek; then the two samples by primary key. Nothing scans the samples kept.
    fn pairs_sql(&self) -> String {
        let columns: Vec<_> = self.columns().map(|column| format!("s.{column}")).collect();
        let key = |table: &str| -> Vec<String> {
            self.key
                .iter()
                .map(|column| format!("{table}.{column}"))
                .collect()
        };
        let seek: Vec<_> = self
            .seek
            .iter()
            .map(|column| format!("b.{column} = r.{column} AND "))
            .collect();
        let join: Vec<_> = self
            .key
            .iter()
            .map(|column| format!("s.{column} = k.{column} AND "))
            .collect();
        format!(
            "WITH k AS ( \
               SELECT {series_key}, r.latest_ms, \
               (SELECT MAX(b.at_ms) FROM {samples} b WHERE {seek}b.at_ms <= $1) AS base_ms \
               FROM {series} r WHERE r.latest_ms >= $2 \
             ) \
             SELECT {columns}, 1 AS newest \
             FROM k JOIN {samples} s ON {join}s.at_ms = k.latest_ms \
             UNION ALL \
             SELECT {columns}, 0 AS newest \
             FROM k JOIN {samples} s ON {join}s.at_ms = k.base_ms",
            series_key = key("r").join(", "),
            samples = self.samples,
            series = self.series,
            seek = seek.concat(),
            columns = columns.join(", "),
            join = join.concat(),
        )
    }

    /// Stores `rows` (each one's key, then its values) as samples taken at `now_ms`, and
    /// moves their series' newest time.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Any>,
        rows: &[Vec<Cell>],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let mut sql = format!(
                "{}{}",
                *self.insert_sql,
                placeholders(chunk.len(), self.columns().count())
            );
            // Two heartbeats of one agent within one millisecond: the first one stands.
            let _ = write!(
                sql,
                " ON CONFLICT ({}, at_ms) DO NOTHING",
                self.seek.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                let (key, values) = row.split_at(self.key.len());
                for cell in key {
                    query = cell.bind(query);
                }
                query = query.bind(now_ms);
                for cell in values {
                    query = cell.bind(query);
                }
            }
            query.execute(&mut **tx).await?;
            let key = self.key.join(", ");
            let mut sql = format!(
                "INSERT INTO {} ({key}, latest_ms) VALUES {}",
                self.series,
                placeholders(chunk.len(), self.key.len() + 1)
            );
            let _ = write!(
                sql,
                " ON CONFLICT ({key}) DO UPDATE SET latest_ms = excluded.latest_ms"
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                for cell in &row[..self.key.len()] {
                    query = cell.bind(query);
                }
                query = query.bind(now_ms);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// One instance's report as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The agent that reported it.
    pub agent: String,
    /// The instance's number on that agent.
    pub instance: u64,
    /// The instance's worker.
    pub worker: String,
    /// When the proxy received it (ms since the Unix epoch).
    pub at_ms: i64,
    /// Its cumulative counters.
    pub counters: Counters,
    /// Its cumulative latency histogram.
    pub latency: Latency,
}

/// One worker's routing counters on one agent, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSample {
    /// The agent that reported them.
    pub agent: String,
    /// The worker.
    pub worker: String,
    /// When the proxy received them (ms since the Unix epoch).
    pub at_ms: i64,
    /// The counters, cumulative since the agent's run started.
    pub routing: Routing,
}

/// The two samples of one series that a window needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<S> {
    /// The newest sample.
    pub latest: S,
    /// The newest sample at or before the window's start; when the series has none that
    /// old, it started within the window (counters count from the instance's attach or
    /// the agent's start, and the window is never longer than the retention), so the
    /// baseline is all zeros.
    pub baseline: S,
}

/// An instance's two samples.
pub type SamplePair = Pair<Sample>;

/// A worker's two routing samples on one agent.
pub type RoutePair = Pair<RouteSample>;

/// Stores one sample per instance of each of `heartbeats`, and one per worker of their
/// routing counters, taken at `now_ms`.
pub(super) async fn insert_samples(
    tx: &mut Transaction<'_, Any>,
    heartbeats: &[&Heartbeat],
    now_ms: i64,
) -> Result<(), StoreError> {
    let instances: Vec<Vec<Cell>> = heartbeats
        .iter()
        .flat_map(|heartbeat| {
            heartbeat.stats.iter().map(|report| {
                [
                    Cell::Text(heartbeat.agent.clone()),
                    Cell::Int(stored(report.instance)),
                    Cell::Text(report.worker.clone()),
                    Cell::Int(stored(report.latency.sum_us)),
                    Cell::Text(
                        serde_json::to_string(&report.latency.counts)
                            .expect("a list of numbers always serializes"),
                    ),
                ]
                .into_iter()
                .chain(report.counts().map(|(_, value)| Cell::Int(stored(value))))
                .collect()
            })
        })
        .collect();
    INSTANCES.insert(tx, &instances, now_ms).await?;
    let routes: Vec<Vec<Cell>> = heartbeats
        .iter()
        .flat_map(|heartbeat| {
            heartbeat.routing.iter().map(|(worker, routing)| {
                [
                    Cell::Text(heartbeat.agent.clone()),
                    Cell::Text(worker.clone()),
                ]
                .into_iter()
                .chain(routing.counts().map(|(_, value)| Cell::Int(stored(value))))
                .collect()
            })
        })
        .collect();
    ROUTES.insert(tx, &routes, now_ms).await
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` parameters each.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut sql = String::new();
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 1..=columns {
            let separator = if column == columns { ")" } else { ", " };
            let _ = write!(sql, "${}{separator}", row * columns + column);
        }
    }
    sql
}

/// A counter as stored: BIGINT holds up to `i64::MAX`, which the API checks for.
fn stored(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored BIGINT read back as a counter.
fn counter(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let value: i64 = row.try_get(column)?;
    Ok(u64::try_from(value).unwrap_or_default())
}

fn sample_from_row(row: &AnyRow) -> Result<Sample, StoreError> {
    let agent: String = row.try_get("agent")?;
    let instance: i64 = row.try_get("instance")?;
    let counts: String = row.try_get("latency_counts")?;
    let counts: Vec<u64> =
        serde_json::from_str(&counts).map_err(|source| StoreError::CorruptSample {
            agent: agent.clone(),
            instance,
            source,
        })?;
    let mut report = InstanceReport::new(
        row.try_get("worker")?,
        u64::try_from(instance).unwrap_or_default(),
        Latency {
            sum_us: counter(row, "latency_sum_us")?,
            counts,
        },
    );
    for (column, value) in report.counts_mut() {
        *value = counter(row, column)?;
    }
    Ok(Sample {
        agent,
        at_ms: row.try_get("at_ms")?,
        counters: Counters::of(&report),
        instance: report.instance,
        worker: report.worker,
        latency: report.latency,
    })
}

fn route_from_row(row: &AnyRow) -> Result<RouteSample, StoreError> {
    let mut routing = Routing::default();
    for (column, value) in routing.counts_mut() {
        *value = counter(row, column)?;
    }
    Ok(RouteSample {
        agent: row.try_get("agent")?,
        worker: row.try_get("worker")?,
        at_ms: row.try_get("at_ms")?,
        routing,
    })
}

impl Store {
    /// The rows of `table`'s window query ([`SampleTable::pairs_sql`]) read by `read`
    /// into each series' pair, sorted by series key; `zero` makes the baseline of a
    /// series that started within the window (see [`Pair::baseline`]) from its newest
    /// sample.
    async fn pairs<K: Ord, S>(
        &self,
        table: &SampleTable,
        window_start_ms: i64,
        oldest_ms: i64,
        read: impl Fn(&AnyRow) -> Result<(K, S), StoreError>,
        zero: impl Fn(&S) -> S,
    ) -> Result<Vec<Pair<S>>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query(&table.pairs_sql)
                .bind(window_start_ms)
                .bind(oldest_ms)
                .fetch_all(&self.pool)
                .await?;
            let mut pairs: BTreeMap<K, (Option<S>, Option<S>)> = BTreeMap::new();
            for row in &rows {
                let newest: i32 = row.try_get("newest")?;
                let (key, sample) = read(row)?;
                let slot = pairs.entry(key).or_default();
                if newest == 1 {
                    slot.0 = Some(sample);
                } else {
                    slot.1 = Some(sample);
                }
            }
            Ok(pairs
                .into_values()
                .filter_map(|(latest, baseline)| {
                    let latest = latest?;
                    let baseline = baseline.unwrap_or_else(|| zero(&latest));
                    Some(Pair { latest, baseline })
                })
                .collect())
        })
        .await
    }

    /// For every instance with a sample at or after `oldest_ms`, its newest sample and
    /// the window's baseline: the newest at or before `window_start_ms`, else zeros (see
    /// [`Pair::baseline`]). Two rows per instance at most cross the wire, whatever the
    /// window. Sorted by agent, instance and worker.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or a sample is unreadable.
    pub async fn sample_pairs(
        &self,
        window_start_ms: i64,
        oldest_ms: i64,
    ) -> Result<Vec<SamplePair>, StoreError> {
        let read = |row: &AnyRow| {
            let sample = sample_from_row(row)?;
            let key = (sample.agent.clone(), sample.instance, sample.worker.clone());
            Ok((key, sample))
        };
        let zero = |latest: &Sample| Sample {
            counters: Counters::default(),
            latency: Latency::default(),
            ..latest.clone()
        };
        self.pairs(&INSTANCES, window_start_ms, oldest_ms, read, zero)
            .await
    }

    /// As [`Store::sample_pairs`], for every worker's routing counters on every agent
    /// that reported them at or after `oldest_ms`. Sorted by agent and worker.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn route_pairs(
        &self,
        window_start_ms: i64,
        oldest_ms: i64,
    ) -> Result<Vec<RoutePair>, StoreError> {
        let read = |row: &AnyRow| {
            let sample = route_from_row(row)?;
            Ok(((sample.agent.clone(), sample.worker.clone()), sample))
        };
        let zero = |latest: &RouteSample| RouteSample {
            routing: Routing::default(),
            ..latest.clone()
        };
        self.pairs(&ROUTES, window_start_ms, oldest_ms, read, zero)
            .await
    }

    /// Removes every sample taken before `oldest_ms`, those of agents that no longer
    /// report included. Returns how many went.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn prune_samples(&self, oldest_ms: i64) -> Result<u64, StoreError> {
        self.bounded(async move {
            let mut removed = 0;
            for table in TABLES {
                let done = sqlx::query(&format!("DELETE FROM {} WHERE at_ms < $1", table.samples))
                    .bind(oldest_ms)
                    .execute(&self.pool)
                    .await?;
                removed += done.rows_affected();
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE latest_ms < $1",
                    table.series
                ))
                .bind(oldest_ms)
                .execute(&self.pool)
                .await?;
            }
            Ok(removed)
        })
        .await
    }
}

/// Removes `agent`'s samples and series, of every kind, within `tx`. Returns how many
/// rows went.
pub(super) async fn forget_samples(
    tx: &mut Transaction<'_, Any>,
    agent: &str,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    for table in TABLES {
        for name in [table.samples, table.series] {
            removed += sqlx::query(&format!("DELETE FROM {name} WHERE agent = $1"))
                .bind(agent)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
    }
    Ok(removed)
}
