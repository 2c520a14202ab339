//! `GET /openapi.json`: the OpenAPI 3.1 document of the agent's API, made from the
//! handlers' annotations and the types their bodies are. Which operations need a
//! token, and of which role, is read from [`crate::auth::roles_for`], the rule the
//! middleware applies.

use actix_web::HttpResponse;
use damrey_wire::rest::ErrorBody;
use utoipa::{OpenApi, ToSchema};

use super::{attach, call, health, metrics, peer};
use crate::auth::roles_for;

/// The agent's API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Damrey agent",
        description = "Calls into the mesh, the worker and peer WebSockets, health and stats of one agent. Errors are `{\"error\": \"...\"}`; an unknown path answers 404 as JSON."
    ),
    paths(
        call::call, attach::attach, peer::peer, metrics::metrics, metrics::stats,
        health::healthz, health::readyz, document
    ),
    modifiers(&Credentials)
)]
pub struct ApiDoc;

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    description = "Open without a token, like `/metrics`: it describes the API and holds no data.",
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The bearer scheme on the operations [`roles_for`] guards.
struct Credentials;

impl utoipa::Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        damrey_service::openapi::finish(openapi, |_, path| roles_for(path), &ErrorBody::name());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::http::Method;
    use damrey_service::openapi::{check, operations};
    use serde_json::Value;

    use super::*;
    use crate::config::Settings;
    use crate::routes::ROUTES;
    use crate::startup::Application;

    /// The document as JSON, as `/openapi.json` serves it.
    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    /// An agent on port 0 whose proxy does not answer, with a token; its address.
    fn spawn_agent() -> String {
        let settings = Settings {
            host: "127.0.0.1".to_owned(),
            port: 0,
            proxy: "127.0.0.1:9".to_owned(),
            token: Some("s3cret".into()),
            state_dir: std::env::temp_dir()
                .join(format!("damrey-openapi-{}", uuid::Uuid::new_v4())),
            ..Settings::default()
        };
        let app = Application::build(settings).unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        actix_rt::spawn(app.run_until_stopped());
        address
    }

    /// `method path` with `body`, with the token when `token`: status and body.
    async fn send(
        address: &str,
        method: Method,
        path: &str,
        body: &str,
        token: bool,
    ) -> (u16, Vec<u8>) {
        let mut request = awc::Client::default().request(method, format!("{address}{path}"));
        if token {
            request = request.bearer_auth("s3cret");
        }
        let mut response = request.send_body(body.to_owned()).await.unwrap();
        let body = response.body().await.unwrap();
        (response.status().as_u16(), body.to_vec())
    }

    #[test]
    fn the_document_describes_every_registered_route_and_no_other() {
        let registered: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|endpoint| (endpoint.method.to_owned(), endpoint.path.to_owned()))
            .collect();

        assert_eq!(operations(&ApiDoc::openapi()), registered);
    }

    #[actix_web::test]
    async fn every_documented_operation_is_served_and_guarded_as_documented() {
        let address = spawn_agent();
        let document = document();

        let (status, served) = send(&address, Method::GET, "/openapi.json", "", false).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_slice::<Value>(&served).unwrap(), document);
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        for (method, path) in operations(&ApiDoc::openapi()) {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let concrete = path.replace("{worker}", "nobody");
            let operation = &document["paths"][&path][method.as_str().to_lowercase()];

            let (status, body) = send(&address, method.clone(), &concrete, "", true).await;
            let (anonymous, _) = send(&address, method.clone(), &concrete, "", false).await;

            let unrouted = status == 404 && String::from_utf8_lossy(&body).contains("no route for");
            assert!(
                !unrouted && status != 405,
                "{method} {path} is not served: {status}"
            );
            assert!(
                operation["responses"][status.to_string()].is_object(),
                "{method} {path} answered {status}, which the document does not list"
            );
            assert_eq!(
                anonymous == 401,
                operation.get("security").is_some(),
                "{method} {path}"
            );
        }
    }

    #[actix_web::test]
    async fn a_call_takes_the_documented_example_and_answers_a_documented_message() {
        let address = spawn_agent();
        let document = document();
        let request = &document["paths"]["/call/{worker}"]["post"];
        let schema = &request["requestBody"]["content"]["application/json"]["schema"];
        let message = &document["components"]["schemas"]["Message"];
        let example = &message["examples"][0];

        let (status, body) = send(
            &address,
            Method::POST,
            "/call/sqsum?timeout_ms=200",
            &example.to_string(),
            true,
        )
        .await;

        assert_eq!(example, &serde_json::json!(["REQUEST", "sqsum", "3", "4"]));
        assert_eq!(check(&document, schema, example), Ok(()));
        assert_eq!(
            check(&document, schema, &serde_json::json!(["HELLO"])),
            Err(
                r#"/0: "HELLO" is not one of ["REQUEST","RESPONSE","ERROR","STOP","TIMEOUT"]"#
                    .to_owned()
            ),
            "a message starts with a tag"
        );
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let documented =
            &request["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert_ne!(status, 400, "{answer}");
        assert_eq!(
            check(&document, documented, &answer),
            Ok(()),
            "{status} {answer}"
        );
    }
}
