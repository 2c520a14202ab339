//! `/healthz` (liveness) and `/readyz` (the store answers and its migrations ran).

use crate::helpers::spawn_app;

#[actix_web::test]
async fn readyz_is_200_when_the_store_answers_and_every_migration_ran() {
    let app = spawn_app().await;

    let reply = app.api.readyz().await;

    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, serde_json::json!({"status": "ready"}));
}

#[actix_web::test]
async fn readyz_is_503_naming_a_migration_that_has_not_run() {
    let app = spawn_app().await;
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(app.store.pool())
        .await
        .unwrap();

    let reply = app.api.readyz().await;

    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.body["status"], "not ready");
    assert_eq!(
        reply.body["reason"],
        format!("migration {newest} has not run on the store")
    );
    assert_eq!(app.api.healthz().await.status, 200, "alive all the same");
}

#[actix_web::test]
async fn readyz_and_healthz_are_503_when_the_store_does_not_answer() {
    let app = spawn_app().await;
    app.store.close().await;

    let ready = app.api.readyz().await;

    assert_eq!(ready.status, 503, "{ready:?}");
    assert_eq!(
        ready.body,
        serde_json::json!({"status": "not ready", "reason": "the store is unavailable"})
    );
    assert_eq!(app.api.healthz().await.status, 503);
}
