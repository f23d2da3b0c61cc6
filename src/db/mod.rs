//! The connection pool, schema migrations, the TimescaleDB bootstrapper and Grafana's read-only
//! role.

pub mod migrate;
pub mod reader;
pub mod timescale;

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;

/// Health probes and request handlers must fail fast when the database is gone rather than
/// queue behind a pool that cannot connect.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A host that drops packets (rather than refusing) must not eat the whole startup budget.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Runs a request's database write as a task of its own, so it finishes (commits or rolls back)
/// even when the request's future is dropped: a client that goes away mid-request (a Client
/// portal killed mid-push, a proxy's timeout) cancels its handler. Dropped while waiting for the
/// answer to its `BEGIN`, sqlx 0.9 has not yet counted the transaction and queues no rollback,
/// so the pooled connection stayed inside an open transaction; in the fleet ingest it held the
/// customer's batch lock and every later batch of that customer failed (the fleet test, which
/// kills a Client mid-push; PostgreSQL warned "there is already a transaction in progress").
pub async fn uncancelled<T: Send + 'static>(
    write: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
) -> crate::error::AppResult<T> {
    Ok(tokio::spawn(write).await.map_err(crate::error::AppError::internal)??)
}

/// The database's size on disk (tables, indexes, TOAST), for the usage figures of /metrics.
pub async fn size_bytes(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(db).await
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
        // One plain connection per attempt: the pool's own connect retries internally until its
        // acquire timeout, which would hide the attempts from the log.
        let attempt_deadline = deadline.min(Instant::now() + ATTEMPT_TIMEOUT);
        let attempt = PgConnection::connect_with(&config.connect);
        let error = tokio::select! {
            result = tokio::time::timeout_at(attempt_deadline, attempt) => match result {
                Ok(Ok(mut conn)) => {
                    let version: String = sqlx::query_scalar("SHOW server_version")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap_or_else(|_| "unknown".into());
                    conn.close().await.ok();
                    tracing::info!(database = %target, server_version = %version, attempts, "Connected to PostgreSQL");
                    return Ok(pool_options(config).connect_lazy_with(config.connect.clone()));
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
