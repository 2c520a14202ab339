//! `GET /alarms`: the active alarms, or with `all=true` the history.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::alarm::Alarm;
use crate::error::ApiError;

/// How many alarms are listed when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 500;
/// The largest `limit`.
pub const MAX_LIMIT: u32 = 5_000;

/// The query of `GET /alarms`: `?all=true&limit=N`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsQuery {
    /// Resolved alarms too.
    pub all: Option<bool>,
    /// The most alarms listed (default 500, 1 to 5000).
    pub limit: Option<u32>,
}

/// The answer of `GET /alarms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmList {
    /// The alarms, newest first.
    pub alarms: Vec<Alarm>,
}

/// `GET /alarms[?all=true][&limit=N]`: the active alarms (or all), newest first.
///
/// # Errors
/// [`ApiError`] for a limit out of range or a store failure.
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<AlarmsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit {limit} must be from 1 to {MAX_LIMIT}"
        )));
    }
    let alarms = if query.all.unwrap_or(false) {
        state.store.alarm_history(limit).await?
    } else {
        let mut active = state.store.active_alarms().await?;
        active.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        active
    };
    Ok(HttpResponse::Ok().json(AlarmList { alarms }))
}
