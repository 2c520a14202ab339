//! `GET /peer`: another agent opens its link to this one. A stopping agent still takes
//! links: replies to its own requests come back over them.

use actix_web::{HttpRequest, HttpResponse, web};

use std::any::Any;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::rt::net::TcpStream;

use damrey_wire::rest::ErrorBody;

use crate::error::ApiError;
use crate::peers;
use crate::routes::AppState;
use crate::socket;

/// Marks a connection whose client presented a certificate during the TLS handshake;
/// the handshake verified it against the mesh's CA (a foreign one fails it).
#[derive(Debug, Clone, Copy)]
pub struct VerifiedClient;

/// Whether `connection` (as `on_connect` sees it) is TLS with a client certificate.
pub fn presented_certificate(connection: &dyn Any) -> bool {
    connection
        .downcast_ref::<TlsStream<TcpStream>>()
        .and_then(|stream| stream.get_ref().1.peer_certificates())
        .is_some_and(|certificates| !certificates.is_empty())
}

#[utoipa::path(get, path = "/peer", tag = "sessions",
    responses(
        (status = 101, description = "Switching to the WebSocket of the peer link",
            headers(("damrey-agent-run" = String, description = "This agent run's id"))),
        (status = 400, description = "The request is no WebSocket upgrade (no body)"),
        (status = 403, description = "The token's roles do not include agent, or under mutual TLS no client certificate came", body = ErrorBody),
    ))]
/// Checks the client certificate under mutual TLS (the token was checked before),
/// upgrades, and serves the link until it closes.
pub async fn peer(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    if state.peer_certificate_required && req.conn_data::<VerifiedClient>().is_none() {
        return Err(ApiError::NoPeerCertificate.into());
    }
    let (mut response, connection) = socket::upgrade(&req, body)?;
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static(damrey_wire::peer::RUN_HEADER),
        actix_web::http::header::HeaderValue::from_str(&state.sessions.run.to_string())
            .expect("a uuid is a header value"),
    );
    actix_rt::spawn(peers::serve_incoming(
        state.router.clone(),
        state.seen.clone(),
        state.known.clone(),
        state.shutdown.clone(),
        connection,
    ));
    Ok(response)
}
