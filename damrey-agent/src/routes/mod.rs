//! The agent's HTTP surface: `/healthz`, `/readyz` and `/metrics`, `/call/{worker}` for
//! curl, `/attach/{worker}` for worker processes, `/peer` for other agents, `/stats`, and
//! `/openapi.json`, which describes them all.

pub mod attach;
pub mod call;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod peer;

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::QueryPayloadError;
use actix_web::{HttpRequest, HttpResponse, web};
use damrey_actors::Router;
use damrey_service::api_route::ApiRoute;

use damrey_wire::rest::ErrorBody;

use crate::attach::SessionSettings;
use crate::error::ApiError;
use crate::known::KnownAgents;
use crate::peers::SeenIds;
use crate::shutdown::Shutdown;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The routing table and line driver.
    pub router: Router,
    /// Envelope ids taken recently from other agents.
    pub seen: Arc<SeenIds>,
    /// The agents an envelope's origin may name.
    pub known: Arc<KnownAgents>,
    /// What worker sessions take from the settings (pings, stats).
    pub sessions: SessionSettings,
    /// The longest a `/call` may wait.
    pub max_call: Duration,
    /// The agent's stop: refuses new work while draining, closes sessions at its end.
    pub shutdown: Shutdown,
    /// Mutual TLS: a peer link must come with a client certificate the mesh's CA signed.
    pub peer_certificate_required: bool,
}

impl AppState {
    /// Refuses new work once the agent is stopping.
    ///
    /// # Errors
    /// [`ApiError::Stopping`] while the agent drains.
    pub fn admit(&self) -> Result<(), ApiError> {
        if self.shutdown.is_draining() {
            Err(ApiError::Stopping)
        } else {
            Ok(())
        }
    }
}

/// Every route the agent serves: [`configure`] registers them, and the OpenAPI document
/// describes the same ones (its test holds the two together).
pub const ROUTES: &[ApiRoute] = &[
    ApiRoute::new("GET", "/healthz", |route| route.to(health::healthz)),
    ApiRoute::new("GET", "/readyz", |route| route.to(health::readyz)),
    ApiRoute::new("POST", "/call/{worker}", |route| route.to(call::call)),
    ApiRoute::new("GET", "/attach/{worker}", |route| route.to(attach::attach)),
    ApiRoute::new("GET", "/peer", |route| route.to(peer::peer)),
    ApiRoute::new("GET", "/metrics", |route| route.to(metrics::metrics)),
    ApiRoute::new("HEAD", "/metrics", |route| route.to(metrics::metrics)),
    ApiRoute::new("GET", "/stats", |route| route.to(metrics::stats)),
    ApiRoute::new("GET", "/openapi.json", |route| route.to(openapi::document)),
];

/// Registers [`ROUTES`], with JSON answers for unknown paths, bad queries and bodies
/// over the limit.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(call::BODY_LIMIT))
        .app_data(web::QueryConfig::default().error_handler(|error, _req| {
            let reason = match error {
                QueryPayloadError::Deserialize(error) => error.to_string(),
                other => other.to_string(),
            };
            ApiError::Invalid(format!("invalid query string: {reason}")).into()
        }));
    for endpoint in ROUTES {
        cfg.route(endpoint.path, endpoint.route());
    }
    cfg.default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(ErrorBody::new(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
