//! Unknown paths and wrong methods answer JSON too.

use actix_web::http::Method;
use actix_web::web::Bytes;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn unknown_paths_answer_404_as_json() {
    let app = spawn_app().await;

    for path in ["/nope", "/worker/get", "/workers", "/worker/add/x"] {
        let reply = app.api.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.error(), format!("no route for GET {path}"));
    }
}

#[actix_web::test]
async fn wrong_methods_answer_405_as_json_with_allow() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/worker/add", "POST"),
        (Method::GET, "/worker/del", "POST"),
        (Method::PUT, "/worker/chg", "POST"),
        (Method::POST, "/workers/get", "GET"),
        (Method::DELETE, "/workers/entry", "GET"),
        (Method::POST, "/healthz", "GET"),
        (Method::GET, "/agents/heartbeat", "POST"),
        (Method::POST, "/agents", "GET"),
    ];

    for (method, path, allowed) in cases {
        let reply = app
            .api
            .request(method.clone(), path, None, Bytes::new())
            .await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(
            reply.error(),
            format!("method {method} is not allowed on {path}; use {allowed}")
        );
        assert_eq!(reply.headers.get("allow").unwrap(), allowed);
    }
}
