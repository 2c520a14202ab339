//! `/agents/heartbeat`, `/agents` and `/agents/forget`: the registry of live agents,
//! their instances and the counters they report, and the placement feed agents wait on
//! to learn at once where the others' instances are.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use crate::error::ApiError;
use crate::feed::MAX_WAIT;
use damrey_wire::report::Heartbeat;
use damrey_wire::rest::{AgentEntry, AgentList, ErrorBody};
use damrey_wire::spec::validate_agent;

use crate::store::now_ms;
use crate::store::placement::Known;

/// The query of `GET /agents`: `?after=V&wait_ms=M`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Wait while the placement version equals this one.
    pub after: Option<i64>,
    /// The longest to wait in ms (default and most: 30000); needs `after`.
    pub wait_ms: Option<u64>,
    /// Answer only the agents whose entry changed after `after` (and `gone`, those no
    /// longer listed), when this proxy still remembers that version; needs `after`.
    pub delta: Option<bool>,
}

/// The body of `POST /agents/forget`: `{"agent":"host:port"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"agent": "127.0.0.1:7701"}))]
#[serde(deny_unknown_fields)]
pub struct ForgetAgent {
    /// The agent's address, `host:port`.
    pub agent: String,
}

/// The answer of `POST /agents/forget`: `{"agent":"host:port","forgotten":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Forgotten {
    /// The agent's address.
    pub agent: String,
    /// Always `true`: an unknown agent is answered 404.
    pub forgotten: bool,
}

/// `POST /agents/heartbeat`: records the agent, its instances and their counters; 200
/// and its entry. With `leaving: true`, removes the agent at once.
///
/// # Errors
/// [`ApiError`] for an invalid heartbeat or a store failure.
#[utoipa::path(post, path = "/agents/heartbeat", tag = "agents", request_body = Heartbeat,
    responses(
        (status = 200, description = "The agent's entry as recorded", body = AgentEntry),
        (status = 400, description = "The heartbeat is invalid", body = ErrorBody),
        (status = 413, description = "The body is larger than the heartbeat limit (4 MiB)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn heartbeat(
    state: web::Data<AppState>,
    heartbeat: web::Json<Heartbeat>,
) -> Result<HttpResponse, ApiError> {
    heartbeat
        .validate()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    crate::monitor::check_storable(&heartbeat).map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(HttpResponse::Ok().json(state.registry.record(heartbeat.into_inner()).await?))
}

/// `GET /agents[?after=V[&wait_ms=M][&delta=true]]`: the listed agents and the
/// placement version; with `after`, first waits (at most `wait_ms`, at most 30 s) while
/// the version is still `V`; with `delta=true` as well, answers only what changed after
/// `V` when this proxy remembers it (`since` says so), else the whole list.
///
/// # Errors
/// [`ApiError`] for a bad query or a store failure.
#[utoipa::path(get, path = "/agents", tag = "agents", params(ListQuery),
    responses(
        (status = 200, description = "The listed agents (or the changes since `after`) and the placement version", body = AgentList),
        (status = 400, description = "The query is invalid (`wait_ms` or `delta` without `after`, an unknown parameter)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let placement = match (query.after, query.wait_ms, query.delta.unwrap_or(false)) {
        (None, None, false) => {
            state
                .store
                .placement(now_ms(), state.agent_ttl, Known::Stored, None)
                .await?
        }
        (None, _, _) => {
            return Err(ApiError::Invalid(
                "wait_ms and delta need after, the version to wait past".to_owned(),
            ));
        }
        (Some(after), wait_ms, delta) => {
            let wait = wait_ms.map_or(MAX_WAIT, Duration::from_millis);
            let since = delta.then_some(after);
            // The version the feed has seen, not a read of the stored one: N agents
            // woken by one change cost one read of the placement, not N.
            let read = || async {
                let placement = state
                    .store
                    .placement(
                        now_ms(),
                        state.agent_ttl,
                        Known::AtLeast(state.placement.latest()),
                        since,
                    )
                    .await?;
                state.placement.publish(placement.version);
                Ok(placement)
            };
            state.placement.wait_for_change(after, wait, read).await?
        }
    };
    Ok(HttpResponse::Ok().json(AgentList {
        version: placement.version,
        ttl_ms: u64::try_from(state.agent_ttl.as_millis()).unwrap_or(u64::MAX),
        agents: placement.agents,
        since: placement.since,
        gone: placement.gone,
    }))
}

/// `POST /agents/forget`: forgets an agent that will not come back (its entry, instances
/// and samples), which resolves its `agent_silent` alarm; 200, or 404 when unknown.
///
/// # Errors
/// [`ApiError`] for an invalid address, an unknown agent or a store failure.
#[utoipa::path(post, path = "/agents/forget", tag = "agents", request_body = ForgetAgent,
    responses(
        (status = 200, description = "The agent is forgotten", body = Forgotten),
        (status = 400, description = "The body or the address is invalid", body = ErrorBody),
        (status = 404, description = "No agent by that address", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn forget(
    state: web::Data<AppState>,
    body: web::Json<ForgetAgent>,
) -> Result<HttpResponse, ApiError> {
    validate_agent(&body.agent).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let forgotten = state.store.forget_agent(&body.agent).await?;
    if let Some(version) = forgotten.placement {
        state.placement.publish(version);
    }
    if forgotten.value {
        Ok(HttpResponse::Ok().json(Forgotten {
            agent: body.into_inner().agent,
            forgotten: true,
        }))
    } else {
        Err(ApiError::NotFound(format!("no agent {:?}", body.agent)))
    }
}
