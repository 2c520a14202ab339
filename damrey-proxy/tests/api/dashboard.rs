//! `GET /`: the dashboard page, served without a token and with nothing from elsewhere.

use std::time::Duration;

use actix_web::http::Method;
use actix_web::web::Bytes;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// `GET /` without a token: the status, the headers and the body as text.
async fn fetch_page(app: &TestApp) -> (u16, actix_web::http::header::HeaderMap, String) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let mut response = client
        .get(format!("{}/", app.address))
        .send()
        .await
        .expect("the proxy answers");
    let body = response
        .body()
        .limit(1 << 20)
        .await
        .expect("reading the page");
    (
        response.status().as_u16(),
        response.headers().clone(),
        String::from_utf8(body.to_vec()).expect("the page is UTF-8"),
    )
}

#[actix_web::test]
async fn the_dashboard_is_one_html_page_served_without_a_token() {
    let app = spawn_app_with(|settings| settings.token = Some("s3cret".into())).await;

    let (status, headers, page) = fetch_page(&app).await;

    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(page.starts_with("<!doctype html>"), "{page:.80}");
    assert!(page.contains("Authorization"), "the script sends the token");
    assert!(
        page.contains("#token="),
        "the page says how to give it a token"
    );
    // The data stays behind the token.
    let anonymous = app.api.with_token(None);
    assert_eq!(anonymous.workers().await.status, 401);
    assert_eq!(anonymous.agents().await.status, 401);
}

#[actix_web::test]
async fn the_dashboard_loads_nothing_from_elsewhere_and_never_uses_inner_html() {
    let app = spawn_app().await;

    let (_, headers, page) = fetch_page(&app).await;

    for external in [
        "<script src",
        "<link",
        "@import",
        "url(http",
        "src=\"http",
        "href=\"http",
    ] {
        assert!(!page.contains(external), "the page contains {external:?}");
    }
    assert!(
        !page.contains("innerHTML"),
        "the page must not write markup from data"
    );
    let policy = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
}

#[actix_web::test]
async fn only_get_reaches_the_dashboard() {
    let app = spawn_app().await;

    let reply = app.api.request(Method::POST, "/", None, Bytes::new()).await;

    assert_eq!(reply.status, 405);
    assert_eq!(reply.error(), "method POST is not allowed on /; use GET");
    assert_eq!(reply.headers.get("allow").unwrap(), "GET");
}
