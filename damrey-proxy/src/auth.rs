//! Credentials on the proxy's endpoints: a middleware that runs before any handler, so a
//! request without the right credential is answered 401 (or 403) before its body is read.
//! The check itself is [`damrey_service::credential::Credentials::authorize`], shared with
//! the agent. `/healthz`, `/readyz`, `/metrics` (DESIGN §8: scrapers and probes carry no
//! token), the dashboard page `/` and `/openapi.json` (which carry no data) are open.

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use damrey_service::credential::{Role, check_request};

use crate::error::ApiError;

/// Paths open without a token: probes and scrapers carry none (DESIGN §8); `/` is
/// the dashboard page, which holds no data and sends the token itself on its API calls;
/// `/openapi.json` describes the API and holds no data either.
pub const OPEN_PATHS: &[&str] = &["/", "/healthz", "/readyz", "/metrics", "/openapi.json"];

/// The roles a request needs: `None` for the open paths. A method and path no rule names
/// needs the admin role, so a route added without a rule fails closed.
///
/// `path` must be the path the router matches (percent-decoded), not the raw one:
/// `/worker/%61dd` is routed to `/worker/add` and must need what `/worker/add` needs.
pub fn roles_for(method: &Method, path: &str) -> Option<&'static [Role]> {
    if OPEN_PATHS.contains(&path) {
        return None;
    }
    Some(match (method.as_str(), path) {
        ("POST", "/worker/add" | "/worker/del" | "/worker/chg" | "/agents/forget") => {
            &[Role::Admin]
        }
        ("POST", "/agents/heartbeat") => &[Role::Agent],
        ("GET", "/workers/stats" | "/alarms") => &[Role::Read, Role::Admin],
        ("GET", "/workers/get" | "/agents") => &[Role::Read, Role::Admin, Role::Agent],
        ("GET", _) if path.starts_with("/workers/") => &[Role::Read, Role::Admin, Role::Agent],
        _ => &[Role::Admin],
    })
}

/// Middleware: answers 401 or 403 unless the request's credential may pass.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn require_credential(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = check_request(&req, roles_for(req.method(), req.match_info().as_str()));
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refused) => {
            let response = ApiError::from(refused).error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
