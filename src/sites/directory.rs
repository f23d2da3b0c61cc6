//! Devices by `externalId`, in memory: every ingestion path resolves rows to devices through it
//! instead of querying per row. Any change to devices (create, edit, delete) calls
//! [`DeviceDirectory::invalidate`], and the next lookup reloads the map.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sqlx::PgPool;

/// `externalId → device id`.
pub type DeviceMap = Arc<HashMap<String, i32>>;

#[derive(Clone)]
pub struct DeviceDirectory {
    db: PgPool,
    map: Arc<RwLock<Option<DeviceMap>>>,
}

impl DeviceDirectory {
    pub fn new(db: PgPool) -> DeviceDirectory {
        DeviceDirectory { db, map: Arc::new(RwLock::new(None)) }
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
    }
}
