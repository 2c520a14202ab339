//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, made from the handlers'
//! annotations and the types their bodies are. Which operations need a token, and of
//! which role, is read from [`crate::auth::roles_for`], the rule the middleware applies.

use actix_web::HttpResponse;
use damrey_wire::rest::ErrorBody;
use utoipa::{OpenApi, ToSchema};

use super::{agents, alarms, dashboard, health, metrics, stats, workers};
use crate::auth::roles_for;

/// The proxy's API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Damrey proxy",
        description = "Worker configurations, the change feed, the registry of live agents, monitoring and alarms. Errors are `{\"error\": \"...\"}`; an unknown path answers 404 and a known one with another method 405 (with `Allow`), both as JSON."
    ),
    paths(
        workers::add, workers::delete, workers::change, workers::list, workers::get,
        stats::stats, agents::heartbeat, agents::list, agents::forget, alarms::list,
        metrics::metrics, health::healthz, health::readyz, document, dashboard::page
    ),
    modifiers(&Credentials)
)]
pub struct ApiDoc;

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    description = "Open without a token, like `/metrics` and the dashboard page: it describes the API and holds no data.",
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The bearer scheme on the operations [`roles_for`] guards.
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        damrey_service::openapi::finish(openapi, roles_for, &ErrorBody::name());
    }
}
