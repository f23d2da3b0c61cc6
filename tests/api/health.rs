use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tau_acuvim_portal::db;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, request};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::helpers::{Proxy, get, test_app, test_config, wait_for};

async fn send(app: &Router, req: request::Builder) -> (StatusCode, HeaderMap, String) {
    send_body(app, req, "").await
}

async fn send_body(app: &Router, req: request::Builder, body: &'static str) -> (StatusCode, HeaderMap, String) {
    let res = app.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, headers, body)
}

#[sqlx::test]
async fn liveness_and_readiness_answer_healthy(pool: PgPool) {
    let config = test_config(&crate::helpers::admin_options());
    let app = test_app(pool, config).await;
    assert_eq!(get(&app, "/health").await, (StatusCode::OK, "Healthy".to_string()));
    assert_eq!(get(&app, "/health/ready").await, (StatusCode::OK, "Healthy".to_string()));
}

#[sqlx::test]
async fn responses_carry_a_request_id(pool: PgPool) {
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
    // Liveness is about the process, not the database, whatever cookie comes with the probe.
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
    let cookie = "tau_session=not-a-session-but-looks-like-one";
    assert_eq!(send(&app, Request::get("/health").header("cookie", cookie)).await.0, StatusCode::OK);

    // Pages, the API and the Grafana gate say the database is unavailable (503 + Retry-After),
    // not a generic 500.
    let (status, headers, body) = send(&app, Request::get("/sites").header("cookie", cookie)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    assert!(body.contains("Database unavailable") && body.contains("cannot reach its database"), "{body}");
    let ingest = Request::post("/api/ingest")
        .header("authorization", "Bearer taukey_0000000000000000000000000000000000000000000")
        .header("content-type", "application/json");
    let (status, headers, body) = send_body(&app, ingest, r#"{"measurements": []}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "5");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["error"].as_str().unwrap().contains("cannot reach its database"), "{json}");
    let gate = Request::get("/api/auth/check").header("cookie", cookie);
    assert_eq!(send(&app, gate).await.0, StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore().await;
    wait_for("readiness to recover", Duration::from_secs(15), || async {
        (get(&app, "/health/ready").await.0 == StatusCode::OK).then_some(())
    })
    .await;
}
