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

/// A connection whose client presented a certificate during the TLS handshake (the
/// handshake verified it against the mesh's CA: a foreign one fails it), and the agent
/// that certificate names, if any.
#[derive(Debug, Clone)]
pub struct VerifiedClient {
    /// The `host:port` of the certificate's first `damrey-agent://` URI subject
    /// alternative name: the peer's identity on its link.
    pub agent: Option<String>,
}

/// The client certificate of `connection` (as `on_connect` sees it), when it is TLS and
/// the client presented one.
pub fn client_certificate(connection: &dyn Any) -> Option<VerifiedClient> {
    let certificates = connection
        .downcast_ref::<TlsStream<TcpStream>>()?
        .get_ref()
        .1
        .peer_certificates()?;
    let leaf = certificates.first()?;
    // One agent per certificate, as the dialler checks it: one naming several (or
    // none) identifies none.
    let mut names = damrey_service::tls::agent_names(leaf);
    let agent = (names.len() == 1).then(|| names.remove(0));
    Some(VerifiedClient { agent })
}

#[utoipa::path(get, path = "/peer", tag = "sessions",
    responses(
        (status = 101, description = "Switching to the WebSocket of the peer link",
            headers(("damrey-agent-run" = String, description = "This agent run's id"))),
        (status = 400, description = "The request is no WebSocket upgrade (no body)"),
        (status = 403, description = "The token's roles do not include agent, or under mutual TLS no client certificate came or it names no agent", body = ErrorBody),
    ))]
/// Checks the client certificate under mutual TLS (the token was checked before): it
/// must name an agent. Upgrades, and serves the link until it closes.
pub async fn peer(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    // Under mutual TLS the peer is the agent its certificate names; frames from it are
    // then taken on that identity (see `peers::serve_incoming`).
    let peer = if state.peer_certificate_required {
        let client = req
            .conn_data::<VerifiedClient>()
            .ok_or(ApiError::NoPeerCertificate)?;
        let Some(agent) = client.agent.clone() else {
            let error = ApiError::PeerNamesNoAgent;
            tracing::warn!(peer = ?req.peer_addr(), error = %error, "refused a peer link");
            return Err(error.into());
        };
        Some(agent)
    } else {
        None
    };
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
        peer,
        connection,
    ));
    Ok(response)
}
