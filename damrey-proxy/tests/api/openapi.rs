//! `GET /openapi.json`: the document describes every route the app registers and no
//! other, its request schemas take the bodies the handlers take, and it needs no token.

use std::collections::BTreeSet;

use actix_web::http::Method;
use damrey_proxy::routes::ROUTES;
use damrey_proxy::routes::openapi::ApiDoc;
use damrey_service::openapi::{check, operations};
use serde_json::{Value, json};
use utoipa::OpenApi;

use crate::helpers::{Api, SEED, TestApp, spawn_app_with};

async fn spawn_with_token() -> TestApp {
    spawn_app_with(|settings| settings.token = Some("s3cret".into())).await
}

/// The document as JSON, as `/openapi.json` serves it.
fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

/// The schema of the JSON request body of `POST path`.
fn request_schema<'a>(document: &'a Value, path: &str) -> &'a Value {
    &document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
}

/// The first example of the schema a request body refers to.
fn example(document: &Value, path: &str) -> Value {
    let target = request_schema(document, path)["$ref"].as_str().unwrap();
    let name = target.rsplit('/').next().unwrap();
    let schema = &document["components"]["schemas"][name];
    schema
        .get("examples")
        .and_then(|examples| examples.get(0))
        .or(schema.get("example"))
        .unwrap_or_else(|| panic!("{name} has no example"))
        .clone()
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
async fn the_document_is_served_without_a_token_with_the_crate_version() {
    let app = spawn_with_token().await;
    let anonymous = Api::new(&app.address, None);

    let reply = anonymous.get("/openapi.json").await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, document());
    assert_eq!(reply.body["openapi"], "3.1.0");
    assert_eq!(reply.body["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[actix_web::test]
async fn every_documented_operation_is_served_and_guarded_as_documented() {
    let app = spawn_with_token().await;
    let anonymous = Api::new(&app.address, None);
    let document = document();

    for (method, path) in operations(&ApiDoc::openapi()) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let concrete = path.replace("{name}", "nobody");
        let operation = &document["paths"][&path][method.as_str().to_lowercase()];

        let (status, body) = app.api.raw(method.clone(), &concrete, "{}").await;
        let (anonymous_status, _) = anonymous.raw(method.clone(), &concrete, "{}").await;

        let unrouted = status == 404 && String::from_utf8_lossy(&body).contains("no route for");
        assert!(
            !unrouted && status != 405,
            "{method} {path} is not served: {status}"
        );
        assert!(
            operation["responses"][status.to_string()].is_object(),
            "{method} {path} answered {status}, which the document does not list"
        );
        let guarded = operation.get("security").is_some();
        assert_eq!(anonymous_status == 401, guarded, "{method} {path}");
    }
}

#[actix_web::test]
async fn the_documented_worker_example_is_taken_by_the_schema_and_the_handlers() {
    let app = spawn_with_token().await;
    let document = document();
    let schema = request_schema(&document, "/worker/add");
    let worker = example(&document, "/worker/add");

    assert_eq!(check(&document, schema, &worker), Ok(()));
    let seed: Value = serde_json::from_str(SEED).unwrap();
    assert_eq!(check(&document, schema, &seed), Ok(()));
    for path in ["/worker/add", "/worker/chg", "/worker/del"] {
        assert_eq!(request_schema(&document, path), schema, "{path}");
        let reply = app.api.post(path, worker.to_string()).await;
        assert!(reply.status < 300, "{path}: {reply:?}");
    }
}

#[actix_web::test]
async fn a_field_the_schema_refuses_is_refused_by_the_handler_too() {
    let app = spawn_with_token().await;
    let document = document();
    let extra = json!({"name": "add", "colour": "red"});

    let verdict = check(&document, request_schema(&document, "/worker/add"), &extra);
    let reply = app.api.add(&extra).await;

    assert_eq!(verdict, Err("/colour: no such field is allowed".to_owned()));
    assert_eq!(reply.status, 400, "{reply:?}");
}

#[actix_web::test]
async fn the_documented_heartbeat_and_forget_examples_are_taken() {
    let app = spawn_with_token().await;
    let document = document();
    let heartbeat = example(&document, "/agents/heartbeat");
    let forget = example(&document, "/agents/forget");

    let checks = [
        check(
            &document,
            request_schema(&document, "/agents/heartbeat"),
            &heartbeat,
        ),
        check(
            &document,
            request_schema(&document, "/agents/forget"),
            &forget,
        ),
    ];
    let beat = app.api.heartbeat(&heartbeat).await;
    let forgotten = app.api.post("/agents/forget", forget.to_string()).await;

    assert_eq!(checks, [Ok(()), Ok(())]);
    assert_eq!(beat.status, 200, "{beat:?}");
    assert_eq!(forgotten.status, 200, "{forgotten:?}");
}
