//! Keeps `monitoring."EnergyIntervals"` up to date from the readings, per device, behind the
//! watermark in `monitoring."EnergyWatermarks"` (the maths is in `energy.rs`).
//!
//! A run for one device, in one transaction: lock its watermark row (FOR UPDATE), take any
//! backfill note the write path left, read the readings from the watermark (or from the
//! backfill's restart point) up to the cutoff, compute, replace the intervals from that point
//! on, and move the watermark, all or nothing. The write path holds FOR KEY SHARE on the same row
//! while it checks whether a reading is older than the watermark, so a reading committed during a
//! run is either seen by the run or noted as a backfill (see `measurements::write`).
//!
//! The database does the per-interval summary (count, maxima, first/last counter, and whether a
//! counter dropped inside the interval); only intervals with a drop are fetched row by row.
//! That keeps a run's catch-up at 15× fewer rows crossing the wire. Rebuilding many devices
//! over a long range is `rebuild.rs`, one pass over the table instead of one per device.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::copy;
use super::energy::{
    self, APPARENT, CHANNELS, ChannelState, EXPORT, HOLD, IMPORT, INTERVAL, Interval, Observation, Point, Sample,
    State, interval_start,
};
use crate::clock::Clock;

/// Readings younger than this are left for the next run: a meter's reading usually arrives
/// within seconds; waiting a little saves recomputing because of readings still in flight.
/// Correctness does not depend on it (a later reading is re-read or noted as a backfill).
pub const LAG: TimeDelta = TimeDelta::minutes(1);
/// How often the background job runs.
pub const EVERY: Duration = Duration::from_secs(60);
/// How far back the restart point of a backfill or rebuild looks for a counter's last value.
const LOOKBACK: TimeDelta = TimeDelta::days(400);
/// The advisory lock a rebuild holds (exclusive) while it runs; the job's device runs take it
/// shared and leave the device alone when they cannot ("tau_roll" in ASCII).
pub(super) const REBUILD_LOCK: i64 = 0x7461_755f_726f_6c6c;

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("device {device}: {source}")]
    Input { device: i32, source: energy::InputError },
    #[error("unknown device externalId '{0}'")]
    UnknownDevice(String),
    #[error("another rollup rebuild is running; try again when it has finished")]
    Busy,
}

/// What one device's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceReport {
    pub device_id: i32,
    pub readings: u64,
    pub intervals: u64,
    /// Where the recomputation started (the watermark, or earlier for a backfill/rebuild).
    pub from: Option<DateTime<Utc>>,
    pub backfill: bool,
}

/// The sum over devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub devices: u64,
    pub readings: u64,
    pub intervals: u64,
    pub backfills: u64,
    /// Devices left for a rebuild in progress to do.
    pub deferred: u64,
}

impl Report {
    /// Counts one device's run (`None`: deferred to a rebuild in progress) and records its metrics.
    fn add(&mut self, run: Option<DeviceReport>) {
        let Some(d) = run else {
            self.deferred += 1;
            return;
        };
        record(&d);
        self.devices += 1;
        self.readings += d.readings;
        self.intervals += d.intervals;
        self.backfills += u64::from(d.backfill);
    }
}

/// The background task (Client mode): a run every [`EVERY`] until `shutdown`. A failed run (the
/// database away) is logged and counted; the next tick tries again.
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
            run = run_once(&db, clock.now() - LAG) => run,
            () = shutdown.cancelled() => return,
        };
        metrics::gauge!("tau_portal_rollup_last_run_duration_seconds").set(started.elapsed().as_secs_f64());
        match run {
            Ok(report) => {
                metrics::counter!("tau_portal_rollup_runs_total", "outcome" => "ok").increment(1);
                if failing || report.backfills > 0 {
                    tracing::info!(
                        devices = report.devices,
                        readings = report.readings,
                        intervals = report.intervals,
                        backfills = report.backfills,
                        "Energy rollup ran"
                    );
                }
                failing = false;
            }
            Err(e) => {
                metrics::counter!("tau_portal_rollup_runs_total", "outcome" => "error").increment(1);
                tracing::warn!("Energy rollup failed: {e}; retrying in {} s", EVERY.as_secs());
                failing = true;
            }
        }
    }
}

/// Rolls every device up to `cutoff` (the job's run). One device failing does not stop the
/// others; the first error is returned after all were tried.
pub async fn run_once(db: &PgPool, cutoff: DateTime<Utc>) -> Result<Report, RollupError> {
    let devices = ensure_watermarks(db, None).await?;
    let mut report = Report::default();
    let mut first_error = None;
    for device in devices {
        match roll_device(db, device, cutoff).await {
            Ok(run) => report.add(run),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // The sites' sums follow their devices' intervals (bills would refresh them anyway).
    if let Err(e) = super::site_rollup::refresh(db).await {
        first_error.get_or_insert(e.into());
    }
    if let Ok(lag) = oldest_watermark(db).await {
        metrics::gauge!("tau_portal_rollup_lag_seconds")
            .set(lag.map_or(0.0, |t| (cutoff - t).as_seconds_f64().max(0.0)));
    }
    first_error.map_or(Ok(report), Err)
}

/// Makes sure the intervals of `devices` include every reading before `until` (call it before
/// computing a bill for a period that may reach into the last minute; the job otherwise trails
/// by up to [`LAG`] + [`EVERY`]). Cheap when nothing new arrived.
pub async fn ensure_up_to_date(db: &PgPool, devices: &[i32], until: DateTime<Utc>) -> Result<Report, RollupError> {
    ensure_watermarks(db, Some(devices)).await?;
    let mut report = Report::default();
    for &device in devices {
        report.add(roll_device(db, device, until).await?);
    }
    Ok(report)
}

/// The id of a device by its `externalId`.
pub async fn device_id(db: &PgPool, external_id: &str) -> Result<i32, RollupError> {
    sqlx::query_scalar(r#"SELECT "Id" FROM monitoring."Devices" WHERE "ExternalId" = $1"#)
        .bind(external_id)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| RollupError::UnknownDevice(external_id.to_string()))
}

fn record(d: &DeviceReport) {
    metrics::counter!("tau_portal_rollup_readings_total").increment(d.readings);
    metrics::counter!("tau_portal_rollup_intervals_written_total").increment(d.intervals);
    if d.backfill {
        metrics::counter!("tau_portal_rollup_backfills_total").increment(1);
    }
}

/// Creates the missing watermark rows and returns the devices. Committed before any run: the
/// write path can only notice a late reading for a device that has a watermark row.
pub(super) async fn ensure_watermarks(db: &PgPool, devices: Option<&[i32]>) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."EnergyWatermarks" ("DeviceId")
           SELECT "Id" FROM monitoring."Devices" WHERE $1::int4[] IS NULL OR "Id" = ANY($1)
           ON CONFLICT DO NOTHING"#,
    )
    .bind(devices)
    .execute(db)
    .await?;
    sqlx::query_scalar(
        r#"SELECT "DeviceId" FROM monitoring."EnergyWatermarks" WHERE $1::int4[] IS NULL OR "DeviceId" = ANY($1)
           ORDER BY "DeviceId""#,
    )
    .bind(devices)
    .fetch_all(db)
    .await
}

async fn oldest_watermark(db: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT min("ProcessedUntil") FROM monitoring."EnergyWatermarks" WHERE "ProcessedUntil" > '1900-01-01'"#,
    )
    .fetch_one(db)
    .await
}

pub(super) struct Watermark {
    pub state: State,
    pub seen_until: DateTime<Utc>,
}

/// Locks the devices' watermark rows for the rest of the transaction (in id order, as every
/// locker does, so two never wait for each other) and returns them.
pub(super) async fn lock_watermarks(
    conn: &mut PgConnection,
    devices: &[i32],
) -> Result<Vec<(i32, Watermark)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT * FROM monitoring."EnergyWatermarks" WHERE "DeviceId" = ANY($1) ORDER BY "DeviceId" FOR UPDATE"#,
    )
    .bind(devices)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let mut channels = [ChannelState::default(); CHANNELS];
            for (c, (at, value, stale)) in CHANNEL_COLUMNS.iter().enumerate() {
                let time: Option<DateTime<Utc>> = row.try_get(*at)?;
                let value: Option<f64> = row.try_get(*value)?;
                channels[c] = ChannelState {
                    last: time.zip(value).map(|(time, value)| Point { time, value }),
                    stale: row.try_get(*stale)?,
                };
            }
            let state = State { from: row.try_get("ProcessedUntil")?, channels };
            Ok((row.try_get("DeviceId")?, Watermark { state, seen_until: row.try_get("SeenUntil")? }))
        })
        .collect()
}

const CHANNEL_COLUMNS: [(&str, &str, &str); CHANNELS] = [
    ("ImportAt", "ImportWh", "ImportStale"),
    ("ExportAt", "ExportWh", "ExportStale"),
    ("ApparentAt", "ApparentVAh", "ApparentStale"),
];

/// One device's incremental run up to `cutoff`, in one transaction; `None` when a rebuild is
/// in progress (it does the device's work).
async fn roll_device(db: &PgPool, device: i32, cutoff: DateTime<Utc>) -> Result<Option<DeviceReport>, RollupError> {
    let mut tx = db.begin().await?;
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock_shared($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !free {
        return Ok(None);
    }
    let Some((_, watermark)) = lock_watermarks(&mut tx, &[device]).await?.pop() else {
        return Ok(Some(DeviceReport { device_id: device, ..Default::default() }));
    };
    let backfill: Option<DateTime<Utc>> =
        sqlx::query_scalar(r#"DELETE FROM monitoring."EnergyBackfills" WHERE "DeviceId" = $1 RETURNING "From""#)
            .bind(device)
            .fetch_optional(&mut *tx)
            .await?;
    let (state, rewound) = resume(&mut tx, device, &watermark, backfill).await?;
    // Never roll up less than an earlier run saw (ensure_up_to_date may have gone further).
    let cutoff = cutoff.max(watermark.seen_until);
    if !rewound && cutoff <= state.from {
        tx.commit().await?;
        return Ok(Some(DeviceReport { device_id: device, backfill: backfill.is_some(), ..Default::default() }));
    }
    let (observations, readings) = read_observations(&mut tx, device, state.from, cutoff).await?;
    let computed = energy::compute(&state, &observations).map_err(|source| RollupError::Input { device, source })?;
    let replacement = Replacement { device, from: state.from, to: None, intervals: computed.intervals };
    let intervals = replace_intervals(&mut tx, &[replacement]).await?;
    save_watermarks(&mut tx, &[(device, computed.next, cutoff)]).await?;
    tx.commit().await?;
    Ok(Some(DeviceReport {
        device_id: device,
        readings,
        intervals,
        from: Some(state.from),
        backfill: backfill.is_some(),
    }))
}

/// Where a device's run starts: at its watermark, or at the state before `restart` (a backfill,
/// a rebuild's start) when that is earlier; and whether it was rewound.
pub(super) async fn resume(
    conn: &mut PgConnection,
    device: i32,
    watermark: &Watermark,
    restart: Option<DateTime<Utc>>,
) -> Result<(State, bool), sqlx::Error> {
    match restart.filter(|t| *t < watermark.state.from) {
        Some(t) => Ok((restart_state(conn, device, t).await?, true)),
        None => Ok((watermark.state, false)),
    }
}

/// The state to recompute from when readings at `t` changed: the counters' last values before
/// it, moved back to the interval of the earliest of them that is not stale (the energy after
/// that value was spread up to the next one, which the change may have moved).
pub(super) async fn restart_state(
    conn: &mut PgConnection,
    device: i32,
    t: DateTime<Utc>,
) -> Result<State, sqlx::Error> {
    let at_t = state_before(conn, device, interval_start(t)).await?;
    let mut from = at_t.from;
    for ch in at_t.channels.iter().filter(|ch| !ch.stale) {
        if let Some(p) = ch.last {
            from = from.min(interval_start(p.time));
        }
    }
    if from == at_t.from { Ok(at_t) } else { state_before(conn, device, from).await }
}

/// The carried state at interval start `from`, reconstructed from the readings: each counter's
/// last value before it, stale when the meter reported later than [`HOLD`] after it.
async fn state_before(conn: &mut PgConnection, device: i32, from: DateTime<Utc>) -> Result<State, sqlx::Error> {
    let row = sqlx::query(
        r#"SELECT i."Time" AS it, i.v AS iv, e."Time" AS et, e.v AS ev, a."Time" AS at, a.v AS av,
                  (SELECT max("Time") FROM monitoring."PowerMeasurements"
                   WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3) AS latest
           FROM (SELECT 1) one
           LEFT JOIN LATERAL (SELECT "Time", "EnergyImportWh" AS v FROM monitoring."PowerMeasurements"
                WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3 AND "EnergyImportWh" IS NOT NULL
                ORDER BY "Time" DESC LIMIT 1) i ON true
           LEFT JOIN LATERAL (SELECT "Time", "EnergyExportWh" AS v FROM monitoring."PowerMeasurements"
                WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3 AND "EnergyExportWh" IS NOT NULL
                ORDER BY "Time" DESC LIMIT 1) e ON true
           LEFT JOIN LATERAL (SELECT "Time", "ApparentVAh" AS v FROM monitoring."PowerMeasurements"
                WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3 AND "ApparentVAh" IS NOT NULL
                ORDER BY "Time" DESC LIMIT 1) a ON true"#,
    )
    .bind(device)
    .bind(from)
    .bind(from - LOOKBACK)
    .fetch_one(conn)
    .await?;
    let latest: Option<DateTime<Utc>> = row.try_get("latest")?;
    let mut channels = [ChannelState::default(); CHANNELS];
    for (c, (t, v)) in [("it", "iv"), ("et", "ev"), ("at", "av")].into_iter().enumerate() {
        let time: Option<DateTime<Utc>> = row.try_get(t)?;
        let value: Option<f64> = row.try_get(v)?;
        let last = time.zip(value).map(|(time, value)| Point { time, value });
        let stale = last.zip(latest).is_some_and(|(p, latest)| latest > p.time + HOLD);
        channels[c] = ChannelState { last, stale };
    }
    Ok(State { from, channels })
}

/// The per-interval summary of the device's readings in `[from, to)`, with the intervals where
/// a counter drops replaced by their individual readings. Also returns the number of readings.
async fn read_observations(
    conn: &mut PgConnection,
    device: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<Observation>, u64), sqlx::Error> {
    // Within an interval a counter that never drops has its first value at its minimum and its
    // last at its maximum; a drop is a value below the running maximum of the earlier ones.
    let rows = sqlx::query(
        r#"SELECT b, count(*)::int8 AS n, max(p) AS max_w, max(s) AS max_va, max(t) AS last_time,
                  min(i) AS i0, max(i) AS i1, min(t) FILTER (WHERE i IS NOT NULL) AS it0, max(t) FILTER (WHERE i IS NOT NULL) AS it1,
                  min(e) AS e0, max(e) AS e1, min(t) FILTER (WHERE e IS NOT NULL) AS et0, max(t) FILTER (WHERE e IS NOT NULL) AS et1,
                  min(a) AS a0, max(a) AS a1, min(t) FILTER (WHERE a IS NOT NULL) AS at0, max(t) FILTER (WHERE a IS NOT NULL) AS at1,
                  coalesce(bool_or(i < im OR e < em OR a < am), false) AS dropped
           FROM (SELECT date_bin('15 minutes', "Time", timestamptz '2000-01-01') AS b, "Time" AS t,
                        "PTotal" AS p, "STotal" AS s,
                        "EnergyImportWh" AS i, "EnergyExportWh" AS e, "ApparentVAh" AS a,
                        max("EnergyImportWh") OVER w AS im, max("EnergyExportWh") OVER w AS em,
                        max("ApparentVAh") OVER w AS am
                 FROM monitoring."PowerMeasurements"
                 WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3
                 WINDOW w AS (PARTITION BY date_bin('15 minutes', "Time", timestamptz '2000-01-01') ORDER BY "Time"
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) r
           GROUP BY b ORDER BY b"#,
    )
    .bind(device)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut observations = Vec::with_capacity(rows.len());
    let mut readings = 0u64;
    for row in &rows {
        let n: i64 = row.try_get("n")?;
        readings += n as u64;
        if row.try_get("dropped")? {
            let start: DateTime<Utc> = row.try_get("b")?;
            observations.extend(energy::observations(&samples(conn, device, start, start + INTERVAL).await?));
        } else {
            observations.push(summary(row, n)?);
        }
    }
    Ok((observations, readings))
}

fn summary(row: &PgRow, n: i64) -> Result<Observation, sqlx::Error> {
    let mut points: [Vec<Point>; CHANNELS] = Default::default();
    for (c, [v0, v1, t0, t1]) in [IMPORT_COLS, EXPORT_COLS, APPARENT_COLS].into_iter().enumerate() {
        let first: Option<(DateTime<Utc>, f64)> = row.try_get::<Option<DateTime<Utc>>, _>(t0)?.zip(row.try_get(v0)?);
        let last: Option<(DateTime<Utc>, f64)> = row.try_get::<Option<DateTime<Utc>>, _>(t1)?.zip(row.try_get(v1)?);
        if let (Some(first), Some(last)) = (first, last) {
            points[c].push(Point { time: first.0, value: first.1 });
            if last.0 > first.0 {
                points[c].push(Point { time: last.0, value: last.1 });
            }
        }
    }
    Ok(Observation {
        start: row.try_get("b")?,
        samples: n.try_into().unwrap_or(u32::MAX),
        last_time: row.try_get("last_time")?,
        max_w: row.try_get("max_w")?,
        max_va: row.try_get("max_va")?,
        points,
    })
}

const IMPORT_COLS: [&str; 4] = ["i0", "i1", "it0", "it1"];
const EXPORT_COLS: [&str; 4] = ["e0", "e1", "et0", "et1"];
const APPARENT_COLS: [&str; 4] = ["a0", "a1", "at0", "at1"];

/// Every reading of the device in `[from, to)`, oldest first.
async fn samples(
    conn: &mut PgConnection,
    device: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Sample>, sqlx::Error> {
    type SampleRow = (DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>, Option<f32>, Option<f32>);
    let rows: Vec<SampleRow> = sqlx::query_as(
        r#"SELECT "Time", "EnergyImportWh", "EnergyExportWh", "ApparentVAh", "PTotal", "STotal"
           FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3 ORDER BY "Time""#,
    )
    .bind(device)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(time, i, e, a, p_total, s_total)| Sample { time, counters: [i, e, a], p_total, s_total })
        .collect())
}

/// One device's intervals from `from` up to `to` (`None`: all later ones), to be replaced by
/// `intervals`, which all lie inside that range.
pub(super) struct Replacement {
    pub device: i32,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub intervals: Vec<Interval>,
}

/// Replaces the intervals of each device's range, and queues the devices' sites for
/// `site_rollup::refresh` from the ranges' starts; returns how many intervals were written. The
/// one way intervals are written (the job's run, the rebuild), so the site sums always follow.
pub(super) async fn replace_intervals(
    conn: &mut PgConnection,
    replacements: &[Replacement],
) -> Result<u64, sqlx::Error> {
    if replacements.is_empty() {
        return Ok(0);
    }
    delete_intervals(conn, replacements).await?;
    queue_sites(conn, replacements).await?;
    write_intervals(conn, replacements).await
}

/// Deletes each device's intervals in its range.
///
/// The rows are found by an index lookup per device and deleted by `ctid`: as a join of the
/// ranges with the table, the planner chose a hash join over the whole table for every batch
/// (measured: most of a rebuild's delete time). The ORDER BY keeps the lateral subquery from
/// being flattened into that join. The `ctid`s are used within the statement that reads them,
/// and only rollup writers change intervals (one at a time per device, under its watermark or
/// the rebuild lock).
async fn delete_intervals(conn: &mut PgConnection, ranges: &[Replacement]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"DELETE FROM monitoring."EnergyIntervals" WHERE ctid = ANY(ARRAY(
               SELECT x.ctid FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[]) AS r(d, f, t)
               CROSS JOIN LATERAL (SELECT ctid FROM monitoring."EnergyIntervals"
                                   WHERE "DeviceId" = r.d AND "Start" >= r.f AND "Start" < coalesce(r.t, 'infinity')
                                   ORDER BY "Start") x))"#,
    )
    .bind(ranges.iter().map(|r| r.device).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.from).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.to).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues the sites of the devices whose intervals change from the ranges' starts on. A refresh
/// holding a site's queue row makes this wait and queue the site anew after it.
async fn queue_sites(conn: &mut PgConnection, ranges: &[Replacement]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From")
           SELECT d."SiteId", min(s.f) FROM UNNEST($1::int4[], $2::timestamptz[]) AS s(id, f)
           JOIN monitoring."Devices" d ON d."Id" = s.id GROUP BY d."SiteId" ORDER BY d."SiteId"
           ON CONFLICT ("SiteId") DO UPDATE SET "From" = least(monitoring."SiteEnergyStale"."From", EXCLUDED."From")"#,
    )
    .bind(ranges.iter().map(|r| r.device).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.from).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the new intervals with one binary COPY, and returns how many. The devices' rows are
/// locked FOR KEY SHARE first (what the foreign key did row by row, see migration 0008): a device
/// deleted meanwhile is skipped, and one deleted later takes its intervals with it.
async fn write_intervals(conn: &mut PgConnection, replacements: &[Replacement]) -> Result<u64, sqlx::Error> {
    let ids: Vec<i32> = replacements.iter().filter(|r| !r.intervals.is_empty()).map(|r| r.device).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let present: std::collections::HashSet<i32> =
        sqlx::query_scalar(r#"SELECT "Id" FROM monitoring."Devices" WHERE "Id" = ANY($1) ORDER BY "Id" FOR KEY SHARE"#)
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let rows: Vec<(i32, &Interval)> = replacements
        .iter()
        .filter(|r| present.contains(&r.device))
        .flat_map(|r| r.intervals.iter().map(move |i| (r.device, i)))
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    // Field count, then per field its length and value.
    let mut w = copy::Writer::new(rows.len(), 2 + 10 * 4 + 4 + 8 + 3 * 8 + 2 * 4 + 4 + 2);
    for (device, i) in rows {
        w.row(10);
        w.int4(device);
        w.timestamptz(i.start)?;
        w.float8(Some(i.import_wh));
        w.float8(Some(i.export_wh));
        w.float8(i.apparent_vah);
        w.float4(i.max_w);
        w.float4(i.max_va);
        w.int4(i.samples.try_into().unwrap_or(i32::MAX));
        w.bool(i.estimated);
        w.bool(i.counter_reset);
    }
    let mut copy = conn
        .copy_in_raw(
            r#"COPY monitoring."EnergyIntervals" ("DeviceId", "Start", "ImportWh", "ExportWh", "ApparentVAh",
                   "MaxW", "MaxVA", "Samples", "Estimated", "CounterReset") FROM STDIN (FORMAT binary)"#,
        )
        .await?;
    copy.send(w.finish()).await?;
    copy.finish().await
}

/// Saves the devices' states as their watermarks; `SeenUntil` only moves forward, a rebuild's
/// claim ends (the job runs only when no rebuild does, and a rebuild saves when it is done).
pub(super) async fn save_watermarks(
    conn: &mut PgConnection,
    states: &[(i32, State, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    if states.is_empty() {
        return Ok(());
    }
    let at = |c: usize| states.iter().map(|s| s.1.channels[c].last.map(|p| p.time)).collect::<Vec<_>>();
    let value = |c: usize| states.iter().map(|s| s.1.channels[c].last.map(|p| p.value)).collect::<Vec<_>>();
    let stale = |c: usize| states.iter().map(|s| s.1.channels[c].stale).collect::<Vec<_>>();
    sqlx::query(
        r#"UPDATE monitoring."EnergyWatermarks" w SET "ProcessedUntil" = s.f, "SeenUntil" = greatest(w."SeenUntil", s.seen),
               "ImportAt" = s.ia, "ImportWh" = s.iv, "ImportStale" = s."is",
               "ExportAt" = s.ea, "ExportWh" = s.ev, "ExportStale" = s.es,
               "ApparentAt" = s.aa, "ApparentVAh" = s.av, "ApparentStale" = s."as", "ClaimedUntil" = NULL
           FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[],
                       $4::timestamptz[], $5::float8[], $6::bool[],
                       $7::timestamptz[], $8::float8[], $9::bool[],
                       $10::timestamptz[], $11::float8[], $12::bool[])
                AS s(d, f, seen, ia, iv, "is", ea, ev, es, aa, av, "as")
           WHERE w."DeviceId" = s.d"#,
    )
    .bind(states.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(states.iter().map(|s| s.1.from).collect::<Vec<_>>())
    .bind(states.iter().map(|s| s.2).collect::<Vec<_>>())
    .bind(at(IMPORT))
    .bind(value(IMPORT))
    .bind(stale(IMPORT))
    .bind(at(EXPORT))
    .bind(value(EXPORT))
    .bind(stale(EXPORT))
    .bind(at(APPARENT))
    .bind(value(APPARENT))
    .bind(stale(APPARENT))
    .execute(conn)
    .await?;
    Ok(())
}
