//! The store's read queries: the latest reading of a device, bucketed chart series
//! (`time_bucket` on TimescaleDB, `date_bin` on plain PostgreSQL), and export pages.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgExecutor, PgPool, Row};

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

/// How a chart groups readings: fixed widths aligned to 2000-01-01 UTC, or the local calendar
/// days of a time zone (23 and 25 hours long on DST change days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesBucket {
    Fixed(TimeDelta),
    LocalDay(chrono_tz::Tz),
}

/// One bucket of a chart: where it starts, how many readings it holds, and per requested column
/// the minimum, average and maximum (absent when no reading of the bucket had the column).
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketed {
    pub start: DateTime<Utc>,
    pub samples: i64,
    pub values: Vec<[Option<f64>; 3]>,
}

/// A stored real quantity's column name, if `column` is one (the SQL below is built from these).
fn real_column(column: &str) -> Option<&'static str> {
    REAL_QUANTITIES.iter().map(|(_, c, _)| *c).find(|c| *c == column)
}

/// `columns` of a device's readings in `[from, to)`, min/avg/max per bucket, oldest first;
/// buckets without readings are absent. Hour and day buckets come from the hourly rollup (and
/// the readings after its stale point, see `hourly`); finer ones from the readings, which the
/// callers keep to short spans.
pub async fn series(
    db: &PgPool,
    bucketing: Bucketing,
    device_id: i32,
    columns: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: SeriesBucket,
) -> Result<Vec<Bucketed>, sqlx::Error> {
    let rows = series_many(db, bucketing, &[device_id], columns, from, to, bucket).await?;
    Ok(rows.into_iter().map(|(_, b)| b).collect())
}

/// [`series`] of several devices in one statement: `(device, bucket)` rows grouped by device,
/// each device's oldest first (the caller matches them by id).
pub async fn series_many(
    db: &PgPool,
    bucketing: Bucketing,
    device_ids: &[i32],
    columns: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: SeriesBucket,
) -> Result<Vec<(i32, Bucketed)>, sqlx::Error> {
    if super::hourly::serves(bucket) {
        return super::hourly::series_many(db, device_ids, columns, from, to, bucket).await;
    }
    let columns: Vec<&str> = columns.iter().filter_map(|c| real_column(c)).collect();
    let aggregates: Vec<String> =
        columns.iter().map(|c| format!(r#", min("{c}")::float8, avg("{c}")::float8, max("{c}")::float8"#)).collect();
    let bin = match bucketing {
        Bucketing::TimeBucket => r#"time_bucket($4::interval, "Time", timestamptz '2000-01-01')"#,
        Bucketing::DateBin => r#"date_bin($4::interval, "Time", timestamptz '2000-01-01')"#,
    };
    // The device is the last column, after the ones `bucketed` reads.
    let sql = format!(
        r#"SELECT {bin} AS bucket, count(*) AS samples{aggs}, "DeviceId"
           FROM monitoring."PowerMeasurements"
           WHERE "DeviceId" = ANY($1) AND "Time" >= $2 AND "Time" < $3
           GROUP BY "DeviceId", bucket ORDER BY "DeviceId", bucket"#,
        aggs = aggregates.concat(),
    );
    let width = match bucket {
        SeriesBucket::Fixed(width) => width,
        SeriesBucket::LocalDay(_) => TimeDelta::days(1),
    };
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(device_ids).bind(from).bind(to).bind(width).fetch_all(db).await?;
    let device_column = 2 + 3 * columns.len();
    rows.iter().map(|row| Ok((row.try_get(device_column)?, bucketed(row, columns.len(), None)?))).collect()
}

/// A series row: the bucket (a UTC instant, or with `local` a local date's timestamp mapped to
/// that day's start), its reading count, then min/avg/max per column.
pub(super) fn bucketed(row: &PgRow, columns: usize, local: Option<SeriesBucket>) -> Result<Bucketed, sqlx::Error> {
    let start = match local {
        Some(SeriesBucket::LocalDay(tz)) => {
            let local: chrono::NaiveDateTime = row.try_get(0)?;
            crate::tariffs::local::local_midnight(tz, local.date())
        }
        _ => row.try_get(0)?,
    };
    let values = (0..columns)
        .map(|i| -> Result<[Option<f64>; 3], sqlx::Error> {
            Ok([row.try_get(2 + 3 * i)?, row.try_get(3 + 3 * i)?, row.try_get(4 + 3 * i)?])
        })
        .collect::<Result<_, _>>()?;
    Ok(Bucketed { start, samples: row.try_get(1)?, values })
}

/// Up to `limit` of a device's readings from `from` (inclusive, or exclusive when `after`) until
/// `to` (exclusive), oldest first: one page of an export, which continues after the last time.
pub async fn readings_page(
    db: impl PgExecutor<'_>,
    device_id: i32,
    from: DateTime<Utc>,
    after: bool,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredReading>, sqlx::Error> {
    let op = if after { ">" } else { ">=" };
    let sql = format!(
        r#"SELECT * FROM monitoring."PowerMeasurements"
           WHERE "DeviceId" = $1 AND "Time" {op} $2 AND "Time" < $3 ORDER BY "Time" LIMIT $4"#
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(device_id).bind(from).bind(to).bind(limit).fetch_all(db).await?;
    rows.iter().map(reading_from).collect()
}

impl StoredReading {
    /// Every stored column with its unit, in the store's order (real quantities, then counters).
    pub fn columns() -> impl Iterator<Item = (&'static str, &'static str)> {
        REAL_QUANTITIES.iter().chain(COUNTER_QUANTITIES.iter()).map(|(_, c, u)| (*c, *u))
    }

    /// The values in [`columns`](Self::columns) order; real quantities as the float4 they are
    /// stored as (so 230.44 V is written `230.44`, not its f64 widening).
    pub fn cells(&self) -> impl Iterator<Item = String> + '_ {
        self.values.iter().enumerate().map(|(i, (_, v))| match v {
            None => String::new(),
            Some(v) if i < REAL_QUANTITIES.len() => (*v as f32).to_string(),
            Some(v) => v.to_string(),
        })
    }
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
