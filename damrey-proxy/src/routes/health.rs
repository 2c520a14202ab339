//! `/healthz`: 200 when the store answers, 503 when it does not.

use actix_web::{HttpResponse, web};

use super::AppState;
use crate::error::ApiError;

/// `GET /healthz`: `{"status":"ok"}`, or 503 when the store does not answer.
///
/// # Errors
/// [`ApiError::Unavailable`] when the store does not answer.
pub async fn healthz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })))
}
