//! `fleet.hourly_per_device` on plain PostgreSQL: without TimescaleDB there is no continuous
//! aggregate, so the Admin keeps a table of the same name and columns itself. The ingest notes
//! the earliest reading time per device it wrote (`fleet."HourlyStale"`, in the batch's
//! transaction); this job recomputes those devices' hours from there, once a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::measurements::Reading;

const EVERY: Duration = Duration::from_secs(60);

/// The hourly columns, shared by the continuous aggregate and the plain table.
pub const SELECT_HOURLY: &str = r#"count(*) AS "Samples", avg("PTotal") AS "AvgPTotalW", max("PTotal") AS "MaxPTotalW",
    min("EnergyImportWh") AS "MinEnergyImportWh", max("EnergyImportWh") AS "MaxEnergyImportWh",
    min("EnergyExportWh") AS "MinEnergyExportWh", max("EnergyExportWh") AS "MaxEnergyExportWh""#;

pub const CREATE_PLAIN: &str = r#"CREATE TABLE IF NOT EXISTS fleet.hourly_per_device (
    "Bucket"            timestamptz NOT NULL,
    "CustomerId"        uuid NOT NULL REFERENCES fleet."Customers" ("Id") ON DELETE CASCADE,
    "DeviceId"          integer NOT NULL,
    "Samples"           bigint NOT NULL,
    "AvgPTotalW"        double precision,
    "MaxPTotalW"        real,
    "MinEnergyImportWh" double precision,
    "MaxEnergyImportWh" double precision,
    "MinEnergyExportWh" double precision,
    "MaxEnergyExportWh" double precision)"#;

pub const INDEX_PLAIN: &str = r#"CREATE INDEX IF NOT EXISTS "IX_hourly_per_device_Device_Bucket" ON fleet.hourly_per_device ("DeviceId", "Bucket")"#;

pub async fn note_stale(tx: &mut PgConnection, readings: &[Reading]) -> Result<(), sqlx::Error> {
    let mut earliest: BTreeMap<i32, DateTime<Utc>> = BTreeMap::new();
    for r in readings {
        earliest.entry(r.device_id).and_modify(|t| *t = (*t).min(r.time)).or_insert(r.time);
    }
    sqlx::query(
        r#"INSERT INTO fleet."HourlyStale" ("DeviceId", "From") SELECT * FROM UNNEST($1::int4[], $2::timestamptz[])
           ON CONFLICT ("DeviceId") DO UPDATE SET "From" = least(fleet."HourlyStale"."From", EXCLUDED."From")"#,
    )
    .bind(earliest.keys().copied().collect::<Vec<_>>())
    .bind(earliest.values().copied().collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Recomputes the stale devices' hours in one statement: it takes the stale marks (rows the
/// ingest writes meanwhile mark again and are picked up next time), deletes those hours and
/// inserts them anew. Returns the hourly rows written.
pub async fn refresh(db: &PgPool) -> Result<u64, sqlx::Error> {
    let sql = format!(
        r#"WITH stale AS (DELETE FROM fleet."HourlyStale"
               RETURNING "DeviceId", date_bin('1 hour', "From", '2000-01-01') AS "From"),
           gone AS (DELETE FROM fleet.hourly_per_device h USING stale s
               WHERE h."DeviceId" = s."DeviceId" AND h."Bucket" >= s."From")
           INSERT INTO fleet.hourly_per_device
           SELECT date_bin('1 hour', m."Time", '2000-01-01') AS "Bucket", m."CustomerId", m."DeviceId", {SELECT_HOURLY}
           FROM fleet."PowerMeasurements" m JOIN stale s ON m."DeviceId" = s."DeviceId" AND m."Time" >= s."From"
           GROUP BY 1, 2, 3"#
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db).await?.rows_affected())
}

/// The plain-PostgreSQL upkeep job (Admin mode only); a failure is logged and retried.
pub async fn job(db: PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => if let Err(e) = refresh(&db).await {
                tracing::warn!("Could not refresh fleet.hourly_per_device: {e}");
            },
            () = shutdown.cancelled() => return,
        }
    }
}
