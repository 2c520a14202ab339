//! `GET /attach/{worker}`: a worker process attaches over a WebSocket.

use actix_web::{HttpRequest, HttpResponse, web};
use damrey_actors::spec::validate_name;

use damrey_wire::rest::ErrorBody;

use crate::attach;
use crate::error::ApiError;
use crate::routes::AppState;
use crate::socket;

#[utoipa::path(get, path = "/attach/{worker}", tag = "sessions",
    params(("worker" = String, Path, description = "The worker the process serves")),
    responses(
        (status = 101, description = "Switching to the WebSocket of the worker session"),
        (status = 400, description = "The worker name is invalid (or, with no body, the request is no WebSocket upgrade)", body = ErrorBody),
        (status = 404, description = "No worker by that name is configured", body = ErrorBody),
        (status = 503, description = "The agent is stopping, or has no configs (or none for this worker) yet", body = ErrorBody),
    ))]
/// Reached only with a worker credential (the middleware answers 401/403 first).
/// Refuses with 503 (the agent is stopping; or it has no configs yet, so
/// no answer about the worker is true yet: the worker waits and tries again) or 404 (no
/// config for the worker) before upgrading; then serves the session until it closes.
pub async fn attach(
    req: HttpRequest,
    state: web::Data<AppState>,
    worker: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    state.admit()?;
    let worker = worker.into_inner();
    validate_name("worker", &worker).map_err(|e| ApiError::Invalid(e.to_string()))?;
    if !state.router.is_loaded() {
        return Err(
            ApiError::NotReady("the agent is not ready: it has no configs yet".to_owned()).into(),
        );
    }
    let spec = match state.router.spec(&worker) {
        Some(spec) => spec,
        // Configs from the disk cache may predate this worker: the worker waits for
        // the proxy's rather than be told it is not configured.
        None if !state.router.is_confirmed() => {
            return Err(ApiError::NotReady(format!(
                "the agent has no config for worker {worker:?} in its cached configs and has not heard from its proxy yet"
            ))
            .into());
        }
        None => {
            return Err(
                ApiError::NotFound(format!("no worker named {worker:?} is configured")).into(),
            );
        }
    };
    let (response, connection) = socket::upgrade(&req, body)?;
    actix_rt::spawn(attach::serve(
        state.router.clone(),
        worker,
        spec.mpu.0,
        connection,
        state.sessions.clone(),
        state.shutdown.clone(),
    ));
    Ok(response)
}
