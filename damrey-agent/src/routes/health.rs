//! `GET /healthz`: the agent is up (liveness); `GET /readyz`: it can route (it has
//! configs, from the proxy or from its disk cache).

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

/// 200 `{"status":"ready","configs":N}` once the agent has configs (possibly none:
/// the proxy said so); else 503, and an orchestrator holds traffic and workers back.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.router.is_loaded() {
        HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "configs": state.router.configs(),
        }))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({
            "status": "not ready",
            "reason": "no configs yet: the proxy has not answered and there is no config cache",
        }))
    }
}
