//! `/healthz` (liveness): 200 when the store answers, 503 when it does not; `/readyz`:
//! 200 when the store answers and has every migration this proxy knows.

use actix_web::{HttpResponse, web};
use damrey_service::telemetry::error_chain;

use super::AppState;
use crate::error::ApiError;
use crate::store::StoreError;

/// `GET /healthz`: `{"status":"ok"}`, or 503 when the store does not answer.
///
/// # Errors
/// [`ApiError::Unavailable`] when the store does not answer.
pub async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })))
}

/// `GET /readyz`: `{"status":"ready"}`, or 503 with `{"status":"not ready","reason":...}`
/// when the store does not answer or lacks a migration (a proxy on an older schema
/// would fail requests one by one; a load balancer should not send it any).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reason = match state.store.unapplied_migration().await {
        Ok(None) => return HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Ok(Some(version)) => format!("migration {version} has not run on the store"),
        Err(StoreError::Unavailable(_) | StoreError::TimedOut(_)) => {
            "the store is unavailable".to_owned()
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "readiness check failed");
            "the store's migrations could not be read".to_owned()
        }
    };
    HttpResponse::ServiceUnavailable().json(serde_json::json!({
        "status": "not ready",
        "reason": reason,
    }))
}
