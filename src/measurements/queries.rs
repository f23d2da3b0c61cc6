//! The store's read queries: the latest reading of a device, and a bucketed power series
//! (`time_bucket` on TimescaleDB, `date_bin` on plain PostgreSQL).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use super::{COUNTER_QUANTITIES, REAL_QUANTITIES};
use crate::db::timescale::Outcome;

/// How time series are bucketed, from what the Timescale bootstrapper found at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    /// TimescaleDB's `time_bucket`, which the planner knows to push into chunks.
    TimeBucket,
    /// PostgreSQL's own `date_bin` (14+).
    DateBin,
}

impl From<&Outcome> for Bucketing {
    fn from(outcome: &Outcome) -> Bucketing {
        match outcome {
            Outcome::Hypertable { .. } => Bucketing::TimeBucket,
            Outcome::PlainTable { .. } => Bucketing::DateBin,
        }
    }
}

/// Every stored quantity of a reading, by column name; float4 columns widened to f64.
pub struct StoredReading {
    pub time: DateTime<Utc>,
    values: Vec<(&'static str, Option<f64>)>,
}

impl StoredReading {
    pub fn get(&self, column: &str) -> Option<f64> {
        self.values.iter().find(|(c, _)| *c == column).and_then(|(_, v)| *v)
    }
}

fn reading_from(row: &PgRow) -> Result<StoredReading, sqlx::Error> {
    // The store's own quantity tables: one list of columns for writing and reading.
    let mut values = Vec::with_capacity(REAL_QUANTITIES.len() + COUNTER_QUANTITIES.len());
    for (_, c, _) in REAL_QUANTITIES {
        values.push((c, row.try_get::<Option<f32>, _>(c)?.map(f64::from)));
    }
    for (_, c, _) in COUNTER_QUANTITIES {
        values.push((c, row.try_get::<Option<f64>, _>(c)?));
    }
    Ok(StoredReading { time: row.try_get("Time")?, values })
}

/// The device's newest reading.
pub async fn latest_reading(db: impl PgExecutor<'_>, device_id: i32) -> Result<Option<StoredReading>, sqlx::Error> {
    let row = sqlx::query(
        r#"SELECT * FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1 ORDER BY "Time" DESC LIMIT 1"#,
    )
    .bind(device_id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(reading_from).transpose()
}

/// The newest reading of each of `device_ids` that has one: one index probe per device.
pub async fn latest_readings(
    db: impl PgExecutor<'_>,
    device_ids: &[i32],
) -> Result<Vec<(i32, StoredReading)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT m.* FROM unnest($1::integer[]) AS d("Id")
           CROSS JOIN LATERAL (SELECT * FROM monitoring."PowerMeasurements" p
                               WHERE p."DeviceId" = d."Id" ORDER BY p."Time" DESC LIMIT 1) m"#,
    )
    .bind(device_ids)
    .fetch_all(db)
    .await?;
    rows.iter().map(|row| Ok((row.try_get("DeviceId")?, reading_from(row)?))).collect()
}

/// Average active power (`PTotal`, W) per `bucket` in `[from, to)`, oldest first; buckets
/// without a value are absent. Buckets are aligned to 2000-01-01 UTC either way (time_bucket's
/// default origin for sub-week widths is 2000-01-03, a Monday, hence the explicit origin).
pub async fn power_series(
    db: impl PgExecutor<'_>,
    bucketing: Bucketing,
    device_id: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: TimeDelta,
) -> Result<Vec<(DateTime<Utc>, f64)>, sqlx::Error> {
    let bin = match bucketing {
        Bucketing::TimeBucket => r#"time_bucket($4, "Time", timestamptz '2000-01-01')"#,
        Bucketing::DateBin => r#"date_bin($4, "Time", timestamptz '2000-01-01')"#,
    };
    let sql = format!(
        r#"SELECT {bin} AS bucket, avg("PTotal")::float8
           FROM monitoring."PowerMeasurements"
           WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3 AND "PTotal" IS NOT NULL
           GROUP BY bucket ORDER BY bucket"#
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(device_id).bind(from).bind(to).bind(bucket).fetch_all(db).await
}

/// Total active (`PTotal`, W) and apparent (`STotal`, VA) power of each of `device_ids` in
/// `[from, to]`, per device oldest first: what a demand forecast integrates.
pub async fn power_samples(
    db: impl PgExecutor<'_>,
    device_ids: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i32, DateTime<Utc>, Option<f64>, Option<f64>)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "DeviceId", "Time", "PTotal"::float8, "STotal"::float8 FROM monitoring."PowerMeasurements"
           WHERE "DeviceId" = ANY($1) AND "Time" >= $2 AND "Time" <= $3
           ORDER BY "DeviceId", "Time""#,
    )
    .bind(device_ids)
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await
}
