//! The rollup job: keeps the device intervals up to date from the readings, per device, behind
//! its watermark (the maths is `maths.rs`, the tables' SQL `intervals.rs` and `watermarks.rs`).
//!
//! A run takes a batch of devices in one transaction: lock their watermark rows (FOR UPDATE),
//! take any backfill notes the write path left, read each device's readings from where the last
//! run stopped reading (or from its backfill's restart point) up to the cutoff, compute, replace
//! the intervals from the watermark on, and move the watermarks, all or nothing. The interval in
//! progress at the watermark is carried from one run to the next as its summary so far
//! (`maths::join`), so a run reads only the readings that are new: re-reading it cost up to 900
//! readings per device and run at 1 s polls, twice the run's period at 10,000 meters. The write path holds FOR KEY SHARE
//! on the same rows while it checks whether a reading is older than the watermark, so a reading
//! committed during a run is either seen by the run or noted as a backfill
//! (`watermarks::note_late_readings`). Every statement serves the whole batch, so a run costs
//! about the same handful of statements for 1 or 256 devices.
//!
//! The database does the per-interval summary (count, maxima, first/last counter, and whether a
//! counter dropped inside the interval); only intervals with a drop are fetched row by row.
//! That keeps a run's catch-up at 15× fewer rows crossing the wire. Rebuilding many devices
//! over a long range is `rebuild.rs`, one pass over the table instead of one per device.

use std::collections::HashMap;
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
/// shared and leave their devices alone when they cannot ("tau_roll" in ASCII).
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
    let (report, mut first_error) = roll(db, None, cutoff).await?;
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
    let (report, first_error) = roll(db, Some(devices), until).await?;
    first_error.map_or(Ok(report), Err)
}

/// At most this many devices share a run's transaction...
const BATCH_DEVICES: usize = 256;
/// ...and together at most this much time to read (each from where it starts to the cutoff; a
/// device with more is a batch of its own). At 1 s polls 8 hours are ~29,000 readings; a run
/// every minute reads ~1 minute per device, so the device limit is the one that counts.
const BATCH_SPAN: TimeDelta = TimeDelta::hours(8);

/// Rolls `devices` (all when `None`) up to `cutoff`, a batch of devices per transaction: a run
/// per device cost ~7 statements and a transaction each, most of a database core at 10,000
/// devices. A batch that fails for one of its devices (bad input, a statement the database
/// refused) is tried again device by device, so the others are rolled up; that error is returned
/// beside the report. Any other error (the database away) ends the run.
async fn roll(
    db: &PgPool,
    devices: Option<&[i32]>,
    cutoff: DateTime<Utc>,
) -> Result<(Report, Option<RollupError>), RollupError> {
    let pending = watermarks::ensure(db, devices).await?;
    let mut report = Report::default();
    let mut first_error = None;
    for batch in batches(&pending, cutoff) {
        match roll_batch(db, batch, cutoff).await {
            Ok(runs) => runs.into_iter().for_each(|run| report.add(run)),
            Err(e) if e.is_device_specific() => {
                for device in batch {
                    match roll_batch(db, std::slice::from_ref(device), cutoff).await {
                        Ok(runs) => runs.into_iter().for_each(|run| report.add(run)),
                        Err(e) if e.is_device_specific() => {
                            first_error.get_or_insert(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((report, first_error))
}

impl RollupError {
    /// Whether the error belongs to the devices being rolled up (their readings, a statement the
    /// database refused for them) rather than to the database as a whole.
    fn is_device_specific(&self) -> bool {
        match self {
            RollupError::Input { .. } => true,
            // Not the database as a whole: no lost connection (08), lack of resources (53),
            // shutdown (57), system error (58) or read-only server (25006, after a failover).
            RollupError::Db(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                !["08", "53", "57", "58"].iter().any(|class| code.starts_with(class)) && code != "25006"
            }),
            _ => false,
        }
    }
}

/// Splits the devices, in id order (the order every locker takes the watermark rows in), into
/// runs' batches (see [`BATCH_DEVICES`], [`BATCH_SPAN`]).
fn batches(pending: &[watermarks::Pending], cutoff: DateTime<Utc>) -> Vec<&[watermarks::Pending]> {
    let mut out = Vec::new();
    let (mut first, mut span) = (0, TimeDelta::zero());
    for (i, p) in pending.iter().enumerate() {
        let own = p.start.map_or(TimeDelta::zero(), |start| (cutoff - start).max(TimeDelta::zero()));
        if i > first && (i - first == BATCH_DEVICES || span + own > BATCH_SPAN) {
            out.push(&pending[first..i]);
            (first, span) = (i, TimeDelta::zero());
        }
        span += own;
    }
    if first < pending.len() {
        out.push(&pending[first..]);
    }
    out
}

fn record(d: &DeviceReport) {
    metrics::counter!("tau_portal_rollup_readings_total").increment(d.readings);
    metrics::counter!("tau_portal_rollup_intervals_written_total").increment(d.intervals);
    if d.backfill {
        metrics::counter!("tau_portal_rollup_backfills_total").increment(1);
    }
}

/// One device's part of a batch: what it reads, from which state.
struct DeviceRun {
    device: i32,
    state: State,
    /// The interval at `state.from` as far as the last run read it (up to `read_from`).
    carry: Option<Observation>,
    /// `state.from`, or the end of what `carry` holds.
    read_from: DateTime<Utc>,
    cutoff: DateTime<Utc>,
    backfill: bool,
}

/// The incremental run of a batch of devices up to `cutoff`, in one transaction; a device's
/// entry is `None` when a rebuild is in progress (it does the devices' work).
async fn roll_batch(
    db: &PgPool,
    batch: &[watermarks::Pending],
    cutoff: DateTime<Utc>,
) -> Result<Vec<Option<DeviceReport>>, RollupError> {
    let devices: Vec<i32> = batch.iter().map(|p| p.device).collect();
    let mut tx = db.begin().await?;
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock_shared($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !free {
        return Ok(vec![None; devices.len()]);
    }
    // The devices' rows before their watermarks: the order the write path and a device's delete
    // (which cascades to the watermark) take them in, so a delete during the run waits for it
    // rather than deadlocking with it.
    let present = crate::measurements::lock_devices(&mut tx, &devices).await?;
    let mut watermarks = watermarks::lock(&mut tx, &devices).await?;
    watermarks.retain(|(device, _)| present.contains(device));
    let backfills: HashMap<i32, DateTime<Utc>> =
        watermarks::take_backfills(&mut tx, &devices).await?.into_iter().collect();
    // A device deleted since the batch was planned: nothing to do.
    let mut reports: Vec<Option<DeviceReport>> = devices
        .iter()
        .filter(|d| !watermarks.iter().any(|(w, _)| w == *d))
        .map(|&device_id| Some(DeviceReport { device_id, ..Default::default() }))
        .collect();
    let mut runs = Vec::with_capacity(watermarks.len());
    for (device, watermark) in watermarks {
        let backfill = backfills.get(&device).copied();
        let (state, rewound) = resume(&mut tx, device, &watermark, backfill).await?;
        // Never roll up less than an earlier run saw (ensure_up_to_date may have gone further).
        let cutoff = cutoff.max(watermark.seen_until);
        // A noted reading (behind the watermark, or inside the carried interval) makes the run
        // read the interval in progress again.
        let carry = watermark.carry.filter(|_| backfill.is_none());
        let read_from = if carry.is_some() { watermark.seen_until } else { state.from };
        // A note inside the interval in progress is a re-read, not a backfill: only a rewind
        // recomputes final intervals.
        if !rewound && cutoff <= read_from {
            reports.push(Some(DeviceReport { device_id: device, ..Default::default() }));
        } else {
            runs.push(DeviceRun { device, state, carry, read_from, cutoff, backfill: rewound });
        }
    }
    let mut observed = read_observations(&mut tx, &runs).await?;
    let (mut replacements, mut saves) = (Vec::with_capacity(runs.len()), Vec::with_capacity(runs.len()));
    for run in &runs {
        let (observations, readings) = observed.remove(&run.device).unwrap_or_default();
        let computed = maths::compute(&run.state, &observations)
            .map_err(|source| RollupError::Input { device: run.device, source })?;
        // The next run starts at the last interval read (the usual case; an earlier one when a
        // counter's last point lies before it): carried, when it is a summary of every reading
        // of that interval up to the cutoff.
        let carry = observations.last().filter(|o| o.start == computed.next.from && maths::is_summary(o)).cloned();
        reports.push(Some(DeviceReport {
            device_id: run.device,
            readings,
            intervals: computed.intervals.len() as u64,
            from: Some(run.state.from),
            backfill: run.backfill,
        }));
        replacements.push(Replacement {
            device: run.device,
            from: run.state.from,
            to: None,
            intervals: computed.intervals,
            anomalies: computed.anomalies,
        });
        saves.push(watermarks::Mark { device: run.device, state: computed.next, seen_until: run.cutoff, carry });
    }
    intervals::replace(&mut tx, &replacements).await?;
    watermarks::save(&mut tx, &saves).await?;
    tx.commit().await?;
    Ok(reports)
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

/// Per device of `runs`, the per-interval summary of its readings from its state's start up to
/// its cutoff (the carried interval joined with its new readings), with the intervals where a
/// counter drops replaced by their individual readings, and its number of readings read.
async fn read_observations(
    conn: &mut PgConnection,
    runs: &[DeviceRun],
) -> Result<HashMap<i32, (Vec<Observation>, u64)>, sqlx::Error> {
    let mut observed: HashMap<i32, (Vec<Observation>, u64)> =
        runs.iter().map(|r| (r.device, (r.carry.iter().cloned().collect(), 0))).collect();
    if runs.is_empty() {
        return Ok(observed);
    }
    let cutoffs: HashMap<i32, DateTime<Utc>> = runs.iter().map(|r| (r.device, r.cutoff)).collect();
    let rows = sqlx::query(AssertSqlSafe(OBSERVATIONS.as_str()))
        .bind(runs.iter().map(|r| r.device).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.read_from).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.cutoff).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let device: i32 = row.try_get("d")?;
        let start: DateTime<Utc> = row.try_get("b")?;
        let n: i64 = row.try_get("n")?;
        let (observations, readings) = observed.entry(device).or_default();
        *readings += n as u64;
        // Only the carried interval can be there already.
        let carried = observations.pop_if(|o| o.start == start);
        if !row.try_get::<bool, _>("dropped")? {
            let part = summary(row, n)?;
            match carried {
                None => observations.push(part),
                Some(carried) => match maths::join(&carried, &part) {
                    Some(joined) => observations.push(joined),
                    None => observations.extend(every_point(conn, device, start, cutoffs[&device]).await?),
                },
            }
        } else {
            observations.extend(every_point(conn, device, start, cutoffs[&device]).await?);
        }
    }
    Ok(observed)
}

/// The interval at `start` with every point, from its readings before `cutoff`.
async fn every_point(
    conn: &mut PgConnection,
    device: i32,
    start: DateTime<Utc>,
    cutoff: DateTime<Utc>,
) -> Result<Vec<Observation>, sqlx::Error> {
    Ok(maths::observations(&samples(conn, device, start, (start + INTERVAL).min(cutoff)).await?))
}

/// [`read_observations`]'s statement, for the devices `$1`, each from `$2` up to `$3`. Within an
/// interval a counter that never drops has its first value at its minimum and its last at its
/// maximum; a drop is a value below the running maximum of the earlier ones. Per channel `c`:
/// `v{c}0`, `v{c}1` (min, max), `t{c}0`, `t{c}1` (first and last time with a value). The ORDER BY
/// keeps the lateral subquery from being flattened into a join the planner may run over the whole
/// table (see `intervals.rs`, `delete_intervals`): each device's readings are one index range.
static OBSERVATIONS: LazyLock<String> = LazyLock::new(|| {
    let (mut summary, mut drops, mut columns, mut maxima) = (String::new(), Vec::new(), String::new(), String::new());
    for (c, column) in COUNTER_COLUMNS.iter().enumerate() {
        summary.push_str(&format!(
            ", min(c{c}) AS v{c}0, max(c{c}) AS v{c}1, min(t) FILTER (WHERE c{c} IS NOT NULL) AS t{c}0, \
             max(t) FILTER (WHERE c{c} IS NOT NULL) AS t{c}1"
        ));
        drops.push(format!("c{c} < m{c}"));
        columns.push_str(&format!(", m.\"{column}\" AS c{c}"));
        maxima.push_str(&format!(", max(m.\"{column}\") OVER w AS m{c}"));
    }
    format!(
        r#"SELECT d, b, count(*)::int8 AS n, max(p) AS max_w, max(s) AS max_va, max(t) AS last_time{summary},
                  coalesce(bool_or({drops}), false) AS dropped
           FROM (SELECT r.d, date_bin('15 minutes', m."Time", timestamptz '2000-01-01') AS b, m."Time" AS t,
                        m."PTotal" AS p, m."STotal" AS s{columns}{maxima}
                 FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[]) AS r(d, f, u)
                 CROSS JOIN LATERAL (SELECT * FROM monitoring."PowerMeasurements"
                                     WHERE "DeviceId" = r.d AND "Time" >= r.f AND "Time" < r.u ORDER BY "Time") m
                 WINDOW w AS (PARTITION BY r.d, date_bin('15 minutes', m."Time", timestamptz '2000-01-01') ORDER BY m."Time"
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)) x
           GROUP BY d, b ORDER BY d, b"#,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(starts: &[Option<i64>], cutoff: DateTime<Utc>) -> Vec<watermarks::Pending> {
        (0..)
            .zip(starts)
            .map(|(device, start)| watermarks::Pending {
                device,
                start: start.map(|minutes| cutoff - TimeDelta::minutes(minutes)),
            })
            .collect()
    }

    fn sizes(batches: &[&[watermarks::Pending]]) -> Vec<usize> {
        batches.iter().map(|b| b.len()).collect()
    }

    #[test]
    fn batches_hold_up_to_256_devices_or_8_hours_to_read_and_never_split_nothing() {
        let cutoff: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        // A minute each (the job's steady state): the device limit.
        let steady = pending(&vec![Some(1); 600], cutoff);
        assert_eq!(sizes(&batches(&steady, cutoff)), vec![256, 256, 88]);
        // Two hours each: four per batch; a device with a year to read is a batch of its own;
        // nothing to read (no readings, a start after the cutoff) counts as nothing.
        let mixed =
            pending(&[Some(120), Some(120), Some(120), Some(120), Some(120), Some(525_600), None, Some(-5)], cutoff);
        let planned = batches(&mixed, cutoff);
        assert_eq!(sizes(&planned), vec![4, 1, 1, 2]);
        assert_eq!(planned.concat(), mixed, "every device once, in id order");
        assert!(batches(&[], cutoff).is_empty());
    }
}
