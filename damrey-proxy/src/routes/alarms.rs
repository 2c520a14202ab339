//! `GET /alarms`: the active alarms, or with `all=true` the history.

use actix_web::{HttpResponse, web};
use damrey_wire::rest::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::alarm::Alarm;
use crate::error::ApiError;

/// How many alarms are listed when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 500;
/// The largest `limit`.
pub const MAX_LIMIT: u32 = 5_000;

/// The query of `GET /alarms`: `?all=true&limit=N`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlarmsQuery {
    /// Resolved alarms too.
    pub all: Option<bool>,
    /// The most alarms listed (default 500, 1 to 5000).
    pub limit: Option<u32>,
}

/// The answer of `GET /alarms`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlarmList {
    /// The alarms, newest first.
    pub alarms: Vec<Alarm>,
}

/// `GET /alarms[?all=true][&limit=N]`: the active alarms (or all), newest first.
///
/// # Errors
/// [`ApiError`] for a limit out of range or a store failure.
#[utoipa::path(get, path = "/alarms", tag = "monitoring", params(AlarmsQuery),
    responses(
        (status = 200, description = "The alarms, newest first", body = AlarmList),
        (status = 400, description = "The limit is out of range or the query is invalid", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
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
