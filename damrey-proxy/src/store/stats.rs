//! Instance samples: the counters agents report each heartbeat, stored one row per
//! instance per heartbeat, pruned after the retention, and read back two per instance
//! (the newest and the window's baseline) so that rates come from two reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use damrey_wire::report::{Counters, Heartbeat, InstanceReport, Latency};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, StoreError};

/// The most sample rows one INSERT carries.
const ROWS_PER_INSERT: usize = 64;

/// The columns of a sample that are not step counters; the step counters' columns follow
/// them, named as [`InstanceReport::COUNTERS`] declares.
const SAMPLE_KEY_COLUMNS: [&str; 6] = [
    "agent",
    "instance",
    "worker",
    "at_ms",
    "latency_sum_us",
    "latency_counts",
];

/// Every column of a sample, in the order of the INSERT's parameters.
fn sample_columns() -> impl Iterator<Item = &'static str> {
    SAMPLE_KEY_COLUMNS
        .into_iter()
        .chain(InstanceReport::COUNTERS.iter().copied())
}

/// `INSERT INTO instance_samples (agent, ...) VALUES ` with the columns listed.
static INSERT_SAMPLES: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<_> = sample_columns().collect();
    format!(
        "INSERT INTO instance_samples ({}) VALUES ",
        columns.join(", ")
    )
});

/// Per instance with a sample at or after `$2`: its newest sample (`newest` 1) and the
/// newest at or before `$1` (`newest` 0).
static SAMPLE_PAIRS: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<_> = sample_columns()
        .map(|column| format!("s.{column}"))
        .collect();
    format!(
        "WITH k AS ( \
           SELECT r.agent, r.instance, r.worker, r.latest_ms, \
           (SELECT MAX(b.at_ms) FROM instance_samples b WHERE b.agent = r.agent \
            AND b.instance = r.instance AND b.at_ms <= $1) AS base_ms \
           FROM instance_series r WHERE r.latest_ms >= $2 \
         ) \
         SELECT {columns}, 1 AS newest \
         FROM k JOIN instance_samples s ON s.agent = k.agent \
         AND s.instance = k.instance AND s.at_ms = k.latest_ms AND s.worker = k.worker \
         UNION ALL \
         SELECT {columns}, 0 AS newest \
         FROM k JOIN instance_samples s ON s.agent = k.agent \
         AND s.instance = k.instance AND s.at_ms = k.base_ms AND s.worker = k.worker",
        columns = columns.join(", ")
    )
});

/// A series of samples: agent, instance and worker.
type SeriesKey = (String, u64, String);

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

/// The two samples of one instance that a window needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePair {
    /// The newest sample.
    pub latest: Sample,
    /// The newest sample at or before the window's start; when the instance has none
    /// that old, it attached within the window (counters count from its attach, and the
    /// window is never longer than the retention), so the baseline is all zeros.
    pub baseline: Sample,
}

/// Stores one sample per instance of `heartbeat`, taken at `now_ms`.
pub(super) async fn insert_samples(
    tx: &mut Transaction<'_, Any>,
    heartbeat: &Heartbeat,
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in heartbeat.stats.chunks(ROWS_PER_INSERT) {
        let mut sql = format!(
            "{}{}",
            *INSERT_SAMPLES,
            placeholders(chunk.len(), sample_columns().count())
        );
        // Two heartbeats of one agent within one millisecond: the first one stands.
        sql.push_str(" ON CONFLICT (agent, instance, at_ms) DO NOTHING");
        let mut query = sqlx::query(&sql);
        for report in chunk {
            query = query
                .bind(&heartbeat.agent)
                .bind(stored(report.instance))
                .bind(&report.worker)
                .bind(now_ms)
                .bind(stored(report.latency.sum_us))
                .bind(
                    serde_json::to_string(&report.latency.counts)
                        .expect("a list of numbers always serializes"),
                );
            for (_, value) in report.counts() {
                query = query.bind(stored(value));
            }
        }
        query.execute(&mut **tx).await?;
        let mut sql = format!(
            "INSERT INTO instance_series (agent, instance, worker, latest_ms) VALUES {}",
            placeholders(chunk.len(), 4)
        );
        sql.push_str(
            " ON CONFLICT (agent, instance, worker) DO UPDATE SET latest_ms = excluded.latest_ms",
        );
        let mut query = sqlx::query(&sql);
        for report in chunk {
            query = query
                .bind(&heartbeat.agent)
                .bind(stored(report.instance))
                .bind(&report.worker)
                .bind(now_ms);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
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

impl Store {
    /// For every instance with a sample at or after `oldest_ms`, its newest sample and
    /// the window's baseline: the newest at or before `window_start_ms`, else zeros (see
    /// [`SamplePair::baseline`]). Two rows per instance at most cross the wire, whatever
    /// the window.
    /// Sorted by agent, instance and worker.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails or a sample is unreadable.
    pub async fn sample_pairs(
        &self,
        window_start_ms: i64,
        oldest_ms: i64,
    ) -> Result<Vec<SamplePair>, StoreError> {
        self.bounded(async move {
            // Per instance: its newest sample's time from the series table, and the
            // newest at or before the window's start by an index seek; then the two
            // samples by primary key. Nothing scans the samples kept.
            let rows = sqlx::query(&SAMPLE_PAIRS)
                .bind(window_start_ms)
                .bind(oldest_ms)
                .fetch_all(&self.pool)
                .await?;
            // Per series: the newest sample and the baseline (absent: the instance
            // attached within the window, see `SamplePair::baseline`).
            let mut pairs: BTreeMap<SeriesKey, (Option<Sample>, Option<Sample>)> = BTreeMap::new();
            for row in &rows {
                let newest: i32 = row.try_get("newest")?;
                let sample = sample_from_row(row)?;
                let key = (sample.agent.clone(), sample.instance, sample.worker.clone());
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
                    let baseline = baseline.unwrap_or_else(|| Sample {
                        counters: Counters::default(),
                        latency: Latency::default(),
                        ..latest.clone()
                    });
                    Some(SamplePair { latest, baseline })
                })
                .collect())
        })
        .await
    }

    /// Removes every sample taken before `oldest_ms`, those of agents that no longer
    /// report included. Returns how many went.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn prune_samples(&self, oldest_ms: i64) -> Result<u64, StoreError> {
        self.bounded(async move {
            let done = sqlx::query("DELETE FROM instance_samples WHERE at_ms < $1")
                .bind(oldest_ms)
                .execute(&self.pool)
                .await?;
            sqlx::query("DELETE FROM instance_series WHERE latest_ms < $1")
                .bind(oldest_ms)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}
