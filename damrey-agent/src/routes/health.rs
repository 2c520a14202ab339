//! `GET /healthz`: the agent is up.

use actix_web::{HttpResponse, web};

use crate::routes::AppState;

/// 200 with how many configs and local instances the agent has.
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
    }))
}
