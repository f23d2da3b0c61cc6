//! Router assembly and the startup and shutdown sequences (DESIGN.md section 2): resolve the
//! database, apply migrations, run the Timescale bootstrapper, seed the default admin, then serve
//! until SIGTERM/SIGINT and drain within a deadline. The state handlers share is `state.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::auth::seed::{self, SeedError};
use crate::auth::sessions::Sessions;
use crate::clock::Clock;
use crate::config::{Config, RunMode};
use crate::db::migrate::{self, MigrationError};
use crate::db::reader::{self, ReaderRoleError};
use crate::db::timescale::Outcome;
use crate::db::{self, ConnectError, timescale};
use crate::error::AppError;
use crate::fleet::bootstrap::FleetStorage;
use crate::fleet::push::Pusher;
use crate::measurements::energy::{rebuild, rollup};
use crate::state::{AppState, StateError};
use crate::web::{csrf, errors, headers, session, static_files};
use crate::{
    alarms, auth, branding, dashboards, fleet, health, ingest, licence, metrics, mqtt, sites, tariffs, telemetry,
};

/// The whole HTTP surface. Tests drive it with `oneshot`; `serve` binds it.
///
/// Two stacks. The probes (`/health`, `/health/ready`) and the Grafana gate (`/api/auth/check`,
/// asked for every Grafana request) sit outside the pages' middleware: they need no CSRF check,
/// error page or security headers, and a probe must answer whatever cookie comes with it, also
/// while the database is away (the gate resolves its session itself). Everything else is a page
/// or an API call with the full stack.
///
/// Both run modes have sign-in, users, the audit log, branding, health and the Grafana gate; a
/// customer's portal has its sites, rates, dashboards and ingest API, the Admin its customers
/// and the fleet ingest.
pub fn router(state: AppState) -> Router {
    let own = match state.config.run_mode {
        RunMode::Client => Router::new()
            .merge(dashboards::router())
            .merge(sites::router())
            .merge(tariffs::router())
            .merge(ingest::router())
            .merge(mqtt::router())
            .merge(licence::client_router())
            .merge(fleet::client_router())
            .merge(alarms::router()),
        RunMode::Admin => fleet::admin_router().merge(licence::admin_router()),
    };
    let pages = Router::new()
        .merge(auth::routes::router())
        .merge(auth::users::router())
        .merge(branding::router())
        .merge(own)
        .route("/static/{name}", get(static_files::serve))
        .fallback(|| async { AppError::NotFound })
        // Innermost first: a panic becomes an error response the outer layers still dress;
        // CSRF needs the session; error pages need the session the resolver leaves on the
        // response; every response gets the security headers.
        .layer(catch_panic())
        // Read-only settings once a licence has run out: after the CSRF check (a forged form
        // is refused as such), before any handler.
        .layer(from_fn_with_state(state.clone(), licence::guard::read_only))
        .layer(from_fn_with_state(state.clone(), csrf::guard))
        .layer(from_fn_with_state(state.clone(), session::resolve))
        .layer(from_fn_with_state(state.clone(), errors::render_errors))
        .layer(from_fn_with_state(state.clone(), headers::security_headers));
    // The gate's 302 and 401 reach the browser through the proxy: they keep the security headers;
    // its errors are JSON with the request id like any /api answer.
    let probes = Router::new()
        .merge(health::router())
        .merge(auth::forward::router())
        .layer(catch_panic())
        .layer(from_fn_with_state(state.clone(), errors::render_errors))
        .layer(from_fn_with_state(state.clone(), headers::security_headers));
    Router::new()
        .merge(probes)
        .merge(pages)
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
        // Outermost last: the request id exists before the trace span reads it, and is echoed
        // in the response so a user can quote it.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(telemetry::http_trace_layer())
        .layer(SetRequestIdLayer::x_request_id(telemetry::SequentialRequestId::default()))
}

fn catch_panic() -> CatchPanicLayer<impl Fn(Box<dyn std::any::Any + Send>) -> axum::response::Response + Clone> {
    CatchPanicLayer::custom(|_| AppError::internal("the request handler panicked").into_response())
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("TimescaleDB bootstrap failed: {0}")]
    Timescale(#[source] sqlx::Error),
    #[error(transparent)]
    ReaderRole(#[from] ReaderRoleError),
    #[error("MQTT broker setup failed")]
    Mqtt(#[from] crate::mqtt::db::BrokerSetupError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Notifications(#[from] alarms::notify::NotifierError),
    #[error("rollup failed: {0}")]
    Rollup(#[from] rollup::RollupError),
    #[error("rollup failed: unknown device externalId '{0}'")]
    UnknownDevice(String),
    #[error("rollup interrupted")]
    RollupInterrupted,
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl StartupError {
    /// A shutdown requested before the portal was up is a clean exit, not a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, StartupError::Connect(ConnectError::Cancelled))
    }
}

/// Connect, migrate, bootstrap, Grafana's read-only role: what both `serve` and `migrate` need.
async fn prepare_database(config: &Config, shutdown: &CancellationToken) -> Result<(PgPool, Outcome), StartupError> {
    let pool = db::connect(&config.database, shutdown).await?;
    let applied = migrate::run(&pool, &migrate::MIGRATOR).await?;
    if applied.is_empty() {
        tracing::info!("Database schema is up to date");
    }
    let outcome = timescale::bootstrap(&pool).await.map_err(StartupError::Timescale)?;
    if config.run_mode == RunMode::Admin {
        fleet::bootstrap::bootstrap(&pool, &outcome).await.map_err(StartupError::Timescale)?;
    }
    if let Some(reader) = &config.grafana_reader {
        use secrecy::ExposeSecret;
        reader::ensure(&pool, &reader.user, reader.password.expose_secret()).await?;
    }
    if config.run_mode == RunMode::Client {
        mqtt::prepare(&pool, &config.mqtt).await?;
    }
    Ok((pool, outcome))
}

/// `tau-portal migrate`: apply migrations and the bootstrapper, then exit.
pub async fn migrate(config: Config) -> Result<(), StartupError> {
    let shutdown = shutdown_on_signal();
    let (pool, _) = prepare_database(&config, &shutdown).await?;
    pool.close().await;
    Ok(())
}

/// `tau-portal rollup`: recompute the energy intervals of a range, one log line per window.
pub async fn rollup(
    config: Config,
    from: chrono::DateTime<chrono::Utc>,
    to: Option<chrono::DateTime<chrono::Utc>>,
    device: Option<String>,
) -> Result<(), StartupError> {
    let shutdown = shutdown_on_signal();
    let (pool, _) = prepare_database(&config, &shutdown).await?;
    let devices = match &device {
        Some(external_id) => {
            let id = crate::sites::db::device_id(&pool, external_id).await.map_err(rollup::RollupError::from)?;
            Some(vec![id.ok_or_else(|| StartupError::UnknownDevice(external_id.clone()))?])
        }
        None => None,
    };
    let started = std::time::Instant::now();
    tracing::info!(%from, to = ?to, device = ?device, "Rebuilding energy intervals");
    let rebuild = rebuild::rebuild(&pool, devices.as_deref(), from, to, Clock::default().now(), |p| {
        tracing::info!(
            readings = p.readings,
            intervals = p.intervals,
            devices_left = p.devices_left,
            "Rebuilt energy intervals up to {}",
            p.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    });
    let report = tokio::select! {
        report = rebuild => report?,
        () = shutdown.cancelled() => return Err(StartupError::RollupInterrupted),
    };
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        devices = report.devices,
        readings = report.readings,
        intervals = report.intervals,
        seconds,
        readings_per_second = (report.readings as f64 / seconds.max(1e-9)).round(),
        "Rebuilt the energy intervals of {} devices from {} readings",
        report.devices,
        report.readings
    );
    pool.close().await;
    Ok(())
}

/// `tau-portal serve`: the full startup sequence, then serve until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), StartupError> {
    let shutdown = shutdown_on_signal();
    let (pool, storage) = prepare_database(&config, &shutdown).await?;
    let state = AppState::new(pool.clone(), config, Clock::default(), &storage).await?;
    seed::seed_default_admin(&pool, &state.config, &state.passwords).await?;

    let addr = state.config.listen_address;
    let listener = TcpListener::bind(addr).await.map_err(|source| StartupError::Bind { addr, source })?;
    let shutdown_timeout = state.config.shutdown_timeout;
    // Background tasks join this tracker and stop on `shutdown`.
    let tasks = TaskTracker::new();
    tasks.spawn(purge_sessions(state.sessions.clone(), shutdown.clone()));
    tasks.spawn(metrics::upkeep(shutdown.clone()));
    tasks.spawn(metrics::runtime_probe(shutdown.clone()));
    if state.config.run_mode == RunMode::Client {
        tasks.spawn(rollup::job(pool.clone(), state.clock.clone(), shutdown.clone()));
        tasks.spawn(crate::measurements::hourly::job(pool.clone(), state.clock.clone(), shutdown.clone()));
    }
    if state.config.run_mode == RunMode::Client {
        let evaluator = alarms::evaluate::Evaluator::new(pool.clone(), state.clock.clone(), state.alarms.clone());
        tasks.spawn(evaluator.run(shutdown.clone()));
        let notifier = alarms::notify::Notifier::new(
            pool.clone(),
            state.clock.clone(),
            state.branding.clone(),
            state.config.notifications.clone(),
            state.config.public_url.clone(),
        )?;
        tasks.spawn(notifier.run(shutdown.clone()));
    }
    if state.config.run_mode == RunMode::Client && state.config.fleet_ingest.enabled {
        let pusher =
            Pusher { db: pool.clone(), settings: state.config.fleet_ingest.clone(), status: state.fleet_push.clone() };
        tasks.spawn(pusher.run(shutdown.clone()));
    }
    if state.fleet_storage == Some(FleetStorage::Plain) {
        tasks.spawn(fleet::hourly::job(pool.clone(), shutdown.clone()));
    }
    if state.config.run_mode == RunMode::Client {
        tasks.spawn(licence::watch(state.licence.clone(), state.clock.clone(), shutdown.clone()));
    }
    if state.config.run_mode == RunMode::Client && state.config.mqtt.enabled {
        let subscriber = mqtt::subscriber::Subscriber {
            db: pool.clone(),
            devices: state.devices.clone(),
            clock: state.clock.clone(),
            earliest: state.config.earliest_reading,
            settings: state.config.mqtt.clone(),
        };
        tasks.spawn(subscriber.run(shutdown.clone()));
    }
    if state.config.run_mode == RunMode::Client && state.config.modbus.enabled {
        let poller = crate::modbus::poller::Poller {
            db: state.db.clone(),
            devices: state.devices.clone(),
            clock: state.clock.clone(),
            settings: state.config.modbus.clone(),
        };
        tasks.spawn(poller.run(shutdown.clone()));
    }
    tracing::info!(
        address = %addr,
        run_mode = ?state.config.run_mode,
        environment = ?state.config.environment,
        version = env!("CARGO_PKG_VERSION"),
        "Portal listening on http://{addr}"
    );

    if let Some(metrics_addr) = state.config.metrics_address {
        let metrics_listener = TcpListener::bind(metrics_addr)
            .await
            .map_err(|source| StartupError::Bind { addr: metrics_addr, source })?;
        tracing::info!(address = %metrics_addr, "Metrics on http://{metrics_addr}/metrics");
        let app = metrics::router(state.db.clone(), state.clock.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(metrics_listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!("Metrics listener failed: {e}");
            }
        });
    }
    let server = axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
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

    tasks.close();
    if tokio::time::timeout(shutdown_timeout, tasks.wait()).await.is_err() {
        tracing::warn!("Background tasks did not stop within the shutdown deadline");
    }
    pool.close().await;
    tracing::info!("Shutdown complete");
    Ok(())
}

/// Deletes expired sessions every few minutes; a failure (database away) is logged and retried
/// at the next tick.
async fn purge_sessions(sessions: Sessions, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => match sessions.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "Purged expired sessions"),
                Err(e) => tracing::warn!("Could not purge expired sessions: {e}"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "Shutdown signal received; draining in-flight requests");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the process can still be killed; never resolve.
        tracing::error!("Could not install signal handlers; graceful shutdown is unavailable");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
