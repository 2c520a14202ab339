//! `DAMREY_TOKEN`: a bearer token on every endpoint but the probes (`/healthz`, `/readyz`),
//! `/metrics` and the dashboard page.

use crate::helpers::{Api, SEED, TestApp, spawn_app_with};

async fn spawn_with_token() -> TestApp {
    spawn_app_with(|settings| settings.token = Some("s3cret".to_owned())).await
}

#[actix_web::test]
async fn without_a_token_every_endpoint_but_the_probes_answers_401() {
    let app = spawn_with_token().await;
    let anonymous = Api::new(&app.address, None);

    let replies = [
        anonymous.add(SEED).await,
        anonymous.del(SEED).await,
        anonymous.chg(SEED).await,
        anonymous.workers().await,
        anonymous.worker("entry").await,
        anonymous.heartbeat(r#"{"agent":"h:1"}"#).await,
        anonymous.agents().await,
        anonymous.forget("h:1").await,
        anonymous.stats(None).await,
        anonymous.alarms(true).await,
        anonymous.get("/nope").await,
    ];

    for reply in replies {
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(
            reply.error(),
            "missing or wrong bearer token; send Authorization: Bearer <token>"
        );
        assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    assert_eq!(anonymous.healthz().await.status, 200);
    assert_eq!(anonymous.readyz().await.status, 200);
    assert_eq!(anonymous.probe("/").await, Some(200));
}

#[actix_web::test]
async fn a_wrong_token_answers_401_and_changes_nothing() {
    let app = spawn_with_token().await;

    for token in ["wrong", "s3cre", "s3cret2", ""] {
        let reply = app.api.with_token(Some(token)).add(SEED).await;
        assert_eq!(reply.status, 401, "{token:?}");
    }
    assert_eq!(
        app.api.workers().await.body["workers"],
        serde_json::json!([])
    );
}

#[actix_web::test]
async fn the_right_token_is_let_through() {
    let app = spawn_with_token().await;

    assert_eq!(app.api.add(SEED).await.status, 201);
    assert_eq!(app.api.workers().await.status, 200);
    assert_eq!(app.api.healthz().await.status, 200);
}
