//! The application state every handler and middleware shares, and the commit of an audited
//! change (which forgets the caches the change made stale). The router assembly and the startup
//! sequence (`app.rs`) build it; features import it from here, never from `app`.

use std::sync::Arc;

use sqlx::PgPool;

use crate::alarms::ActiveAlarms;
use crate::auth::keyring::{KeyRing, KeyRingError};
use crate::auth::password::{PasswordError, Passwords};
use crate::auth::sessions::Sessions;
use crate::auth::throttle::Throttle;
use crate::branding::Branding;
use crate::change::{Cache, Change};
use crate::clock::Clock;
use crate::config::{Config, Environment, RunMode};
use crate::db::timescale::Outcome;
use crate::fleet::bootstrap::FleetStorage;
use crate::fleet::push::PushStatus;
use crate::licence::Licence;
use crate::measurements::queries::Bucketing;
use crate::metrics;
use crate::sites::directory::DeviceDirectory;
use crate::web::cookies::CookieNames;

/// Everything handlers share, behind one `Arc`: axum clones the state for every middleware
/// layer and extractor of every request, and one reference count is far cheaper than a dozen
/// (profiling the Grafana gate showed cloning and dropping the fields at ~15 % of its CPU).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub db: PgPool,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub keys: KeyRing,
    pub passwords: Passwords,
    pub sessions: Sessions,
    pub throttle: Arc<Throttle>,
    pub cookies: CookieNames,
    pub branding: Branding,
    pub devices: DeviceDirectory,
    /// TimescaleDB or plain PostgreSQL (what the bootstrapper found): how series are bucketed.
    pub bucketing: Bucketing,
    /// Admin mode: how the fleet is stored. `None` in Client mode.
    pub fleet_storage: Option<FleetStorage>,
    /// Client mode: the fleet push's state, for /metrics and Settings → Fleet push.
    pub fleet_push: PushStatus,
    /// The licence key as verified at startup (judged against the clock where it is used).
    pub licence: Arc<Licence>,
    /// The number of open alarms, for every page's header.
    pub alarms: ActiveAlarms,
}

/// Why the state could not be built (a startup step; the message says which part).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    KeyRing(#[from] KeyRingError),
    #[error(transparent)]
    Passwords(#[from] PasswordError),
    #[error("could not load the branding: {0}")]
    Branding(#[source] sqlx::Error),
    #[error("could not count the open alarms: {0}")]
    Alarms(#[source] sqlx::Error),
}

impl AppState {
    /// Loads the key ring from `<data dir>/keys` and prepares the identity services.
    pub async fn new(db: PgPool, config: Config, clock: Clock, storage: &Outcome) -> Result<AppState, StateError> {
        metrics::handle();
        let keys = KeyRing::load_or_create(&config.data_directory.join("keys"))?;
        let passwords = Passwords::new(config.auth.password_hash).await?;
        let sessions = Sessions::new(db.clone(), clock.clone(), config.auth.session_idle, config.auth.session_absolute);
        let cookies = CookieNames::new(config.environment == Environment::Production);
        let branding = Branding::load(db.clone(), &config.white_label, config.data_directory.join("branding"))
            .await
            .map_err(StateError::Branding)?;
        let alarms = ActiveAlarms::default();
        if config.run_mode == RunMode::Client {
            alarms.refresh(&db).await.map_err(StateError::Alarms)?;
        }
        Ok(AppState(Arc::new(Services {
            branding,
            alarms,
            devices: DeviceDirectory::new(db.clone()),
            bucketing: Bucketing::from(storage),
            fleet_storage: (config.run_mode == RunMode::Admin).then(|| FleetStorage::from(storage)),
            fleet_push: PushStatus::default(),
            licence: Arc::new(match config.run_mode {
                RunMode::Client => Licence::load(&config.license),
                RunMode::Admin => Licence::Unlicensed,
            }),
            db,
            config: Arc::new(config),
            throttle: Arc::new(Throttle::new(clock.clone())),
            clock,
            keys,
            passwords,
            sessions,
            cookies,
        })))
    }

    /// Writes the change's audit row, commits the change, then forgets the caches it made stale
    /// (only now: a cache reloaded before the commit would hold the old rows again).
    pub async fn commit(
        &self,
        change: Change,
        action: &str,
        target: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        for cache in change.commit_audited(action, target, detail).await? {
            match cache {
                Cache::Devices => self.devices.invalidate(),
                Cache::Branding => self.branding.reload().await?,
                Cache::SessionsOf(user) => self.sessions.forget_user(user),
                Cache::Session(token_hash) => self.sessions.forget(&token_hash),
                Cache::ActiveAlarms => self.alarms.refresh(&self.db).await?,
            }
        }
        Ok(())
    }
}
