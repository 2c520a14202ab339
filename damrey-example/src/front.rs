//! The example's HTTP front door, served by the `entry` process: `GET /sqsum?a=3&b=4`
//! answers `49` as plain text, `POST /` takes a message as the JSON list and answers the
//! terminal reply as the JSON list. Both send the request along entry's line with the
//! worker's own outbox (`entry => add => square`).
//!
//! Statuses: a `RESPONSE` is 200; an `ERROR` (bad or missing arguments, overflow,
//! unknown type) 400 with the reason; `TIMEOUT` 504; `STOP` 503. Every request ends by
//! its deadline (`timeout_ms`, default 5000, at most 60000).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use damrey_actors::{Message, Tag, WorkerHandle};
use serde::Deserialize;

use crate::{SQSUM, integers};

/// The wait when a request names none.
const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The longest wait a request may ask for.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// The query of `GET /sqsum`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsumQuery {
    /// The first number.
    pub a: Option<String>,
    /// The second number.
    pub b: Option<String>,
    /// How long to wait for the answer.
    pub timeout_ms: Option<u64>,
}

/// The query of `POST /`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// How long to wait for the answer.
    pub timeout_ms: Option<u64>,
}

/// Registers the front door's routes for `worker` (the attached `entry` worker).
pub fn configure(worker: WorkerHandle) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(worker))
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                let text = format!("bad query: {error}");
                actix_web::error::InternalError::from_response(
                    error,
                    HttpResponse::BadRequest().body(text),
                )
                .into()
            }))
            .route("/sqsum", web::get().to(sqsum))
            .route("/", web::post().to(call))
            .route("/healthz", web::get().to(healthz));
    }
}

fn timeout(timeout_ms: Option<u64>) -> Duration {
    Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).min(MAX_TIMEOUT_MS))
}

fn status_of(tag: Tag) -> StatusCode {
    match tag {
        Tag::Request | Tag::Response => StatusCode::OK,
        Tag::Error => StatusCode::BAD_REQUEST,
        Tag::Stop => StatusCode::SERVICE_UNAVAILABLE,
        Tag::Timeout => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// `GET /sqsum?a=3&b=4`: `(a+b)^2` as plain text, or the reason it could not be had.
async fn sqsum(worker: web::Data<WorkerHandle>, query: web::Query<SqsumQuery>) -> HttpResponse {
    let query = query.into_inner();
    let (Some(a), Some(b)) = (query.a, query.b) else {
        return HttpResponse::BadRequest().body("sqsum wants two integers: /sqsum?a=3&b=4");
    };
    let request = Message::request(SQSUM, [a, b]);
    if let Err(reason) = integers::<2>(&request) {
        return HttpResponse::BadRequest().body(reason);
    }
    let reply = worker.request(request, timeout(query.timeout_ms)).await;
    let text = match reply.tag {
        Tag::Request | Tag::Response => reply.args.join(" "),
        Tag::Error => reply.args.join(" "),
        Tag::Stop | Tag::Timeout => reply.to_string(),
    };
    HttpResponse::build(status_of(reply.tag))
        .content_type("text/plain; charset=utf-8")
        .body(text)
}

/// `POST /` with `["REQUEST","sqsum","3","4"]`: the terminal reply as the JSON list.
async fn call(
    worker: web::Data<WorkerHandle>,
    query: web::Query<CallQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let request = match Message::from_json_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let reply = Message::error("", error.to_string());
            return HttpResponse::BadRequest()
                .content_type("application/json")
                .body(reply.to_json());
        }
    };
    if request.kind == SQSUM
        && let Err(reason) = integers::<2>(&request)
    {
        let reply = Message::error(request.kind, reason);
        return HttpResponse::BadRequest()
            .content_type("application/json")
            .body(reply.to_json());
    }
    let reply = worker.request(request, timeout(query.timeout_ms)).await;
    HttpResponse::build(status_of(reply.tag))
        .content_type("application/json")
        .body(reply.to_json())
}

/// `GET /healthz`: 200 while the entry worker is attached to its agent, else 503.
async fn healthz(worker: web::Data<WorkerHandle>) -> HttpResponse {
    if worker.is_connected() {
        HttpResponse::Ok().body("ok")
    } else {
        HttpResponse::ServiceUnavailable().body("not attached to the agent")
    }
}
