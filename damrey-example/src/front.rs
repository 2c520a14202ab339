//! The example's HTTP front door, served by the `entry` process: `GET /sqsum?a=3&b=4`
//! answers `49` as plain text, `POST /` takes a message as the JSON list and answers the
//! terminal reply as the JSON list. Both start the line at `entry` itself, with the
//! worker's own outbox (`http request => entry => add => square`, DESIGN's line): entry's
//! step runs and is counted like any other.
//!
//! Statuses ([`Terminal::http_status`], as the agent's `/call`): a `RESPONSE` is 200; a
//! request the front door cannot read (not a message, a missing or non-integer
//! argument) 400; an `ERROR` a worker's handler made about the request's data (an
//! overflow) 422; the `ERROR` for a handler that panicked 500; an `ERROR` the mesh
//! made 502 (configs: unknown worker, type or a
//! loop; an unreachable agent or instance) or 503 (no live instance, overloaded), its
//! cause in the `damrey-fault` header; `STOP` 503; `TIMEOUT` 504. Every request ends by
//! its deadline (`timeout_ms`, default 5000, at most 60000).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use damrey_actors::{FAULT_HEADER, Message, Tag, Terminal, WorkerHandle};
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

/// The response for `reply`: its status and, for a fault, the header naming it.
fn answer(reply: &Terminal) -> actix_web::HttpResponseBuilder {
    let status =
        StatusCode::from_u16(reply.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if let Some(fault) = reply.fault {
        response.insert_header((FAULT_HEADER, fault.as_str()));
    }
    response
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
    let reply = worker
        .request_at(worker.name(), request, timeout(query.timeout_ms))
        .await;
    let message = &reply.message;
    let text = match message.tag {
        Tag::Request | Tag::Response | Tag::Error => message.args.join(" "),
        Tag::Stop | Tag::Timeout => message.to_string(),
    };
    answer(&reply)
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
    let reply = worker
        .request_at(worker.name(), request, timeout(query.timeout_ms))
        .await;
    answer(&reply)
        .content_type("application/json")
        .body(reply.message.to_json())
}

/// `GET /healthz`: 200 while the entry worker is attached to its agent, else 503.
async fn healthz(worker: web::Data<WorkerHandle>) -> HttpResponse {
    if worker.is_connected() {
        HttpResponse::Ok().body("ok")
    } else {
        HttpResponse::ServiceUnavailable().body("not attached to the agent")
    }
}
