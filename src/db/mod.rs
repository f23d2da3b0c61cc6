//! The connection pool, schema migrations and the TimescaleDB bootstrapper.

pub mod migrate;
pub mod timescale;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;

/// Health probes and request handlers must fail fast when the database is gone rather than
/// queue behind a pool that cannot connect.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "could not connect to the database at {target} within {waited}s ({attempts} attempts; \
         set Database__StartupTimeoutSeconds to wait longer): {last_error}"
    )]
    GaveUp { target: String, waited: u64, attempts: u32, last_error: String },
    #[error("shutdown requested while waiting for the database")]
    Cancelled,
}

pub fn pool_options(config: &DatabaseConfig) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(true)
}

/// Connects, retrying with capped exponential backoff until the configured deadline: in a
/// compose stack the database container often accepts connections seconds after the portal
/// starts.
pub async fn connect(config: &DatabaseConfig, shutdown: &CancellationToken) -> Result<PgPool, ConnectError> {
    let target = config.describe();
    tracing::info!(database = %target, "Database connection resolved via {}", config.source);
    let started = Instant::now();
    let deadline = started + config.startup_timeout;
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let attempt = pool_options(config).connect_with(config.connect.clone());
        let error = tokio::select! {
            result = tokio::time::timeout_at(deadline, attempt) => match result {
                Ok(Ok(pool)) => {
                    let version: String = sqlx::query_scalar("SHOW server_version")
                        .fetch_one(&pool)
                        .await
                        .unwrap_or_else(|_| "unknown".into());
                    tracing::info!(database = %target, server_version = %version, attempts, "Connected to PostgreSQL");
                    return Ok(pool);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connection attempt timed out".to_string(),
            },
            () = shutdown.cancelled() => return Err(ConnectError::Cancelled),
        };
        let now = Instant::now();
        if now + delay >= deadline {
            return Err(ConnectError::GaveUp {
                target,
                waited: (now - started).as_secs(),
                attempts,
                last_error: error,
            });
        }
        tracing::warn!(database = %target, attempt = attempts, retry_in_ms = delay.as_millis() as u64,
            "Database not reachable yet: {error}");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Err(ConnectError::Cancelled),
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}
