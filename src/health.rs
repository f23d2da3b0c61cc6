//! Liveness and readiness probes (runbook: "Health & monitoring").

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::state::AppState;

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

/// `tau-portal healthcheck`: asks the running portal's `/health` on this host, for the
/// container's HEALTHCHECK (the image has no curl). A wildcard listen address is probed on
/// loopback.
pub async fn probe(listen: std::net::SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let exchange = async {
        let mut stream =
            tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(String::from_utf8_lossy(&reply).into_owned())
    };
    let reply = tokio::time::timeout(READY_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within {READY_TIMEOUT:?}"))??;
    if reply.starts_with("HTTP/1.1 200") && reply.ends_with("Healthy") {
        Ok(())
    } else {
        Err(format!("unexpected answer from {addr}: {}", reply.lines().next().unwrap_or("(empty)")))
    }
}
