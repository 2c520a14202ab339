//! `/agents/heartbeat` and `/agents`: the registry of live agents and their instances.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::error::ApiError;
use damrey_actors::report::Heartbeat;

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

/// `POST /agents/heartbeat`: records the agent and its instances; 200 and its entry.
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
    let entry = state
        .store
        .heartbeat(&heartbeat, now_ms(), state.agent_ttl)
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
