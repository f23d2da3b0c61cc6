use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tau_acuvim_portal::db;

use crate::helpers::{Proxy, get, test_app, test_config, wait_for};

#[sqlx::test]
async fn liveness_and_readiness_answer_healthy(pool: PgPool) {
    let config = test_config(&crate::helpers::admin_options());
    let app = test_app(pool, config).await;
    assert_eq!(get(&app, "/health").await, (StatusCode::OK, "Healthy".to_string()));
    assert_eq!(get(&app, "/health/ready").await, (StatusCode::OK, "Healthy".to_string()));
}

#[sqlx::test]
async fn responses_carry_a_request_id(pool: PgPool) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let app = test_app(pool, test_config(&crate::helpers::admin_options())).await;
    let res = app.oneshot(Request::get("/health").body(Body::empty()).unwrap()).await.unwrap();
    let id = res.headers().get("x-request-id").expect("x-request-id header").to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

/// The database goes away while the portal runs: readiness turns 503 without hanging, and comes
/// back to 200 by itself when the database returns.
#[sqlx::test]
async fn readiness_follows_the_database_going_away_and_coming_back(_: PgPoolOptions, options: PgConnectOptions) {
    let mut proxy = Proxy::new();
    proxy.restore().await;
    let through_proxy = proxy.options().database(options.get_database().unwrap());
    let config = test_config(&through_proxy);
    let pool = db::pool_options(&config.database).connect_with(through_proxy).await.unwrap();
    let app = test_app(pool, config).await;
    assert_eq!(get(&app, "/health/ready").await.0, StatusCode::OK);

    proxy.cut();
    let body = wait_for("readiness to report 503", Duration::from_secs(15), || async {
        let (status, body) = get(&app, "/health/ready").await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some(body)
    })
    .await;
    assert_eq!(body, "Unhealthy");
    // Liveness is about the process, not the database.
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);

    proxy.restore().await;
    wait_for("readiness to recover", Duration::from_secs(15), || async {
        (get(&app, "/health/ready").await.0 == StatusCode::OK).then_some(())
    })
    .await;
}
