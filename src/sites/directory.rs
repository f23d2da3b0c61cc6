//! Devices by `externalId`, in memory: every ingestion path resolves rows to devices through it
//! instead of querying per row. Any change to devices (create, edit, delete) calls
//! [`DeviceDirectory::invalidate`], and the next lookup reloads the map; the Modbus poller
//! subscribes to the same signal to pick up device changes without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;

/// `externalId → device id`.
pub type DeviceMap = Arc<HashMap<String, i32>>;

#[derive(Clone)]
pub struct DeviceDirectory {
    db: PgPool,
    map: Arc<RwLock<Option<DeviceMap>>>,
    /// Bumped on every change.
    changes: tokio::sync::watch::Sender<u64>,
}

impl DeviceDirectory {
    pub fn new(db: PgPool) -> DeviceDirectory {
        DeviceDirectory { db, map: Arc::new(RwLock::new(None)), changes: tokio::sync::watch::Sender::new(0) }
    }

    /// `externalId → device id` for every device.
    pub async fn snapshot(&self) -> Result<DeviceMap, sqlx::Error> {
        if let Some(map) = self.map.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            return Ok(map);
        }
        let rows: Vec<(String, i32)> =
            sqlx::query_as(r#"SELECT "ExternalId", "Id" FROM monitoring."Devices""#).fetch_all(&self.db).await?;
        let map = Arc::new(rows.into_iter().collect::<HashMap<_, _>>());
        *self.map.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(map.clone());
        Ok(map)
    }

    /// Forgets the map; call after any change to `monitoring."Devices"`.
    pub fn invalidate(&self) {
        *self.map.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Wakes on every later [`invalidate`](Self::invalidate).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
