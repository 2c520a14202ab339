//! The agent's side of an internal link's WebSocket (a worker's session, or a link
//! another agent opened): the upgrade, which agrees on the form of the frames
//! ([`damrey_wire::binary`]), and writing encoded frames.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Session;
use damrey_wire::binary::{BATCH, BINARY, Encoded, FORM_HEADER, Form, coalesce};

/// An accepted WebSocket of an internal link.
pub struct Connection {
    /// Where frames are written.
    pub session: Session,
    /// Where frames are read.
    pub stream: actix_ws::MessageStream,
    /// How this side writes its frames: binary when the other side offered it.
    pub form: Form,
}

/// Accepts the upgrade in `req`: the `101` answer (saying so when the frames will be
/// binary) and the connection.
///
/// # Errors
/// The request is no WebSocket upgrade.
pub fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(HttpResponse, Connection), actix_web::Error> {
    let form = Form::agreed(req.headers().get(FORM_HEADER).map(HeaderValue::as_bytes));
    let (mut response, session, stream) = actix_ws::handle(req, body)?;
    if form == Form::Binary {
        response.headers_mut().insert(
            HeaderName::from_static(FORM_HEADER),
            HeaderValue::from_static(BINARY),
        );
    }
    Ok((
        response,
        Connection {
            session,
            stream,
            form,
        },
    ))
}

/// Writes `frames`, binary ones joined into messages of up to [`BATCH`] (a larger frame
/// alone).
///
/// # Errors
/// The connection closed.
pub async fn write(
    session: &mut Session,
    frames: impl IntoIterator<Item = Encoded>,
) -> Result<(), actix_ws::Closed> {
    for message in coalesce(frames, BATCH) {
        match message {
            Encoded::Text(text) => session.text(text).await?,
            Encoded::Binary(bytes) => session.binary(bytes).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use actix_web::{App, test};

    use super::*;

    async fn answer(offer: Option<&str>) -> Option<String> {
        let app = test::init_service(App::new().route(
            "/ws",
            web::get().to(|req: HttpRequest, body: web::Payload| async move {
                upgrade(&req, body).map(|(response, _connection)| response)
            }),
        ))
        .await;
        let mut request = test::TestRequest::get()
            .uri("/ws")
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="));
        if let Some(offer) = offer {
            request = request.insert_header((FORM_HEADER, offer));
        }
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), 101);
        response
            .headers()
            .get(FORM_HEADER)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    #[actix_rt::test]
    async fn binary_frames_are_agreed_only_when_the_other_side_offers_them() {
        assert_eq!(answer(Some(BINARY)).await.as_deref(), Some(BINARY));
        assert_eq!(answer(None).await, None, "an older client speaks JSON");
        assert_eq!(
            answer(Some("cbor")).await,
            None,
            "a form this build does not speak"
        );
    }
}
