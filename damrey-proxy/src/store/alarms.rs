//! Alarms in the store: fired and resolved with one statement each, so that several
//! proxies evaluating the same rules on one database make each transition once.
//!
//! At most one alarm per key is active, by a partial unique index on `key WHERE
//! resolved_ms IS NULL`: firing is an INSERT that does nothing on conflict, resolving an
//! UPDATE of the active row. The proxy whose statement changed a row made the transition.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::alarm::{Alarm, Condition, Rule};

const ALARM_COLUMNS: &str = "id, key, rule, worker, agent, message, value, threshold, \
     fired_ms, resolved_ms, clear_since_ms";

fn alarm_from_row(row: &AnyRow) -> Result<Alarm, StoreError> {
    let id: i64 = row.try_get("id")?;
    let rule: String = row.try_get("rule")?;
    Ok(Alarm {
        id,
        condition: Condition {
            key: row.try_get("key")?,
            rule: Rule::parse(&rule).ok_or(StoreError::UnknownRule { id, rule })?,
            worker: row.try_get("worker")?,
            agent: row.try_get("agent")?,
            message: row.try_get("message")?,
            value: row.try_get("value")?,
            threshold: row.try_get("threshold")?,
        },
        fired_ms: row.try_get("fired_ms")?,
        resolved_ms: row.try_get("resolved_ms")?,
        clear_since_ms: row.try_get("clear_since_ms")?,
    })
}

impl Store {
    /// Fires the alarm for `condition` at `now_ms` unless one with its key is active.
    /// `Some` when this call fired it, `None` when it was active already.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn fire_alarm(
        &self,
        condition: &Condition,
        now_ms: i64,
    ) -> Result<Option<Alarm>, StoreError> {
        self.bounded(async move {
            let row = sqlx::query(&format!(
                "INSERT INTO alarms (key, rule, worker, agent, message, value, threshold, fired_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING \
                 RETURNING {ALARM_COLUMNS}"
            ))
            .bind(&condition.key)
            .bind(condition.rule.as_str())
            .bind(&condition.worker)
            .bind(&condition.agent)
            .bind(&condition.message)
            .bind(condition.value)
            .bind(condition.threshold)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(alarm_from_row).transpose()
        })
        .await
    }

    /// Resolves the active alarm with `key` at `now_ms`. `Some` when this call resolved
    /// it, `None` when none was active.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn resolve_alarm(&self, key: &str, now_ms: i64) -> Result<Option<Alarm>, StoreError> {
        self.bounded(async move {
            let row = sqlx::query(&format!(
                "UPDATE alarms SET resolved_ms = $2 WHERE key = $1 AND resolved_ms IS NULL \
                 RETURNING {ALARM_COLUMNS}"
            ))
            .bind(key)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(alarm_from_row).transpose()
        })
        .await
    }

    /// Notes that the condition of the active alarm with `key` stopped holding at
    /// `now_ms`, unless an earlier time is noted already; returns the time noted.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn alarm_clear_since(&self, key: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.bounded(async move {
            let row = sqlx::query(
                "UPDATE alarms SET clear_since_ms = COALESCE(clear_since_ms, $2) \
                 WHERE key = $1 AND resolved_ms IS NULL RETURNING clear_since_ms",
            )
            .bind(key)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            match row {
                Some(row) => Ok(row
                    .try_get::<Option<i64>, _>("clear_since_ms")?
                    .unwrap_or(now_ms)),
                // Resolved by another proxy meanwhile: nothing is left to wait for.
                None => Ok(now_ms),
            }
        })
        .await
    }

    /// Notes that the condition of the active alarm with `key` holds again.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn alarm_holds_again(&self, key: &str) -> Result<(), StoreError> {
        self.bounded(async move {
            sqlx::query(
                "UPDATE alarms SET clear_since_ms = NULL WHERE key = $1 AND resolved_ms IS NULL",
            )
            .bind(key)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Removes the alarms resolved before `oldest_ms` (active ones stay, however old).
    /// Returns how many went.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn prune_alarms(&self, oldest_ms: i64) -> Result<u64, StoreError> {
        self.bounded(async move {
            let done = sqlx::query("DELETE FROM alarms WHERE resolved_ms < $1")
                .bind(oldest_ms)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
        .await
    }

    /// The active alarms, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn active_alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query(&format!(
                "SELECT {ALARM_COLUMNS} FROM alarms WHERE resolved_ms IS NULL \
                 ORDER BY fired_ms DESC, id DESC"
            ))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(alarm_from_row).collect()
        })
        .await
    }

    /// The `limit` newest alarms, active or resolved, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    pub async fn alarm_history(&self, limit: u32) -> Result<Vec<Alarm>, StoreError> {
        self.bounded(async move {
            let rows = sqlx::query(&format!(
                "SELECT {ALARM_COLUMNS} FROM alarms ORDER BY fired_ms DESC, id DESC LIMIT $1"
            ))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(alarm_from_row).collect()
        })
        .await
    }
}
