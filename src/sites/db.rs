//! SQL of `monitoring."Sites"` and `monitoring."Devices"` (the only module that writes them).
//! The writes that change which devices exist or their `externalId`s take the [`Change`] and
//! note the device directory as stale, so ingestion resolves the new set once they commit.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{AssertSqlSafe, PgExecutor};

use super::hierarchy::Node;
use crate::change::{Cache, Change};
use crate::tariffs::model::{DemandUnit, Nmd};

/// The names of the unique indexes and constraints a write can run into.
pub const SITE_NAME_UNIQUE: &str = "UX_Sites_Name";
pub const DEVICE_EXTERNAL_ID_UNIQUE: &str = "Devices_ExternalId_key";
pub const DEVICE_SITE_FK: &str = "Devices_SiteId_fkey";
pub const DEVICE_PARENT_FK: &str = "FK_Devices_Parent";

// ---------------------------------------------------------------- sites

#[derive(Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct SiteRow {
    pub id: i32,
    pub name: String,
    pub address: String,
    pub time_zone: String,
    pub notes: String,
    /// The notified (contracted) maximum demand, NMD, and its unit (`kW` or `kVA`): both or neither.
    pub notified_max_demand: Option<Decimal>,
    pub notified_max_demand_unit: Option<String>,
    /// Billing periods run from this day (1–28) of a month to the day before it in the next.
    pub meter_read_day: i16,
}

/// The columns of a [`SiteRow`].
const SITE_COLUMNS: &str =
    r#""Id", "Name", "Address", "TimeZone", "Notes", "NotifiedMaxDemand", "NotifiedMaxDemandUnit", "MeterReadDay""#;

impl SiteRow {
    /// The site's NMD, if entered.
    pub fn nmd(&self) -> Option<Nmd> {
        let unit = DemandUnit::parse_nmd(self.notified_max_demand_unit.as_deref()?)?;
        Some(Nmd { value: self.notified_max_demand?, unit })
    }

    /// The zone the site's times, days and tariffs are in (UTC should a stored name ever stop
    /// parsing; the form only stores valid ones).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// The meter-read day as billing periods take it (the column's check keeps it 1–28).
    pub fn read_day(&self) -> u32 {
        u32::try_from(self.meter_read_day).unwrap_or(1).clamp(1, 28)
    }
}

pub struct SiteFields<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub time_zone: &'a str,
    pub notes: &'a str,
    pub nmd: Option<Nmd>,
    pub meter_read_day: i16,
}

#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct SiteListRow {
    pub id: i32,
    pub name: String,
    pub address: String,
    pub time_zone: String,
    pub device_count: i64,
}

pub async fn list_sites(db: impl PgExecutor<'_>) -> Result<Vec<SiteListRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT s."Id", s."Name", s."Address", s."TimeZone",
                  (SELECT count(*) FROM monitoring."Devices" d WHERE d."SiteId" = s."Id") AS "DeviceCount"
           FROM monitoring."Sites" s
           ORDER BY lower(s."Name")"#,
    )
    .fetch_all(db)
    .await
}

/// `(id, name)` of every site, for the device form's site choice.
pub async fn site_names(db: impl PgExecutor<'_>) -> Result<Vec<(i32, String)>, sqlx::Error> {
    sqlx::query_as(r#"SELECT "Id", "Name" FROM monitoring."Sites" ORDER BY lower("Name")"#).fetch_all(db).await
}

pub async fn site(db: impl PgExecutor<'_>, id: i32) -> Result<Option<SiteRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(r#"SELECT {SITE_COLUMNS} FROM monitoring."Sites" WHERE "Id" = $1"#)))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The sites of `ids` that exist, by id: one query for the alarm evaluator's site rules.
pub async fn sites_of(db: impl PgExecutor<'_>, ids: &[i32]) -> Result<Vec<SiteRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        r#"SELECT {SITE_COLUMNS} FROM monitoring."Sites" WHERE "Id" = ANY($1) ORDER BY "Id""#
    )))
    .bind(ids)
    .fetch_all(db)
    .await
}

pub async fn insert_site(db: impl PgExecutor<'_>, s: &SiteFields<'_>) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO monitoring."Sites"
               ("Name", "Address", "TimeZone", "Notes", "NotifiedMaxDemand", "NotifiedMaxDemandUnit", "MeterReadDay")
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING "Id""#,
    )
    .bind(s.name)
    .bind(s.address)
    .bind(s.time_zone)
    .bind(s.notes)
    .bind(s.nmd.map(|n| n.value))
    .bind(s.nmd.map(|n| n.unit.label()))
    .bind(s.meter_read_day)
    .fetch_one(db)
    .await
}

/// False when the site does not exist (any more).
pub async fn update_site(db: impl PgExecutor<'_>, id: i32, s: &SiteFields<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"UPDATE monitoring."Sites" SET "Name" = $2, "Address" = $3, "TimeZone" = $4, "Notes" = $5,
               "NotifiedMaxDemand" = $6, "NotifiedMaxDemandUnit" = $7, "MeterReadDay" = $8
           WHERE "Id" = $1"#,
    )
    .bind(id)
    .bind(s.name)
    .bind(s.address)
    .bind(s.time_zone)
    .bind(s.notes)
    .bind(s.nmd.map(|n| n.value))
    .bind(s.nmd.map(|n| n.unit.label()))
    .bind(s.meter_read_day)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the site, its devices and their readings (the foreign keys cascade); the deleted
/// site's name and its devices' externalIds, `None` when it did not exist.
pub async fn delete_site(change: &mut Change, id: i32) -> Result<Option<(String, Vec<String>)>, sqlx::Error> {
    change.stale(Cache::Devices);
    // The outer SELECT sees the devices as they were before the cascade, in the same statement.
    sqlx::query_as(
        r#"WITH gone AS (DELETE FROM monitoring."Sites" WHERE "Id" = $1 RETURNING "Id", "Name")
           SELECT g."Name", array_remove(array_agg(d."ExternalId" ORDER BY d."ExternalId"), NULL)
           FROM gone g LEFT JOIN monitoring."Devices" d ON d."SiteId" = g."Id"
           GROUP BY g."Name""#,
    )
    .bind(id)
    .fetch_optional(change.db())
    .await
}

/// What the usage figures of /metrics need of every device (`sites::usage`).
#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct DeviceStateRow {
    pub site_id: i32,
    pub source: String,
    pub enabled: bool,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub poll_interval_seconds: i32,
    pub last_reading_at: Option<DateTime<Utc>>,
}

/// Every site's id and what its devices' states are made of; the newest reading per device is
/// one probe of the measurements' primary key, as for the device pages.
pub async fn inventory(db: &sqlx::PgPool) -> Result<(Vec<i32>, Vec<DeviceStateRow>), sqlx::Error> {
    let sites = sqlx::query_scalar(r#"SELECT "Id" FROM monitoring."Sites""#).fetch_all(db).await?;
    let devices = sqlx::query_as(
        r#"SELECT d."SiteId", d."Source", d."Enabled", d."LastErrorAt", d."ConsecutiveFailures",
                  d."PollIntervalSeconds",
                  (SELECT max(m."Time") FROM monitoring."PowerMeasurements" m WHERE m."DeviceId" = d."Id")
                      AS "LastReadingAt"
           FROM monitoring."Devices" d"#,
    )
    .fetch_all(db)
    .await?;
    Ok((sites, devices))
}

/// What deleting a site takes with it: `(devices, readings)`.
pub async fn site_contents(db: impl PgExecutor<'_>, id: i32) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM monitoring."Devices" WHERE "SiteId" = $1),
                  (SELECT count(*) FROM monitoring."PowerMeasurements" m
                   JOIN monitoring."Devices" d ON d."Id" = m."DeviceId" WHERE d."SiteId" = $1)"#,
    )
    .bind(id)
    .fetch_one(db)
    .await
}

// ---------------------------------------------------------------- devices

#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct DeviceRow {
    pub id: i32,
    pub site_id: i32,
    pub external_id: String,
    pub name: String,
    pub model: String,
    pub source: String,
    pub modbus_host: Option<String>,
    pub modbus_port: i32,
    pub modbus_unit_id: i16,
    pub poll_interval_seconds: i32,
    pub enabled: bool,
    /// Its place in the site hierarchy: `main`, `sub` (of `parent_id`), `generation` or `check`.
    pub role: String,
    pub parent_id: Option<i32>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// The meter's settings and identity as the poller last read them (JSON the poller writes;
    /// `sites::meter` shows them).
    pub meter_settings: Option<serde_json::Value>,
    pub meter_settings_at: Option<DateTime<Utc>>,
    pub meter_identity: Option<serde_json::Value>,
    pub unsupported_blocks: Vec<String>,
    /// The newest reading's time, from the measurement table.
    pub last_reading_at: Option<DateTime<Utc>>,
}

/// The newest reading per device comes from the measurements' primary key ("DeviceId", "Time"):
/// one index probe per device.
const DEVICE_COLUMNS: &str = r#"d."Id", d."SiteId", d."ExternalId", d."Name", d."Model", d."Source", d."ModbusHost",
    d."ModbusPort", d."ModbusUnitId", d."PollIntervalSeconds", d."Enabled", d."Role", d."ParentId", d."LastError",
    d."LastErrorAt", d."ConsecutiveFailures", d."MeterSettings", d."MeterSettingsAt", d."MeterIdentity", d."UnsupportedBlocks",
    (SELECT max(m."Time") FROM monitoring."PowerMeasurements" m WHERE m."DeviceId" = d."Id") AS "LastReadingAt""#;

pub async fn devices_of_site(db: impl PgExecutor<'_>, site_id: i32) -> Result<Vec<DeviceRow>, sqlx::Error> {
    let sql = format!(
        r#"SELECT {DEVICE_COLUMNS} FROM monitoring."Devices" d WHERE d."SiteId" = $1 ORDER BY lower(d."Name"), d."Id""#
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(site_id).fetch_all(db).await
}

/// The id of the device with this `externalId`.
pub async fn device_id(db: impl PgExecutor<'_>, external_id: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT "Id" FROM monitoring."Devices" WHERE "ExternalId" = $1"#)
        .bind(external_id)
        .fetch_optional(db)
        .await
}

pub async fn device(db: impl PgExecutor<'_>, id: i32) -> Result<Option<DeviceRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {DEVICE_COLUMNS} FROM monitoring."Devices" d WHERE d."Id" = $1"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await
}

pub struct DeviceFields<'a> {
    pub site_id: i32,
    pub external_id: &'a str,
    pub name: &'a str,
    pub model: &'a str,
    pub source: &'a str,
    pub modbus_host: Option<&'a str>,
    pub modbus_port: i32,
    pub modbus_unit_id: i16,
    pub poll_interval_seconds: i32,
    pub enabled: bool,
    pub role: &'a str,
    pub parent_id: Option<i32>,
}

pub async fn insert_device(change: &mut Change, d: &DeviceFields<'_>) -> Result<i32, sqlx::Error> {
    change.stale(Cache::Devices);
    sqlx::query_scalar(
        r#"INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source", "ModbusHost",
               "ModbusPort", "ModbusUnitId", "PollIntervalSeconds", "Enabled", "Role", "ParentId")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING "Id""#,
    )
    .bind(d.site_id)
    .bind(d.external_id)
    .bind(d.name)
    .bind(d.model)
    .bind(d.source)
    .bind(d.modbus_host)
    .bind(d.modbus_port)
    .bind(d.modbus_unit_id)
    .bind(d.poll_interval_seconds)
    .bind(d.enabled)
    .bind(d.role)
    .bind(d.parent_id)
    .fetch_one(change.db())
    .await
}

/// False when the device does not exist (any more).
pub async fn update_device(change: &mut Change, id: i32, d: &DeviceFields<'_>) -> Result<bool, sqlx::Error> {
    change.stale(Cache::Devices);
    let done = sqlx::query(
        r#"UPDATE monitoring."Devices" SET "SiteId" = $2, "ExternalId" = $3, "Name" = $4, "Model" = $5, "Source" = $6,
               "ModbusHost" = $7, "ModbusPort" = $8, "ModbusUnitId" = $9, "PollIntervalSeconds" = $10, "Enabled" = $11,
               "Role" = $12, "ParentId" = $13
           WHERE "Id" = $1"#,
    )
    .bind(id)
    .bind(d.site_id)
    .bind(d.external_id)
    .bind(d.name)
    .bind(d.model)
    .bind(d.source)
    .bind(d.modbus_host)
    .bind(d.modbus_port)
    .bind(d.modbus_unit_id)
    .bind(d.poll_interval_seconds)
    .bind(d.enabled)
    .bind(d.role)
    .bind(d.parent_id)
    .execute(change.db())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes the device and its readings (cascade); `(externalId, site id)`, `None` when absent.
pub async fn delete_device(change: &mut Change, id: i32) -> Result<Option<(String, i32)>, sqlx::Error> {
    change.stale(Cache::Devices);
    sqlx::query_as(r#"DELETE FROM monitoring."Devices" WHERE "Id" = $1 RETURNING "ExternalId", "SiteId""#)
        .bind(id)
        .fetch_optional(change.db())
        .await
}

/// Locks the hierarchies of `sites` (their rows, in id order) until the change commits: two
/// changes of one site's hierarchy check it one after the other, so together they cannot make a
/// loop. Devices can still be added meanwhile (their foreign key only shares the row).
pub async fn lock_hierarchies(change: &mut Change, sites: &[i32]) -> Result<(), sqlx::Error> {
    sqlx::query(r#"SELECT 1 FROM monitoring."Sites" WHERE "Id" = ANY($1) ORDER BY "Id" FOR NO KEY UPDATE"#)
        .bind(sites)
        .execute(change.db())
        .await?;
    Ok(())
}

/// The devices of a site as the hierarchy sees them, by name.
pub async fn hierarchy(db: impl PgExecutor<'_>, site_id: i32) -> Result<Vec<Node>, sqlx::Error> {
    let rows: Vec<(i32, String, String, Option<i32>)> = sqlx::query_as(
        r#"SELECT "Id", "Name", "Role", "ParentId" FROM monitoring."Devices" WHERE "SiteId" = $1
           ORDER BY lower("Name"), "Id""#,
    )
    .bind(site_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, name, role, parent)| Node { id, name, role, parent }).collect())
}

/// The site of a device, `None` when there is no such device.
pub async fn site_of_device(db: impl PgExecutor<'_>, id: i32) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT "SiteId" FROM monitoring."Devices" WHERE "Id" = $1"#).bind(id).fetch_optional(db).await
}

pub async fn reading_count(db: impl PgExecutor<'_>, device_id: i32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1"#)
        .bind(device_id)
        .fetch_one(db)
        .await
}

// ---------------------------------------------------------------- the poller's view of devices

/// An enabled Modbus TCP device, as the poller needs it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct ModbusDeviceRow {
    pub id: i32,
    pub external_id: String,
    pub model: String,
    #[sqlx(rename = "ModbusHost")]
    pub host: String,
    #[sqlx(rename = "ModbusPort")]
    pub port: i32,
    #[sqlx(rename = "ModbusUnitId")]
    pub unit_id: i16,
    pub poll_interval_seconds: i32,
}

pub async fn modbus_devices(db: impl PgExecutor<'_>) -> Result<Vec<ModbusDeviceRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "ExternalId", "Model", "ModbusHost", "ModbusPort", "ModbusUnitId", "PollIntervalSeconds"
           FROM monitoring."Devices"
           WHERE "Source" = 'modbus-tcp' AND "Enabled" AND "ModbusHost" IS NOT NULL
           ORDER BY "Id""#,
    )
    .fetch_all(db)
    .await
}

/// One device's poll outcome since the last report: the failure count now, and the newest
/// failure if there was one.
pub struct PollHealth {
    pub device_id: i32,
    pub consecutive_failures: i32,
    pub last_error: Option<(String, DateTime<Utc>)>,
}

/// Records poll outcomes for many devices in one statement; a device deleted meanwhile is skipped.
pub async fn record_poll_health(db: impl PgExecutor<'_>, health: &[PollHealth]) -> Result<(), sqlx::Error> {
    let ids: Vec<i32> = health.iter().map(|h| h.device_id).collect();
    let failures: Vec<i32> = health.iter().map(|h| h.consecutive_failures).collect();
    let errors: Vec<Option<&str>> = health.iter().map(|h| h.last_error.as_ref().map(|e| e.0.as_str())).collect();
    let times: Vec<Option<DateTime<Utc>>> = health.iter().map(|h| h.last_error.as_ref().map(|e| e.1)).collect();
    sqlx::query(
        r#"UPDATE monitoring."Devices" d
           SET "ConsecutiveFailures" = h.failures,
               "LastError" = COALESCE(h.error, d."LastError"),
               "LastErrorAt" = CASE WHEN h.error IS NULL THEN d."LastErrorAt" ELSE h.at END
           FROM UNNEST($1::int4[], $2::int4[], $3::text[], $4::timestamptz[]) AS h(id, failures, error, at)
           WHERE d."Id" = h.id"#,
    )
    .bind(ids)
    .bind(failures)
    .bind(errors)
    .bind(times)
    .execute(db)
    .await?;
    Ok(())
}

/// What the poller learnt about the meter itself; `None` fields are left as they are.
#[derive(Default)]
pub struct MeterFacts {
    pub settings: Option<(serde_json::Value, DateTime<Utc>)>,
    pub identity: Option<serde_json::Value>,
    pub unsupported_blocks: Option<Vec<String>>,
}

/// Records what the poller learnt about meters, one statement for all of them: after an outage
/// of many meters each re-reads its settings, and one UPDATE per device was hundreds of
/// statements a second at 10,000 meters (issue 21).
pub async fn record_meter_facts(db: impl PgExecutor<'_>, facts: &[(i32, &MeterFacts)]) -> Result<(), sqlx::Error> {
    if facts.is_empty() {
        return Ok(());
    }
    let ids: Vec<i32> = facts.iter().map(|f| f.0).collect();
    let settings: Vec<Option<serde_json::Value>> =
        facts.iter().map(|f| f.1.settings.as_ref().map(|s| s.0.clone())).collect();
    let settings_at: Vec<Option<DateTime<Utc>>> = facts.iter().map(|f| f.1.settings.as_ref().map(|s| s.1)).collect();
    let identity: Vec<Option<serde_json::Value>> = facts.iter().map(|f| f.1.identity.clone()).collect();
    // A device's block list is an array, and bound arrays cannot hold arrays of different
    // lengths: each list travels as a JSON array.
    let blocks: Vec<Option<serde_json::Value>> =
        facts.iter().map(|f| f.1.unsupported_blocks.as_ref().map(|b| serde_json::json!(b))).collect();
    sqlx::query(
        r#"UPDATE monitoring."Devices" d
           SET "MeterSettings" = COALESCE(f.settings, d."MeterSettings"),
               "MeterSettingsAt" = COALESCE(f.settings_at, d."MeterSettingsAt"),
               "MeterIdentity" = COALESCE(f.identity, d."MeterIdentity"),
               "UnsupportedBlocks" = CASE WHEN f.blocks IS NULL THEN d."UnsupportedBlocks" ELSE
                   ARRAY(SELECT b FROM jsonb_array_elements_text(f.blocks) WITH ORDINALITY AS e(b, k) ORDER BY k) END
           FROM UNNEST($1::int4[], $2::jsonb[], $3::timestamptz[], $4::jsonb[], $5::jsonb[])
                AS f(id, settings, settings_at, identity, blocks)
           WHERE d."Id" = f.id"#,
    )
    .bind(ids)
    .bind(settings)
    .bind(settings_at)
    .bind(identity)
    .bind(blocks)
    .execute(db)
    .await?;
    Ok(())
}

/// A device as the live figures see it: its status columns and its newest reading's active power.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveDevice {
    #[sqlx(rename = "Id")]
    pub id: i32,
    #[sqlx(rename = "SiteId")]
    pub site_id: i32,
    #[sqlx(rename = "Name")]
    pub name: String,
    #[sqlx(rename = "Enabled")]
    pub enabled: bool,
    /// Only main meters add to what the site draws (`main`, `sub`, `generation`, `check`).
    #[sqlx(rename = "Role")]
    pub role: String,
    #[sqlx(rename = "PollIntervalSeconds")]
    pub poll_interval_seconds: i32,
    #[sqlx(rename = "LastError")]
    pub last_error: Option<String>,
    #[sqlx(rename = "LastErrorAt")]
    pub last_error_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "ConsecutiveFailures")]
    pub consecutive_failures: i32,
    #[sqlx(rename = "LastReadingAt")]
    pub last_reading_at: Option<DateTime<Utc>>,
    /// Total active power of the newest reading (W), if that reading had it.
    #[sqlx(rename = "LatestW")]
    pub latest_w: Option<f64>,
}

/// Every device with its newest reading, in one statement (one index probe per device): what a
/// live update of the Overview or a wall display costs.
pub async fn live_devices(db: impl PgExecutor<'_>) -> Result<Vec<LiveDevice>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT d."Id", d."SiteId", d."Name", d."Enabled", d."Role", d."PollIntervalSeconds", d."LastError", d."LastErrorAt",
                  d."ConsecutiveFailures", m."Time" AS "LastReadingAt", m."PTotal"::float8 AS "LatestW"
           FROM monitoring."Devices" d
           LEFT JOIN LATERAL (SELECT "Time", "PTotal" FROM monitoring."PowerMeasurements"
                              WHERE "DeviceId" = d."Id" ORDER BY "Time" DESC LIMIT 1) m ON true
           ORDER BY lower(d."Name"), d."Id""#,
    )
    .fetch_all(db)
    .await
}

/// Every site, by name, for pages about all of them.
pub async fn sites_by_name(db: impl PgExecutor<'_>) -> Result<Vec<SiteRow>, sqlx::Error> {
    sqlx::query_as(AssertSqlSafe(format!(
        r#"SELECT {SITE_COLUMNS} FROM monitoring."Sites" ORDER BY lower("Name"), "Id""#
    )))
    .fetch_all(db)
    .await
}

// ---------------------------------------------------------------- for the fleet push

/// Every site as (id, name, address, time zone), by id.
pub async fn all_sites(db: impl PgExecutor<'_>) -> Result<Vec<(i32, String, String, String)>, sqlx::Error> {
    sqlx::query_as(r#"SELECT "Id", "Name", "Address", "TimeZone" FROM monitoring."Sites" ORDER BY "Id""#)
        .fetch_all(db)
        .await
}

/// Every device as (id, site, external id, name, model, enabled), by id.
pub async fn all_devices(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(i32, i32, String, String, String, bool)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "SiteId", "ExternalId", "Name", "Model", "Enabled" FROM monitoring."Devices" ORDER BY "Id""#,
    )
    .fetch_all(db)
    .await
}

/// A device as the alarm rules watch it: where it is, whether it is polled, how often readings
/// are due, and when it was added (a device that never sent a reading is silent since then).
#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct WatchedDevice {
    pub id: i32,
    pub site_id: i32,
    pub site_name: String,
    pub name: String,
    pub enabled: bool,
    /// Its role in the site hierarchy: site rules (demand) add up main meters only.
    pub role: String,
    pub poll_interval_seconds: i32,
    pub created_at: DateTime<Utc>,
    pub last_reading_at: Option<DateTime<Utc>>,
}

pub async fn watched_devices(db: impl PgExecutor<'_>) -> Result<Vec<WatchedDevice>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT d."Id", d."SiteId", s."Name" AS "SiteName", d."Name", d."Enabled", d."Role", d."PollIntervalSeconds",
                  d."CreatedAt",
                  (SELECT max(m."Time") FROM monitoring."PowerMeasurements" m WHERE m."DeviceId" = d."Id") AS "LastReadingAt"
           FROM monitoring."Devices" d JOIN monitoring."Sites" s ON s."Id" = d."SiteId"
           ORDER BY d."Id""#,
    )
    .fetch_all(db)
    .await
}
