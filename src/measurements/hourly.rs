//! Hourly minimum / average / maximum of the charted quantities (`monitoring."HourlyReadings"`),
//! so long device charts read the rollup instead of every reading. The single write path marks
//! each batch's earliest reading per device in `monitoring."HourlyStale"` in the batch's
//! transaction ([`note`]); this job recomputes the marked devices' hours from there once a
//! minute. A chart reads the rollup before a device's mark and the readings after it
//! ([`series`]), so it is as fresh as the readings whether or not the job has run.
//!
//! Only hours that have ended (by [`SETTLE`]) are rolled up: the hour in progress stays marked
//! and charts read it from the readings. Recomputing it every minute cost each device the whole
//! hour's readings once a minute, at 1 s polls up to 3,600 rows per device and run, most of a
//! core for 10,000 meters by the end of each hour (issue 21); this way each hour is aggregated
//! once, and a chart reads at most an hour of readings per device.
//!
//! Why marks and not a watermark: the job takes a device's mark by deleting it, and a batch
//! written meanwhile waits on that row and marks the device again after the job commits, so no
//! reading can slip behind a position without being recomputed.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::queries::{Bucketed, SeriesBucket};
use crate::clock::Clock;

const EVERY: Duration = Duration::from_secs(60);
/// An hour is rolled up once it ended this long ago, so its last readings (stamped with their
/// slot's start, written a few seconds later) are in. A reading later still marks the hour
/// again and the next run recomputes it: correctness does not depend on this.
pub const SETTLE: TimeDelta = TimeDelta::minutes(2);
/// Hours recomputed per device and statement: a device marked from a year back (the migration
/// marks all history) is caught up a week at a time, without one huge transaction.
const CHUNK: TimeDelta = TimeDelta::days(7);
/// Statements a run may spend on one device before moving on (the next run continues).
const CHUNKS_PER_RUN: usize = 60;

/// The columns the rollup keeps (every quantity a device chart draws).
pub const COLUMNS: [&str; 11] =
    ["PTotal", "QTotal", "STotal", "V1", "V2", "V3", "I1", "I2", "I3", "PFTotal", "Frequency"];

/// Marks the devices of a batch being written as stale from their earliest reading (`devices`
/// ascending, `times` their earliest), in the batch's transaction.
///
/// A live device's mark is already at or before its new readings (the hour in progress), and the
/// WHERE leaves such a row unwritten: rewriting every device's mark in every batch was a new row
/// version per reading, a sixth of the database's time at 10,000 meters (issue 21). The
/// conflicting row is still locked, so a batch still waits for a job that is taking the mark.
pub async fn note(tx: &mut PgConnection, devices: &[i32], times: &[DateTime<Utc>]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."HourlyStale" ("DeviceId", "From") SELECT * FROM UNNEST($1::int4[], $2::timestamptz[])
           ON CONFLICT ("DeviceId") DO UPDATE SET "From" = EXCLUDED."From"
           WHERE monitoring."HourlyStale"."From" > EXCLUDED."From""#,
    )
    .bind(devices)
    .bind(times)
    .execute(tx)
    .await?;
    Ok(())
}

static INSERT_HOURS: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<String> = COLUMNS.iter().map(|c| format!(r#""{c}Min", "{c}Avg", "{c}Max""#)).collect();
    let aggregates: Vec<String> =
        COLUMNS.iter().map(|c| format!(r#"min("{c}"), avg("{c}")::real, max("{c}")"#)).collect();
    format!(
        r#"INSERT INTO monitoring."HourlyReadings" ("DeviceId", "Hour", "Samples", {names})
           SELECT "DeviceId", date_bin('1 hour', "Time", '2000-01-01'), count(*)::int4, {aggregates}
           FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3
           GROUP BY 1, 2"#,
        names = names.join(", "),
        aggregates = aggregates.join(", ")
    )
});

/// Recomputes one device's hours from its mark up to `cut` (an hour's start), a chunk at a time;
/// returns the hours written. A mark at or after `cut` is left for a later run.
async fn refresh_device(db: &PgPool, device: i32, cut: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    for _ in 0..CHUNKS_PER_RUN {
        let mut tx = db.begin().await?;
        let from: Option<DateTime<Utc>> = sqlx::query_scalar(
            r#"DELETE FROM monitoring."HourlyStale" WHERE "DeviceId" = $1 AND "From" < $2
               RETURNING date_bin('1 hour', "From", '2000-01-01')"#,
        )
        .bind(device)
        .bind(cut)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(from) = from else { return Ok(written) };
        let to = (from + CHUNK).min(cut);
        sqlx::query(
            r#"DELETE FROM monitoring."HourlyReadings" WHERE "DeviceId" = $1 AND "Hour" >= $2 AND "Hour" < $3"#,
        )
        .bind(device)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        written += sqlx::query(AssertSqlSafe(INSERT_HOURS.as_str()))
            .bind(device)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // More readings after the chunk: the device stays marked from there.
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            r#"SELECT "Time" FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1 AND "Time" >= $2
               ORDER BY "Time" LIMIT 1"#,
        )
        .bind(device)
        .bind(to)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(next) = next {
            note(&mut tx, &[device], &[next]).await?;
        }
        tx.commit().await?;
        // Done: no readings after the chunk, or the chunk reached the hour in progress (whose
        // mark was just set, and is left for a later run).
        if next.is_none() || to == cut {
            break;
        }
    }
    Ok(written)
}

/// One run over the hours that ended by `until`: every device marked before the start of
/// `until`'s hour (one failing does not stop the others; the first error is returned after all
/// were tried). Returns the hours written.
pub async fn refresh(db: &PgPool, until: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let cut = until.duration_trunc(TimeDelta::hours(1)).unwrap_or(until);
    let devices: Vec<i32> =
        sqlx::query_scalar(r#"SELECT "DeviceId" FROM monitoring."HourlyStale" WHERE "From" < $1 ORDER BY "DeviceId""#)
            .bind(cut)
            .fetch_all(db)
            .await?;
    let (mut written, mut first_error) = (0, None);
    for device in devices {
        match refresh_device(db, device, cut).await {
            Ok(n) => written += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(written), Err)
}

/// The background task (Client mode): a run every [`EVERY`] until `shutdown` over the hours that
/// ended [`SETTLE`] before `clock`'s now; a failed run is logged and the next tick tries again.
pub async fn job(db: PgPool, clock: Clock, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let started = Instant::now();
        let run = tokio::select! {
            run = refresh(&db, clock.now() - SETTLE) => run,
            () = shutdown.cancelled() => return,
        };
        metrics::gauge!("tau_portal_hourly_rollup_last_run_duration_seconds").set(started.elapsed().as_secs_f64());
        match run {
            Ok(_) if failing => {
                tracing::info!("Hourly rollup recovered");
                failing = false;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("Hourly rollup failed: {e}; retrying in {} s", EVERY.as_secs());
                failing = true;
            }
        }
    }
}

/// `columns` (a subset of [`COLUMNS`]) of a device in hour or local-day buckets over
/// `[from, to)`: the rollup's hours before the device's stale mark, the readings from there.
/// Averages of a bucket weigh each hour by its readings. See [`series_many`].
pub async fn series(
    db: &PgPool,
    device_id: i32,
    columns: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: SeriesBucket,
) -> Result<Vec<Bucketed>, sqlx::Error> {
    let rows = series_many(db, &[device_id], columns, from, to, bucket).await?;
    Ok(rows.into_iter().map(|(_, b)| b).collect())
}

/// [`series`] of several devices in one statement (the site page's devices compared): per
/// device oldest first, devices in the order of `device_ids`.
///
/// The marks are read first and bound as parameters (one per device): as a sub-select the
/// planner did not know them, planned the readings' part for the whole range, scanned the
/// measurement table and JIT-compiled the plan (a year's chart 1.6 s on 9.6 M readings, 15-30
/// ms with the mark bound: issue 21). Two statements are as good as one: a mark the job takes
/// meanwhile leaves the hours before it as they were, and one a batch adds meanwhile is a
/// write after this read.
pub async fn series_many(
    db: &PgPool,
    device_ids: &[i32],
    columns: &[&str],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: SeriesBucket,
) -> Result<Vec<(i32, Bucketed)>, sqlx::Error> {
    let columns: Vec<&str> = columns.iter().filter_map(|c| COLUMNS.iter().find(|k| *k == c).copied()).collect();
    let rolled: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!(r#""{c}Min" AS n{i}, "{c}Avg" AS a{i}, "{c}Max" AS x{i}"#))
        .collect();
    let raw: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!(r#"min("{c}") AS n{i}, avg("{c}")::real AS a{i}, max("{c}") AS x{i}"#))
        .collect();
    let outer: Vec<String> = (0..columns.len())
        .map(|i| {
            format!(
                "min(n{i})::float8, (sum(a{i}::float8 * s) / nullif(sum(s) FILTER (WHERE a{i} IS NOT NULL), 0))::float8, \
                 max(x{i})::float8"
            )
        })
        .collect();
    let (bin, local) = match bucket {
        SeriesBucket::Fixed(_) => ("date_bin($4::interval, h, '2000-01-01')", false),
        SeriesBucket::LocalDay(_) => ("date_trunc('day', h AT TIME ZONE $4::text)", true),
    };
    let sep = |v: &[String]| if v.is_empty() { String::new() } else { format!(", {}", v.join(", ")) };
    // Each device's parts probe its own index range (the laterals); the device is the last
    // column, after the ones `queries::bucketed` reads.
    let sql = format!(
        r#"WITH q AS (SELECT * FROM UNNEST($1::int4[], $5::timestamptz[]) WITH ORDINALITY AS q(dev, cut, k)),
           hours AS (
               SELECT q.k, q.dev, r.* FROM q CROSS JOIN LATERAL (
                   SELECT "Hour" AS h, "Samples"::int8 AS s{rolled}
                   FROM monitoring."HourlyReadings"
                   WHERE "DeviceId" = q.dev AND "Hour" >= $2 AND "Hour" < least($3, coalesce(q.cut, 'infinity'))) r
               UNION ALL
               SELECT q.k, q.dev, r.* FROM q CROSS JOIN LATERAL (
                   SELECT date_bin('1 hour', "Time", '2000-01-01') AS h, count(*) AS s{raw}
                   FROM monitoring."PowerMeasurements"
                   WHERE "DeviceId" = q.dev AND "Time" >= greatest($2, coalesce(q.cut, 'infinity')) AND "Time" < $3
                   GROUP BY 1) r)
           SELECT {bin} AS bucket, sum(s)::int8{outer}, dev FROM hours GROUP BY k, dev, 1 ORDER BY k, 1"#,
        rolled = sep(&rolled),
        raw = sep(&raw),
        outer = sep(&outer),
    );
    let cuts: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar(
        r#"SELECT date_bin('1 hour', s."From", '2000-01-01')
           FROM UNNEST($1::int4[]) WITH ORDINALITY AS q(dev, k)
           LEFT JOIN monitoring."HourlyStale" s ON s."DeviceId" = q.dev ORDER BY q.k"#,
    )
    .bind(device_ids)
    .fetch_all(db)
    .await?;
    let query = sqlx::query(AssertSqlSafe(sql)).bind(device_ids).bind(from).bind(to);
    let query = match bucket {
        SeriesBucket::Fixed(width) => query.bind(width),
        SeriesBucket::LocalDay(tz) => query.bind(tz.name()),
    };
    let rows = query.bind(cuts).fetch_all(db).await?;
    let device_column = 2 + 3 * columns.len();
    rows.iter()
        .map(|row| {
            let bucketed = super::queries::bucketed(row, columns.len(), if local { Some(bucket) } else { None })?;
            Ok((row.try_get(device_column)?, bucketed))
        })
        .collect()
}

/// Whether the rollup can serve `bucket` (whole hours, or days).
pub fn serves(bucket: SeriesBucket) -> bool {
    match bucket {
        SeriesBucket::Fixed(width) => width >= TimeDelta::hours(1) && width.num_seconds() % 3600 == 0,
        SeriesBucket::LocalDay(_) => true,
    }
}
