//! The rollup job: keeps the device intervals up to date from the readings, per device, behind
//! its watermark (the maths is `maths.rs`, the tables' SQL `intervals.rs` and `watermarks.rs`).
//!
//! A run for one device, in one transaction: lock its watermark row (FOR UPDATE), take any
//! backfill note the write path left, read the readings from the watermark (or from the
//! backfill's restart point) up to the cutoff, compute, replace the intervals from that point
//! on, and move the watermark, all or nothing. The write path holds FOR KEY SHARE on the same row
//! while it checks whether a reading is older than the watermark, so a reading committed during a
//! run is either seen by the run or noted as a backfill (`watermarks::note_late_readings`).
//!
//! The database does the per-interval summary (count, maxima, first/last counter, and whether a
//! counter dropped inside the interval); only intervals with a drop are fetched row by row.
//! That keeps a run's catch-up at 15× fewer rows crossing the wire. Rebuilding many devices
//! over a long range is `rebuild.rs`, one pass over the table instead of one per device.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::intervals::{self, Replacement};
use super::maths::{self, CHANNELS, ChannelState, HOLD, INTERVAL, Observation, Point, Sample, State, interval_start};
use super::{site_sums, watermarks};
use crate::clock::Clock;
use crate::error::Chain;

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
    Input { device: i32, source: maths::InputError },
    #[error("another rollup rebuild is running; try again when it has finished")]
    Busy,
    #[error("rebuild: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error("rebuild: the readings ended before the range did")]
    Incomplete,
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
                tracing::warn!("Energy rollup failed: {}; retrying in {} s", Chain(&e), EVERY.as_secs());
                failing = true;
            }
        }
    }
}

/// Rolls every device up to `cutoff` (the job's run). One device failing does not stop the
/// others; the first error is returned after all were tried.
pub async fn run_once(db: &PgPool, cutoff: DateTime<Utc>) -> Result<Report, RollupError> {
    let devices = watermarks::ensure(db, None).await?;
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
    // The sites' sums catch up with their devices' intervals (the door would sum the device
    // intervals of a stale site itself, only slower).
    if let Err(e) = site_sums::refresh_site_sums(db).await {
        first_error.get_or_insert(e.into());
    }
    if let Ok(lag) = watermarks::oldest(db).await {
        metrics::gauge!("tau_portal_rollup_lag_seconds")
            .set(lag.map_or(0.0, |t| (cutoff - t).as_seconds_f64().max(0.0)));
    }
    first_error.map_or(Ok(report), Err)
}

/// Makes sure the intervals of `devices` include every reading before `until` (call it before
/// computing a bill for a period that may reach into the last minute; the job otherwise trails
/// by up to [`LAG`] + [`EVERY`]). Cheap when nothing new arrived.
pub async fn ensure_up_to_date(db: &PgPool, devices: &[i32], until: DateTime<Utc>) -> Result<Report, RollupError> {
    watermarks::ensure(db, Some(devices)).await?;
    let mut report = Report::default();
    for &device in devices {
        report.add(roll_device(db, device, until).await?);
    }
    Ok(report)
}

fn record(d: &DeviceReport) {
    metrics::counter!("tau_portal_rollup_readings_total").increment(d.readings);
    metrics::counter!("tau_portal_rollup_intervals_written_total").increment(d.intervals);
    if d.backfill {
        metrics::counter!("tau_portal_rollup_backfills_total").increment(1);
    }
}

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
    let Some((_, watermark)) = watermarks::lock(&mut tx, &[device]).await?.pop() else {
        return Ok(Some(DeviceReport { device_id: device, ..Default::default() }));
    };
    let backfill = watermarks::take_backfills(&mut tx, &[device]).await?.pop().map(|(_, from)| from);
    let (state, rewound) = resume(&mut tx, device, &watermark, backfill).await?;
    // Never roll up less than an earlier run saw (ensure_up_to_date may have gone further).
    let cutoff = cutoff.max(watermark.seen_until);
    if !rewound && cutoff <= state.from {
        tx.commit().await?;
        return Ok(Some(DeviceReport { device_id: device, backfill: backfill.is_some(), ..Default::default() }));
    }
    let (observations, readings) = read_observations(&mut tx, device, state.from, cutoff).await?;
    let computed = maths::compute(&state, &observations).map_err(|source| RollupError::Input { device, source })?;
    let replacement = Replacement {
        device,
        from: state.from,
        to: None,
        intervals: computed.intervals,
        anomalies: computed.anomalies,
    };
    let intervals = intervals::replace(&mut tx, &[replacement]).await?;
    watermarks::save(&mut tx, &[(device, computed.next, cutoff)]).await?;
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
    watermark: &watermarks::Watermark,
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
    let row = sqlx::query(AssertSqlSafe(STATE_BEFORE.as_str()))
        .bind(device)
        .bind(from)
        .bind(from - LOOKBACK)
        .fetch_one(conn)
        .await?;
    let latest: Option<DateTime<Utc>> = row.try_get("latest")?;
    let mut channels = [ChannelState::default(); CHANNELS];
    for (c, channel) in channels.iter_mut().enumerate() {
        let time: Option<DateTime<Utc>> = row.try_get(format!("t{c}").as_str())?;
        let value: Option<f64> = row.try_get(format!("v{c}").as_str())?;
        let last = time.zip(value).map(|(time, value)| Point { time, value });
        let stale = last.zip(latest).is_some_and(|(p, latest)| latest > p.time + HOLD);
        *channel = ChannelState { last, stale };
    }
    Ok(State { from, channels })
}

/// [`state_before`]'s statement: per channel `c` (the columns of [`COUNTER_COLUMNS`]) its last
/// time `t{c}` and value `v{c}` before `$2` (and after `$3`), and the latest reading `latest`.
static STATE_BEFORE: LazyLock<String> = LazyLock::new(|| {
    let mut sql = String::from(
        r#"SELECT (SELECT max("Time") FROM monitoring."PowerMeasurements"
                   WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3) AS latest"#,
    );
    let mut joins = String::new();
    for (c, column) in COUNTER_COLUMNS.iter().enumerate() {
        sql.push_str(&format!(", c{c}.\"Time\" AS t{c}, c{c}.v AS v{c}"));
        joins.push_str(&format!(
            r#" LEFT JOIN LATERAL (SELECT "Time", "{column}" AS v FROM monitoring."PowerMeasurements"
                WHERE "DeviceId" = $1 AND "Time" < $2 AND "Time" >= $3 AND "{column}" IS NOT NULL
                ORDER BY "Time" DESC LIMIT 1) c{c} ON true"#
        ));
    }
    format!("{sql} FROM (SELECT 1) one{joins}")
});

/// The stored counter column of each channel, in channel order (`maths::CHANNELS`).
pub(super) const COUNTER_COLUMNS: [&str; CHANNELS] =
    ["EnergyImportWh", "EnergyExportWh", "ApparentVAh", "ReactiveImportVarh", "ReactiveExportVarh"];

/// The per-interval summary of the device's readings in `[from, to)`, with the intervals where
/// a counter drops replaced by their individual readings. Also returns the number of readings.
async fn read_observations(
    conn: &mut PgConnection,
    device: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<Observation>, u64), sqlx::Error> {
    let rows = sqlx::query(AssertSqlSafe(OBSERVATIONS.as_str()))
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
            observations.extend(maths::observations(&samples(conn, device, start, start + INTERVAL).await?));
        } else {
            observations.push(summary(row, n)?);
        }
    }
    Ok((observations, readings))
}

/// [`read_observations`]'s statement. Within an interval a counter that never drops has its first
/// value at its minimum and its last at its maximum; a drop is a value below the running maximum
/// of the earlier ones. Per channel `c`: `v{c}0`, `v{c}1` (min, max), `t{c}0`, `t{c}1` (first and
/// last time with a value).
static OBSERVATIONS: LazyLock<String> = LazyLock::new(|| {
    let (mut summary, mut drops, mut columns, mut maxima) = (String::new(), Vec::new(), String::new(), String::new());
    for (c, column) in COUNTER_COLUMNS.iter().enumerate() {
        summary.push_str(&format!(
            ", min(c{c}) AS v{c}0, max(c{c}) AS v{c}1, min(t) FILTER (WHERE c{c} IS NOT NULL) AS t{c}0, \
             max(t) FILTER (WHERE c{c} IS NOT NULL) AS t{c}1"
        ));
        drops.push(format!("c{c} < m{c}"));
        columns.push_str(&format!(", \"{column}\" AS c{c}"));
        maxima.push_str(&format!(", max(\"{column}\") OVER w AS m{c}"));
    }
    format!(
        r#"SELECT b, count(*)::int8 AS n, max(p) AS max_w, max(s) AS max_va, max(t) AS last_time{summary},
                  coalesce(bool_or({drops}), false) AS dropped
           FROM (SELECT date_bin('15 minutes', "Time", timestamptz '2000-01-01') AS b, "Time" AS t,
                        "PTotal" AS p, "STotal" AS s{columns}{maxima}
                 FROM monitoring."PowerMeasurements"
                 WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3
                 WINDOW w AS (PARTITION BY date_bin('15 minutes', "Time", timestamptz '2000-01-01') ORDER BY "Time"
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) r
           GROUP BY b ORDER BY b"#,
        drops = drops.join(" OR ")
    )
});

fn summary(row: &PgRow, n: i64) -> Result<Observation, sqlx::Error> {
    let mut points: [Vec<Point>; CHANNELS] = Default::default();
    for (c, points) in points.iter_mut().enumerate() {
        let [v0, v1, t0, t1] = [format!("v{c}0"), format!("v{c}1"), format!("t{c}0"), format!("t{c}1")];
        let first: Option<(DateTime<Utc>, f64)> =
            row.try_get::<Option<DateTime<Utc>>, _>(t0.as_str())?.zip(row.try_get(v0.as_str())?);
        let last: Option<(DateTime<Utc>, f64)> =
            row.try_get::<Option<DateTime<Utc>>, _>(t1.as_str())?.zip(row.try_get(v1.as_str())?);
        if let (Some(first), Some(last)) = (first, last) {
            points.push(Point { time: first.0, value: first.1 });
            if last.0 > first.0 {
                points.push(Point { time: last.0, value: last.1 });
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

/// Every reading of the device in `[from, to)`, oldest first.
async fn samples(
    conn: &mut PgConnection,
    device: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Sample>, sqlx::Error> {
    type SampleRow =
        (DateTime<Utc>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f32>, Option<f32>);
    let rows: Vec<SampleRow> = sqlx::query_as(
        r#"SELECT "Time", "EnergyImportWh", "EnergyExportWh", "ApparentVAh", "ReactiveImportVarh", "ReactiveExportVarh",
                  "PTotal", "STotal"
           FROM monitoring."PowerMeasurements" WHERE "DeviceId" = $1 AND "Time" >= $2 AND "Time" < $3 ORDER BY "Time""#,
    )
    .bind(device)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(time, i, e, a, ri, re, p_total, s_total)| Sample { time, counters: [i, e, a, ri, re], p_total, s_total })
        .collect())
}
