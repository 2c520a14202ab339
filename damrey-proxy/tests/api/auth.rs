//! Credentials: `DAMREY_TOKEN` (every role) and the role tokens, on every endpoint but
//! the probes (`/healthz`, `/readyz`), `/metrics` and the dashboard page.

use crate::helpers::{Api, SEED, TestApp, spawn_app_with};

async fn spawn_with_token() -> TestApp {
    spawn_app_with(|settings| settings.token = Some("s3cret".into())).await
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

async fn spawn_with_roles() -> TestApp {
    spawn_app_with(|settings| {
        settings.admin_token = Some("adm".into());
        settings.agent_token = Some("agt".into());
        settings.read_token = Some("rd".into());
        settings.worker_token = Some("wrk".into());
    })
    .await
}

#[actix_web::test]
async fn each_role_opens_its_endpoints_and_is_refused_403_elsewhere() {
    let app = spawn_with_roles().await;
    let (admin, agent, read, worker) = (
        app.api.with_token(Some("adm")),
        app.api.with_token(Some("agt")),
        app.api.with_token(Some("rd")),
        app.api.with_token(Some("wrk")),
    );
    let heartbeat = r#"{"agent":"127.0.0.1:7701"}"#;

    // Config writes are the admin's.
    for writer in [&agent, &read, &worker] {
        let reply = writer.add(SEED).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(
            reply.error().ends_with("it needs the role admin"),
            "{}",
            reply.error()
        );
        assert_eq!(writer.forget("127.0.0.1:7701").await.status, 403);
    }
    assert_eq!(admin.add(SEED).await.status, 201);
    assert_eq!(admin.chg(SEED).await.status, 200);
    // Heartbeats are the agents'.
    for other in [&admin, &read, &worker] {
        assert_eq!(other.heartbeat(heartbeat).await.status, 403);
    }
    assert_eq!(agent.heartbeat(heartbeat).await.status, 200);
    // Agents read configs and placement; readers read those, stats and alarms.
    for reader in [&admin, &agent, &read] {
        assert_eq!(reader.workers().await.status, 200);
        assert_eq!(reader.worker("entry").await.status, 200);
        assert_eq!(reader.agents().await.status, 200);
    }
    for reader in [&admin, &read] {
        assert_eq!(reader.stats(None).await.status, 200);
        assert_eq!(reader.alarms(false).await.status, 200);
    }
    assert_eq!(worker.workers().await.status, 403);
    assert_eq!(agent.stats(None).await.status, 403);
    assert_eq!(agent.alarms(false).await.status, 403);
    // No role token is the shared one, and none passes without a token.
    assert_eq!(app.api.with_token(None).workers().await.status, 401);
    assert_eq!(
        app.api.with_token(Some("s3cret")).workers().await.status,
        401
    );
    assert_eq!(admin.del(SEED).await.status, 200);
}

#[actix_web::test]
async fn a_percent_encoded_path_needs_the_role_of_the_route_it_reaches() {
    let app = spawn_with_roles().await;
    let read = app.api.with_token(Some("rd"));
    let heartbeat = r#"{"agent":"127.0.0.1:7701"}"#;

    // Each of these is routed to /worker/add, /agents/heartbeat, /agents/forget.
    let add = read.post("/worker/%61dd", SEED).await;
    let beat = read.post("/agents/%68eartbeat", heartbeat).await;
    let forget = read
        .post("/agents/%66orget", r#"{"agent":"127.0.0.1:7701"}"#)
        .await;

    for reply in [&add, &beat, &forget] {
        assert_eq!(reply.status, 403, "{reply:?}");
    }
    assert_eq!(read.workers().await.body["workers"], serde_json::json!([]));
    // A path no rule names needs the admin's credential: it fails closed.
    assert_eq!(read.get("/nope").await.status, 403);
    assert_eq!(
        app.api.with_token(Some("adm")).get("/nope").await.status,
        404
    );
}

#[actix_web::test]
async fn the_shared_token_still_opens_everything_beside_the_role_tokens() {
    let app = spawn_app_with(|settings| {
        settings.token = Some("s3cret".into());
        settings.read_token = Some("rd".into());
    })
    .await;
    let shared = app.api.with_token(Some("s3cret"));

    assert_eq!(shared.add(SEED).await.status, 201);
    assert_eq!(shared.heartbeat(r#"{"agent":"h:1"}"#).await.status, 200);
    assert_eq!(shared.stats(None).await.status, 200);
    assert_eq!(app.api.with_token(Some("rd")).add(SEED).await.status, 403);
}
