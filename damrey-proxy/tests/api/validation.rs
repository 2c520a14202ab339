//! Bad input of every kind: 400 naming the problem, 413 above 64 KiB, and nothing changes.

use actix_web::http::Method;

use crate::helpers::{SEED, TestApp, spawn_app};

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(
        app.api.workers().await.body,
        serde_json::json!({"version": 0, "workers": []})
    );
}

#[actix_web::test]
async fn bad_worker_json_is_answered_400_naming_the_problem_on_every_write_route() {
    let app = spawn_app().await;
    let long = "x".repeat(65);
    let cases = [
        ("{", "EOF while parsing"),
        ("", "EOF while parsing"),
        ("true", "invalid type: boolean"),
        (r#"{"agent":""}"#, "missing field `name`"),
        (r#"{"name":"a","colour":"red"}"#, "unknown field `colour`"),
        (
            r#"{"name":"a","commands":[{"name":"t","wrker":"b"}]}"#,
            "unknown field `wrker`",
        ),
        (r#"{"name":""}"#, r#"name \"\" must not be empty"#),
        (
            &format!(r#"{{"name":"{long}"}}"#),
            "is 65 characters long, the most is 64",
        ),
        (r#"{"name":"a b"}"#, "contains ' '"),
        (
            r#"{"name":"x'; DROP TABLE workers;--"}"#,
            r#"contains '\''"#,
        ),
        (
            r#"{"name":"a","commands":[{"name":"t;--"}]}"#,
            r#"command name \"t;--\" contains ';'"#,
        ),
        (
            r#"{"name":"a","commands":[{"name":"t","worker":"b/c"}]}"#,
            "command worker",
        ),
        (
            r#"{"name":"a","commands":[{"name":"t"},{"name":"t"}]}"#,
            r#"command \"t\" is listed twice"#,
        ),
        (
            r#"{"name":"a","mpu":"ten"}"#,
            r#"mpu \"ten\" is not a whole number"#,
        ),
        (r#"{"name":"a","mpu":-1}"#, "mpu -1 is negative"),
        (r#"{"name":"a","agent":"nohost"}"#, "must be host:port"),
        (r#"{"name":"a","agent":"h:0"}"#, "port from 1 to 65535"),
        (r#"{"name":7}"#, "invalid type: integer"),
    ];

    for path in ["/worker/add", "/worker/chg", "/worker/del"] {
        for (body, expected) in &cases {
            let reply = app.api.post(path, *body).await;
            assert_eq!(reply.status, 400, "{path} {body}: {reply:?}");
            let expected = expected.replace(r#"\""#, "\"");
            assert!(
                reply.error().starts_with("invalid JSON body: ")
                    && reply.error().contains(&expected),
                "{path} {body}: `{}` lacks `{expected}`",
                reply.error()
            );
        }
    }
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn a_wrong_or_missing_content_type_is_answered_400() {
    let app = spawn_app().await;

    let json_only = "content type must be application/json";
    let utf8_only =
        "JSON bodies must be UTF-8; send application/json without a charset or with charset=utf-8";
    for (content_type, error) in [
        (Some("text/plain"), json_only),
        (Some("application/x-www-form-urlencoded"), json_only),
        (Some("text/json"), json_only),
        (None, json_only),
        (Some("application/json; charset=utf-16"), utf8_only),
        (Some("application/json; charset=iso-8859-1"), utf8_only),
    ] {
        let reply = app
            .api
            .request(Method::POST, "/worker/add", content_type, SEED)
            .await;
        assert_eq!(reply.status, 400, "{content_type:?}");
        assert_eq!(reply.error(), error, "{content_type:?}");
    }
    assert_nothing_stored(&app).await;
    for content_type in [
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
    ] {
        let reply = app
            .api
            .request(Method::POST, "/worker/add", Some(content_type), SEED)
            .await;
        assert_eq!(reply.status, 201, "{content_type:?}");
        app.api.del(SEED).await;
    }
}

#[actix_web::test]
async fn a_body_over_64_kib_is_answered_413_with_content_length() {
    let app = spawn_app().await;
    let body = format!(r#"{{"name":"big","agent":"{}"}}"#, "a".repeat(70_000));

    let reply = app.api.post("/worker/add", body).await;

    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.error(),
        "request body is larger than the limit of 65536 bytes"
    );
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn a_chunked_body_over_64_kib_is_answered_413_without_content_length() {
    let app = spawn_app().await;
    let body = format!(r#"{{"name":"big","agent":"{}"}}"#, "a".repeat(70_000));

    let reply = app.api.post_chunked("/worker/add", body.into_bytes()).await;

    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.error(),
        "request body is larger than the limit of 65536 bytes"
    );
    assert_nothing_stored(&app).await;
}

#[actix_web::test]
async fn a_body_of_exactly_64_kib_is_accepted_either_way() {
    let app = spawn_app().await;
    let padded = |json: &str| format!("{json}{}", " ".repeat(64 * 1024 - json.len()));

    let reply = app.api.post("/worker/add", padded(r#"{"name":"a"}"#)).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let reply = app
        .api
        .post_chunked("/worker/add", padded(r#"{"name":"b"}"#).into_bytes())
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
}

#[actix_web::test]
async fn bad_names_in_the_path_are_answered_400() {
    let app = spawn_app().await;

    let reply = app.api.worker("a%20b").await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.error(),
        r#"name "a b" contains ' '; only A-Z a-z 0-9 _ . - are allowed"#
    );
    let reply = app.api.worker(&"x".repeat(65)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("65 characters long"), "{reply:?}");
}

#[actix_web::test]
async fn bad_list_queries_are_answered_400() {
    let app = spawn_app().await;
    let cases = [
        ("after=x", "invalid digit"),
        ("after=1;DROP%20TABLE%20workers", "invalid digit"),
        ("after=1&wait_ms=-5", "invalid digit"),
        ("version=1", "unknown field `version`"),
        ("wait_ms=100", "wait_ms needs after"),
    ];

    for (query, expected) in cases {
        let reply = app.api.get(&format!("/workers/get?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(
            reply.error().contains(expected),
            "{query}: {}",
            reply.error()
        );
    }
}
