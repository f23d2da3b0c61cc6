//! Application state, router assembly, and the startup and shutdown sequences (DESIGN.md
//! section 2): resolve the database, apply migrations, run the Timescale bootstrapper, seed the
//! default admin, then serve until SIGTERM/SIGINT and drain within a deadline.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::seed::{self, SeedError};
use crate::config::Config;
use crate::db::migrate::{self, MigrationError};
use crate::db::{self, ConnectError, timescale};
use crate::{health, telemetry};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub config: Arc<Config>,
}

/// The whole HTTP surface. Tests drive it with `oneshot`; `serve` binds it.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .with_state(state)
        // Outermost last: the request id exists before the trace span reads it, and is echoed
        // in the response so a user can quote it.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(telemetry::http_trace_layer())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("TimescaleDB bootstrap failed: {0}")]
    Timescale(sqlx::Error),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl StartupError {
    /// A shutdown requested before the portal was up is a clean exit, not a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, StartupError::Connect(ConnectError::Cancelled))
    }
}

/// Connect, migrate, bootstrap: what both `serve` and `migrate` need.
async fn prepare_database(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<PgPool, StartupError> {
    let pool = db::connect(&config.database, shutdown).await?;
    let applied = migrate::run(&pool, &migrate::MIGRATOR).await?;
    if applied.is_empty() {
        tracing::info!("Database schema is up to date");
    }
    timescale::bootstrap(&pool)
        .await
        .map_err(StartupError::Timescale)?;
    Ok(pool)
}

/// `tau-portal migrate`: apply migrations and the bootstrapper, then exit.
pub async fn migrate(config: Config) -> Result<(), StartupError> {
    let shutdown = shutdown_on_signal();
    let pool = prepare_database(&config, &shutdown).await?;
    pool.close().await;
    Ok(())
}

/// `tau-portal serve`: the full startup sequence, then serve until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let shutdown = shutdown_on_signal();
    let pool = prepare_database(&config, &shutdown).await?;
    seed::seed_default_admin(&pool, &config).await?;

    let addr = config.listen_address;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let shutdown_timeout = config.shutdown_timeout;
    let state = AppState {
        db: pool.clone(),
        config: Arc::new(config),
    };
    tracing::info!(
        address = %addr,
        run_mode = ?state.config.run_mode,
        environment = ?state.config.environment,
        version = env!("CARGO_PKG_VERSION"),
        "Portal listening on http://{addr}"
    );

    let server = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let drain_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        result = server => result.map_err(StartupError::Serve)?,
        () = drain_deadline => tracing::warn!(
            timeout_s = shutdown_timeout.as_secs(),
            "Shutdown deadline reached with requests still in flight; closing them"
        ),
    }

    pool.close().await;
    tracing::info!("Shutdown complete");
    Ok(())
}

/// A token cancelled on the first SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(
            signal,
            "Shutdown signal received; draining in-flight requests"
        );
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; never resolve.
        tracing::error!("Could not install signal handlers; graceful shutdown is unavailable");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
