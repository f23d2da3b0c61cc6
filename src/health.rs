//! Liveness and readiness probes (runbook: "Health & monitoring").

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::app::AppState;

/// Readiness answers within this even when the database hangs, so orchestrators get a verdict
/// rather than their own timeout.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(live)).route("/health/ready", get(ready))
}

/// The process is up and serving HTTP.
async fn live() -> &'static str {
    "Healthy"
}

/// The database answers `SELECT 1` within [`READY_TIMEOUT`]. Recovers by itself when the database
/// returns: the pool tests connections before handing them out and reconnects.
async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    let probe = sqlx::query("SELECT 1").execute(&state.db);
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "Healthy"),
        Ok(Err(e)) => {
            tracing::warn!("Readiness check failed: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "Unhealthy")
        }
        Err(_) => {
            tracing::warn!("Readiness check failed: the database did not answer within {READY_TIMEOUT:?}");
            (StatusCode::SERVICE_UNAVAILABLE, "Unhealthy")
        }
    }
}
