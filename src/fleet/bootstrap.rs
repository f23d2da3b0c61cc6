//! `FleetTimescaleBootstrapper`: the Admin's storage for the fleet. The migrations create the
//! fleet tables as plain tables in every database (one migrator for both run modes); in Admin
//! mode this turns `fleet."PowerMeasurements"` into a compressed hypertable and creates the
//! continuous aggregate `fleet.hourly_per_device` with its refresh policy, so a customer's
//! database never carries fleet chunks or jobs. On plain PostgreSQL the tables stay plain and
//! `fleet.hourly_per_device` is a table the portal keeps (hourly.rs). Every step checks before
//! it acts, so it is idempotent and safe after `pg_restore`; Timescale statements run one by one
//! outside transactions under the bootstrappers' advisory lock.

use sqlx::{PgConnection, PgPool};

use super::hourly;
use crate::db::timescale::{self, Outcome};

const NAME: &str = "FleetTimescaleBootstrapper";
const CHUNK_INTERVAL: &str = "7 days";
/// Customers' late data (an outage, a backfill) lands in uncompressed chunks for this long.
pub const COMPRESS_AFTER: &str = "30 days";
/// The refresh policy re-aggregates this far back, a little beyond the uncompressed window.
const REFRESH_START: &str = "31 days";
const REFRESH_END: &str = "1 hour";
const REFRESH_EVERY: &str = "15 minutes";

/// How the fleet is stored, as found or made by [`bootstrap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetStorage {
    Timescale,
    /// The portal keeps `fleet.hourly_per_device` itself.
    Plain,
}

impl From<&Outcome> for FleetStorage {
    fn from(storage: &Outcome) -> FleetStorage {
        match storage {
            Outcome::Hypertable { .. } => FleetStorage::Timescale,
            Outcome::PlainTable { .. } => FleetStorage::Plain,
        }
    }
}

pub async fn bootstrap(pool: &PgPool, storage: &Outcome) -> Result<FleetStorage, sqlx::Error> {
    match storage {
        Outcome::Hypertable { .. } => {
            timescale::under_lock(pool, async |conn| run_locked(conn).await).await?;
            tracing::info!(
                compress_after = COMPRESS_AFTER,
                refresh_every = REFRESH_EVERY,
                "{NAME}: fleet.PowerMeasurements is a compressed hypertable and fleet.hourly_per_device a continuous \
                 aggregate; fleet storage is ready"
            );
            Ok(FleetStorage::Timescale)
        }
        Outcome::PlainTable { reason } => {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{}; {};", hourly::CREATE_PLAIN, hourly::INDEX_PLAIN)))
                .execute(pool)
                .await?;
            tracing::warn!(
                "{NAME}: TimescaleDB is not in use ({reason}): the fleet tables stay plain PostgreSQL tables (no \
                 compression) and fleet.hourly_per_device is a table the portal recomputes every minute instead of a \
                 continuous aggregate. Use the timescale/timescaledb image for a fleet of any size."
            );
            Ok(FleetStorage::Plain)
        }
    }
}

async fn run_locked(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let (is_hypertable, compression_enabled): (bool, bool) = sqlx::query_as(
        "SELECT count(*) > 0, coalesce(bool_or(compression_enabled), false)
         FROM timescaledb_information.hypertables
         WHERE hypertable_schema = 'fleet' AND hypertable_name = 'PowerMeasurements'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !is_hypertable {
        sqlx::query(
            r#"SELECT create_hypertable('fleet."PowerMeasurements"', 'Time',
                   chunk_time_interval => $1::interval, if_not_exists => TRUE, migrate_data => TRUE)"#,
        )
        .bind(CHUNK_INTERVAL)
        .execute(&mut *conn)
        .await?;
    }
    if !compression_enabled {
        sqlx::query(
            r#"ALTER TABLE fleet."PowerMeasurements" SET (timescaledb.compress,
                   timescaledb.compress_segmentby = '"CustomerId", "DeviceId"', timescaledb.compress_orderby = '"Time" DESC')"#,
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(r#"SELECT add_compression_policy('fleet."PowerMeasurements"', $1::interval, if_not_exists => TRUE)"#)
        .bind(COMPRESS_AFTER)
        .execute(&mut *conn)
        .await?;

    let aggregate: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                        WHERE view_schema = 'fleet' AND view_name = 'hourly_per_device')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !aggregate {
        // A plain stand-in from a time without TimescaleDB (a restored dump, a changed image):
        // the aggregate recomputes everything it held from the raw rows.
        let plain: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('fleet.hourly_per_device') AND relkind = 'r')",
        )
        .fetch_one(&mut *conn)
        .await?;
        if plain {
            sqlx::query("DROP TABLE fleet.hourly_per_device").execute(&mut *conn).await?;
        }
        let create = format!(
            r#"CREATE MATERIALIZED VIEW fleet.hourly_per_device
               WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
               SELECT time_bucket('1 hour', "Time") AS "Bucket", "CustomerId", "DeviceId", {}
               FROM fleet."PowerMeasurements" GROUP BY 1, 2, 3 WITH NO DATA"#,
            hourly::SELECT_HOURLY
        );
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&mut *conn).await?;
    }
    sqlx::query(
        "SELECT add_continuous_aggregate_policy('fleet.hourly_per_device', start_offset => $1::interval,
             end_offset => $2::interval, schedule_interval => $3::interval, if_not_exists => TRUE)",
    )
    .bind(REFRESH_START)
    .bind(REFRESH_END)
    .bind(REFRESH_EVERY)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
