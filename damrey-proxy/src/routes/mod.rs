//! The REST API of DESIGN §6: route table, extractor settings and the JSON 404/405 answers.

pub mod agents;
pub mod alarms;
pub mod dashboard;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod stats;
pub mod workers;

use std::time::Duration;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::{Method, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::mime;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use damrey_service::api_route::ApiRoute;

use crate::error::ApiError;
use crate::feed::Feed;
use crate::monitor::Monitor;
use crate::registry::Recorder;
use crate::store::Store;

/// The largest request body accepted (64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The largest heartbeat accepted (4 MiB): room for the counters of
/// [`damrey_wire::report::MAX_REPORTED_INSTANCES`] instances.
pub const HEARTBEAT_LIMIT: usize = 4 * 1024 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Records heartbeats in batches.
    pub registry: Recorder,
    /// The change feed of the configs.
    pub feed: Feed,
    /// The change feed of where instances are.
    pub placement: Feed,
    /// How long an agent stays listed without a heartbeat.
    pub agent_ttl: Duration,
    /// Reads the monitoring reports.
    pub monitor: Monitor,
}

/// Every route the proxy serves, in matching order: [`configure`] registers them (one
/// resource per path), and the OpenAPI document describes the same ones (its test holds
/// the two together).
pub const ROUTES: &[ApiRoute] = &[
    ApiRoute::new("POST", "/worker/add", |route| route.to(workers::add)),
    ApiRoute::new("POST", "/worker/del", |route| route.to(workers::delete)),
    ApiRoute::new("POST", "/worker/chg", |route| route.to(workers::change)),
    // Before `/workers/{name}`, so that `get` and `stats` are not workers.
    ApiRoute::new("GET", "/workers/get", |route| route.to(workers::list)),
    ApiRoute::new("GET", "/workers/stats", |route| route.to(stats::stats)),
    ApiRoute::new("GET", "/workers/{name}", |route| route.to(workers::get)),
    ApiRoute::new("POST", HEARTBEAT_PATH, |route| route.to(agents::heartbeat)),
    ApiRoute::new("GET", "/agents", |route| route.to(agents::list)),
    ApiRoute::new("POST", "/agents/forget", |route| route.to(agents::forget)),
    ApiRoute::new("GET", "/alarms", |route| route.to(alarms::list)),
    ApiRoute::new("GET", "/metrics", |route| route.to(metrics::metrics)),
    ApiRoute::new("HEAD", "/metrics", |route| route.to(metrics::metrics)),
    ApiRoute::new("GET", "/healthz", |route| route.to(health::healthz)),
    ApiRoute::new("GET", "/readyz", |route| route.to(health::readyz)),
    ApiRoute::new("GET", "/openapi.json", |route| route.to(openapi::document)),
    ApiRoute::new("GET", "/", |route| route.to(dashboard::page)),
];

/// The path of agents' heartbeats, whose bodies may be larger ([`HEARTBEAT_LIMIT`]).
const HEARTBEAT_PATH: &str = "/agents/heartbeat";

/// Registers [`ROUTES`], with a JSON 405 for wrong methods and a JSON 404 elsewhere.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config(BODY_LIMIT))
        .app_data(query_config())
        .app_data(path_config());
    for endpoints in ROUTES.chunk_by(|a, b| a.path == b.path) {
        let resource = resource(endpoints);
        if endpoints[0].path == HEARTBEAT_PATH {
            cfg.service(resource.app_data(json_config(HEARTBEAT_LIMIT)));
        } else {
            cfg.service(resource);
        }
    }
    cfg.default_service(web::to(not_found));
}

/// One path's resource: its methods' routes, JSON bodies on a POST-only path, and a
/// JSON 405 naming the methods it takes.
fn resource(
    endpoints: &'static [ApiRoute],
) -> actix_web::Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let post_only = endpoints.iter().all(|endpoint| endpoint.method == "POST");
    let allowed = endpoints
        .iter()
        .map(|endpoint| endpoint.method)
        .collect::<Vec<_>>()
        .join(", ");
    endpoints
        .iter()
        .fold(web::resource(endpoints[0].path), |resource, endpoint| {
            resource.route(endpoint.route())
        })
        .wrap(from_fn(move |req, next: Next<BoxBody>| {
            json_bodies(post_only, req, next)
        }))
        .default_service(web::to(move |req: HttpRequest| {
            let allowed = allowed.clone();
            async move {
                Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                    method: req.method().to_string(),
                    path: req.path().to_owned(),
                    allowed,
                })
            }
        }))
}

/// Middleware of every resource: a POST body to a resource that takes only POST
/// (`post_only`) must be `application/json` (or `application/*+json`) in UTF-8, checked before the
/// body is read. actix-web's JSON
/// extractor alone would also take `text/json` and any charset, then read the bytes as
/// UTF-8 whatever they are.
async fn json_bodies(
    post_only: bool,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<EitherBody<BoxBody>>, actix_web::Error> {
    let refusal = if req.method() == Method::POST && post_only {
        json_content_type(req.headers().get(header::CONTENT_TYPE))
    } else {
        Ok(())
    };
    match refusal {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(error) => {
            let response = error.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Whether a `Content-Type` names JSON in UTF-8.
fn json_content_type(value: Option<&header::HeaderValue>) -> Result<(), ApiError> {
    let mime = value
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok())
        .filter(|mime| {
            mime.type_() == mime::APPLICATION
                && (mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
        })
        .ok_or_else(|| ApiError::Invalid("content type must be application/json".to_owned()))?;
    match mime.get_param(mime::CHARSET) {
        Some(charset) if charset != mime::UTF_8 => Err(ApiError::Invalid(
            "JSON bodies must be UTF-8; send application/json without a charset or with charset=utf-8"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

fn json_config(body_limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(body_limit)
        .error_handler(move |error, _req| {
            let error = match error {
                JsonPayloadError::OverflowKnownLength { limit, .. }
                | JsonPayloadError::Overflow { limit } => ApiError::TooLarge { limit },
                JsonPayloadError::Payload(PayloadError::Overflow) => {
                    ApiError::TooLarge { limit: body_limit }
                }
                JsonPayloadError::ContentType => {
                    ApiError::Invalid("content type must be application/json".to_owned())
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::Invalid(format!("invalid JSON body: {e}"))
                }
                other => ApiError::Invalid(format!("could not read the body: {other}")),
            };
            error.into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _req| {
        ApiError::Invalid(format!("invalid query string: {error}")).into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|error, _req| ApiError::Invalid(format!("invalid path: {error}")).into())
}
