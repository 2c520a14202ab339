//! `GET /peer`: another agent opens its link to this one. A stopping agent still takes
//! links: replies to its own requests come back over them.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::peers;
use crate::routes::AppState;

/// Checks the token, upgrades, and serves the link until it closes.
pub async fn peer(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let (mut response, session, stream) = actix_ws::handle(&req, body)?;
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static(peers::RUN_HEADER),
        actix_web::http::header::HeaderValue::from_str(&state.sessions.run.to_string())
            .expect("a uuid is a header value"),
    );
    actix_rt::spawn(peers::serve_incoming(
        state.router.clone(),
        state.seen.clone(),
        state.known.clone(),
        state.shutdown.clone(),
        session,
        stream,
    ));
    Ok(response)
}
