//! Credentials on the agent's endpoints: a middleware that runs before any handler, so a
//! request without the right credential is answered 401 (or 403) before its body is read
//! or its WebSocket upgrade is handled. The check itself is
//! [`damrey_service::credential::Credentials::authorize`], shared with the proxy.

use actix_web::ResponseError;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use damrey_service::credential::{Role, check_request};

use crate::error::ApiError;

/// The roles a request to `path` needs: `None` for the open paths (probes and the
/// scraper carry no token, DESIGN §8; `/openapi.json` describes the API and holds no
/// data). A path no rule names needs the admin role, so a
/// route added without a rule fails closed.
///
/// `path` must be the path the router matches (percent-decoded), not the raw one:
/// `/%70eer` is routed to `/peer` and must need what `/peer` needs.
pub fn roles_for(path: &str) -> Option<&'static [Role]> {
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => None,
        "/peer" => Some(&[Role::Agent]),
        "/stats" => Some(&[Role::Read, Role::Admin]),
        _ if path.starts_with("/attach/") => Some(&[Role::Worker]),
        _ if path.starts_with("/call/") => Some(&[Role::Worker, Role::Admin]),
        _ => Some(&[Role::Admin]),
    }
}

/// Middleware: answers 401 or 403 unless the request's credential may pass.
///
/// # Errors
/// Whatever the inner service fails with.
pub async fn require_credential(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = check_request(&req, roles_for(req.match_info().as_str()));
    match verdict {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(refused) => {
            let response = ApiError::from(refused).error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}
