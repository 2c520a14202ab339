//! `GET /healthz`: the agent is up.

use actix_web::{HttpResponse, web};

use crate::routes::AppState;

/// 200 with the agent's address, how many configs and local instances it has, and
/// how many of its requests wait on other agents.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let instances: usize = state
        .router
        .local_counts()
        .iter()
        .map(|(_, count)| count)
        .sum();
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "agent": state.router.me(),
        "configs": state.router.configs(),
        "instances": instances,
        "pending": state.router.pending_requests(),
    }))
}
