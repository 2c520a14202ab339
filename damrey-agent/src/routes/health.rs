//! `GET /healthz`: the agent is up (liveness); `GET /readyz`: it can route (it has
//! configs, from the proxy or from its disk cache).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::AppState;

/// What `/healthz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The agent's address, `host:port`.
    pub agent: String,
    /// How many worker configs it has.
    pub configs: usize,
    /// How many worker instances are attached to it.
    pub instances: usize,
    /// How many of its requests wait on other agents.
    pub pending: usize,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: &'static str,
    /// How many worker configs it has, when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configs: Option<usize>,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// 200 with the agent's address, how many configs and local instances it has, and
/// how many of its requests wait on other agents.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The agent is up", body = Health,
        example = json!({"status": "ok", "agent": "127.0.0.1:7701", "configs": 3, "instances": 2, "pending": 0}))))]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let instances: usize = state
        .router
        .local_counts()
        .iter()
        .map(|(_, count)| count)
        .sum();
    HttpResponse::Ok().json(Health {
        status: "ok",
        agent: state.router.me().to_owned(),
        configs: state.router.configs(),
        instances,
        pending: state.router.pending_requests(),
    })
}

/// 200 `{"status":"ready","configs":N}` once the agent has configs (possibly none:
/// the proxy said so); else 503, and an orchestrator holds traffic and workers back.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The agent has configs", body = Readiness,
            example = json!({"status": "ready", "configs": 3})),
        (status = 503, description = "The agent has no configs yet", body = Readiness,
            example = json!({"status": "not ready", "reason": "no configs yet: the proxy has not answered and there is no config cache"})),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.router.is_loaded() {
        HttpResponse::Ok().json(Readiness {
            status: "ready",
            configs: Some(state.router.configs()),
            reason: None,
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Readiness {
            status: "not ready",
            configs: None,
            reason: Some("no configs yet: the proxy has not answered and there is no config cache"),
        })
    }
}
