//! `/agents/heartbeat`, `/agents` and `/agents/forget`: the registry of live agents,
//! their instances and the counters they report.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::error::ApiError;
use damrey_actors::report::Heartbeat;
use damrey_actors::spec::validate_agent;

use crate::registry::AgentEntry;
use crate::store::now_ms;

/// The answer of `GET /agents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    /// Agents silent for longer than this are not listed.
    pub ttl_ms: u64,
    /// The live agents, sorted by address.
    pub agents: Vec<AgentEntry>,
}

/// The body of `POST /agents/forget`: `{"agent":"host:port"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgetAgent {
    /// The agent's address.
    pub agent: String,
}

/// `POST /agents/heartbeat`: records the agent, its instances and their counters; 200
/// and its entry. With `leaving: true`, removes the agent at once.
///
/// # Errors
/// [`ApiError`] for an invalid heartbeat or a store failure.
pub async fn heartbeat(
    state: web::Data<AppState>,
    heartbeat: web::Json<Heartbeat>,
) -> Result<HttpResponse, ApiError> {
    heartbeat
        .validate()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    crate::monitor::check_storable(&heartbeat).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let entry = state
        .store
        .heartbeat(
            &heartbeat,
            now_ms(),
            state.agent_ttl,
            state.monitor.retention,
        )
        .await?;
    Ok(HttpResponse::Ok().json(entry))
}

/// `GET /agents`: the agents heard from within the TTL.
///
/// # Errors
/// [`ApiError`] for a store failure.
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let agents = state.store.agents(now_ms(), state.agent_ttl).await?;
    Ok(HttpResponse::Ok().json(AgentList {
        ttl_ms: u64::try_from(state.agent_ttl.as_millis()).unwrap_or(u64::MAX),
        agents,
    }))
}

/// `POST /agents/forget`: forgets an agent that will not come back (its entry, instances
/// and samples), which resolves its `agent_silent` alarm; 200, or 404 when unknown.
///
/// # Errors
/// [`ApiError`] for an invalid address, an unknown agent or a store failure.
pub async fn forget(
    state: web::Data<AppState>,
    body: web::Json<ForgetAgent>,
) -> Result<HttpResponse, ApiError> {
    validate_agent(&body.agent).map_err(|e| ApiError::Invalid(e.to_string()))?;
    if state.store.forget_agent(&body.agent).await? {
        Ok(HttpResponse::Ok().json(serde_json::json!({ "agent": body.agent, "forgotten": true })))
    } else {
        Err(ApiError::NotFound(format!("no agent {:?}", body.agent)))
    }
}
