//! `/healthz` (liveness): 200 when the store answers, 503 when it does not; `/readyz`:
//! 200 when the store answers and has every migration this proxy knows.

use actix_web::{HttpResponse, web};
use damrey_service::telemetry::error_chain;
use damrey_wire::rest::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::ApiError;
use crate::store::StoreError;

/// What `/healthz` and `/readyz` answer: `{"status":"ok"}`, `{"status":"ready"}`, or
/// `{"status":"not ready","reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Status {
    /// `ok`, `ready` or `not ready`.
    pub status: &'static str,
    /// Why the proxy is not ready; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Status {
    fn is(status: &'static str) -> Status {
        Status {
            status,
            reason: None,
        }
    }
}

/// `GET /healthz`: `{"status":"ok"}`, or 503 when the store does not answer.
///
/// # Errors
/// [`ApiError::Unavailable`] when the store does not answer.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses(
        (status = 200, description = "The proxy and its store answer", body = Status,
            example = json!({"status": "ok"})),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(Status::is("ok")))
}

/// `GET /readyz`: `{"status":"ready"}`, or 503 with `{"status":"not ready","reason":...}`
/// when the store does not answer or lacks a migration (a proxy on an older schema
/// would fail requests one by one; a load balancer should not send it any).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The proxy is ready", body = Status,
            example = json!({"status": "ready"})),
        (status = 503, description = "The store does not answer or lacks a migration", body = Status,
            example = json!({"status": "not ready", "reason": "the store is unavailable"})),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reason = match state.store.unapplied_migration().await {
        Ok(None) => return HttpResponse::Ok().json(Status::is("ready")),
        Ok(Some(version)) => format!("migration {version} has not run on the store"),
        Err(StoreError::Unavailable(_) | StoreError::TimedOut(_)) => {
            "the store is unavailable".to_owned()
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "readiness check failed");
            "the store's migrations could not be read".to_owned()
        }
    };
    HttpResponse::ServiceUnavailable().json(Status {
        status: "not ready",
        reason: Some(reason),
    })
}
