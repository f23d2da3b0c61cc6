//! The rebuild of the energy intervals from the raw readings ([`rebuild`], `tau-portal rollup
//! --from …`): one pass over the readings of all the devices, window by window in time.
//!
//! Why not the job's per-device run (`rollup.rs`) in a loop: readings are stored in the order
//! they arrive, all meters of a minute together, so one device's month is spread over nearly
//! every page of the table, and reading 100 devices one by one reads the table 100 times. Here
//! each window's readings of all devices come in one binary COPY, are sorted per device in
//! memory and go through the same pure `maths::compute`, carried from window to window by the
//! same `State` and pending observations the job would re-read.
//!
//! Three things run at once, on their own connections: [`READERS`] windows are read ahead, the
//! energy of the next is computed, and the intervals of the previous are written. Nothing waits
//! on the devices' watermark rows meanwhile: at the start the rebuild *claims* the range it will
//! read (`ClaimedUntil`), and the write path notes every reading written into a claimed range as
//! late, so the job recomputes from it afterwards (the same way it treats any late reading). At
//! the end, one transaction writes the last intervals and the watermarks and ends the claim.
//! A rebuild stopped halfway leaves rewound watermarks the job simply continues from.
//!
//! While a rebuild runs, the job leaves devices alone (the advisory lock [`REBUILD_LOCK`]): it
//! would otherwise redo the same range one device at a time, and it must not take the backfill
//! notes of readings written into the claimed range before the rebuild is done.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::intervals::{self, Replacement};
use super::maths::{
    self, Anomaly, CHANNELS, INTERVAL, Interval, Observation, Sample, State, interval_ceil, interval_start,
};
use super::rollup::{COUNTER_COLUMNS, LAG, REBUILD_LOCK, Report, RollupError, restart_state, resume};
use super::{site_sums, watermarks};
use crate::measurements::copy::Decoder;

/// Readings per window the window length aims at: memory (~170 bytes a reading while read, times
/// the windows in flight) against the per-window overhead. 125,000 and 250,000 were equally fast
/// (bench-rollup.sh); this one peaks at ~140 MB RSS instead of ~220 MB.
const WINDOW_READINGS: u64 = 125_000;
const FIRST_WINDOW: TimeDelta = TimeDelta::hours(1);
const LONGEST_WINDOW: TimeDelta = TimeDelta::days(31);
/// Windows read at once, each on its own connection: PostgreSQL runs a COPY on one core.
const READERS: usize = 2;
/// How long a rebuild waits for another one to finish before giving up.
const LOCK_WAIT: &str = "5s";

/// After each window: how far the rebuild has got.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Every device's intervals are computed up to here (or up to its own end).
    pub until: DateTime<Utc>,
    /// Readings read in this window.
    pub readings: u64,
    /// Intervals computed in this window.
    pub intervals: u64,
    /// Devices not yet finished.
    pub devices_left: usize,
}

/// How one device's range relates to what the job has done.
#[derive(Debug, Clone, Copy)]
enum Range {
    /// Up to the present: the watermark is rewound at the start and saved at the end; done once
    /// a window reaches `limit` (the cutoff, or further if the job has seen further).
    Open { limit: DateTime<Utc> },
    /// A range that ends before the watermark: only the intervals before `end` are replaced and
    /// the watermark stays. Done once the intervals before `end` are final, or the readings the
    /// job has seen (`seen_until`) run out.
    Closed { end: DateTime<Utc>, seen_until: DateTime<Utc> },
}

struct Device {
    id: i32,
    range: Range,
    state: State,
    /// Observations from `state.from` on, already read: the next window's energy needs them.
    pending: Vec<Observation>,
    /// The intervals before this are replaced.
    written: DateTime<Utc>,
    /// An open range's intervals from `written` on, computed by its last window, written with
    /// the watermark at the end, and what that window did not count.
    tail: Vec<Interval>,
    tail_anomalies: Vec<Anomaly>,
    done: bool,
}

impl Device {
    fn limit(&self) -> DateTime<Utc> {
        match self.range {
            Range::Open { limit } => limit,
            Range::Closed { seen_until, .. } => seen_until,
        }
    }
}

/// One window's readings: those of the rebuild's `k`th device are
/// `samples[starts[k]..starts[k + 1]]`, sorted by time.
struct Window {
    hi: DateTime<Utc>,
    samples: Vec<Sample>,
    starts: Vec<usize>,
}

impl Window {
    fn device(&self, k: usize) -> &[Sample] {
        &self.samples[self.starts[k]..self.starts[k + 1]]
    }
}

/// The flat buffers of windows' reads (as decoded, and grouped by device), handed back for the
/// next window to fill: allocating and growing tens of MB afresh for every window and faulting
/// the pages in was a third of a rebuild's CPU time (perf).
#[derive(Default)]
struct Buffers {
    decoded: Mutex<Vec<Vec<(usize, Sample)>>>,
    grouped: Mutex<Vec<Vec<Sample>>>,
}

fn take<T>(pool: &Mutex<Vec<Vec<T>>>) -> Vec<T> {
    pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default()
}

fn give<T>(pool: &Mutex<Vec<Vec<T>>>, mut buffer: Vec<T>) {
    buffer.clear();
    if let Ok(mut p) = pool.lock() {
        p.push(buffer);
    }
}

/// Recomputes the intervals of `devices` (all when `None`) from `from` on from the raw
/// readings (an operator's repair, or after a bulk import). A device whose range reaches its
/// watermark (`to` is `None` or not before it) is rolled up to `now` like the job does; an older
/// range replaces only the intervals inside it. `progress` is called after each window.
pub async fn rebuild(
    db: &PgPool,
    chosen: Option<&[i32]>,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, RollupError> {
    let ids: Vec<i32> = watermarks::ensure(db, chosen).await?.into_iter().map(|p| p.device).collect();
    let mut lock = exclusive_lock(db).await?;
    let (mut devices, first, backfills) = start(db, &ids, from, to.map(interval_ceil), now - LAG).await?;
    let mut report = Report { devices: ids.len() as u64, backfills, ..Report::default() };
    if let Some(limit) = devices.iter().filter(|d| !d.done).map(Device::limit).max() {
        let (windows_tx, mut windows) = mpsc::channel(1);
        let pool = Arc::new(Buffers::default());
        let reader = AbortOnDropHandle::new(tokio::spawn(read_windows(
            Reader { db: db.clone(), ids: ids.as_slice().into(), pool: pool.clone() },
            first,
            limit,
            windows_tx,
        )));
        let (batches, batches_rx) = mpsc::channel(1);
        let writer = AbortOnDropHandle::new(tokio::spawn(write_batches(db.clone(), batches_rx)));
        while devices.iter().any(|d| !d.done) {
            let Some(window) = windows.recv().await else { break };
            let window = window?;
            let computed = compute_window(&mut devices, &window);
            give(&pool.grouped, window.samples);
            let (batch, done) = computed?;
            report.readings += done.readings;
            progress(&done);
            if batches.send(batch).await.is_err() {
                break;
            }
        }
        drop((windows, batches));
        reader.await.map_err(RollupError::Task)??;
        report.intervals = writer.await.map_err(RollupError::Task)??;
        if devices.iter().any(|d| !d.done) {
            return Err(RollupError::Incomplete);
        }
        // A rebuild whose lock was lost (its connection gone) may have run beside the job: it
        // must not save its watermarks over the job's.
        sqlx::query("SELECT 1").execute(&mut lock).await?;
        report.intervals += finish(db, devices).await?;
    }
    // Released explicitly: closing the connection returns before the server has ended the
    // session and let go of its locks, and a job run right after would leave the devices alone.
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(REBUILD_LOCK).execute(&mut lock).await?;
    lock.close().await?;
    // The sites' sums catch up (the door would sum the device intervals itself, only slower).
    site_sums::refresh_site_sums(db).await?;
    Ok(report)
}

/// Takes the rebuild lock on a connection of its own (released when it closes, also when the
/// process dies). It waits for the job's device runs in progress (moments) and at most
/// [`LOCK_WAIT`] for another rebuild.
async fn exclusive_lock(db: &PgPool) -> Result<PgConnection, RollupError> {
    let mut conn = db.acquire().await?.detach();
    sqlx::query(AssertSqlSafe(format!("SET lock_timeout = '{LOCK_WAIT}'"))).execute(&mut conn).await?;
    match sqlx::query("SELECT pg_advisory_lock($1)").bind(REBUILD_LOCK).execute(&mut conn).await {
        Ok(_) => Ok(conn),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => Err(RollupError::Busy),
        Err(e) => Err(e.into()),
    }
}

/// Sets each device's starting point, in one transaction: an open range rewinds the watermark
/// to the state at `from` (or at an earlier backfill noted by the write path, which this
/// consumes) and claims the range up to its limit; a closed range keeps its state in memory.
/// Returns the devices, where the first window starts and the number of backfill notes taken.
async fn start(
    db: &PgPool,
    ids: &[i32],
    from: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    cutoff: DateTime<Utc>,
) -> Result<(Vec<Device>, DateTime<Utc>, u64), RollupError> {
    let mut tx = db.begin().await?;
    let marks = watermarks::lock(&mut tx, ids).await?;
    let open: Vec<i32> =
        marks.iter().filter(|(_, m)| end.is_none_or(|end| end >= m.state.from)).map(|(id, _)| *id).collect();
    let notes: HashMap<i32, DateTime<Utc>> = watermarks::take_backfills(&mut tx, &open).await?.into_iter().collect();
    let mut devices = Vec::with_capacity(marks.len());
    let mut rewound = Vec::new();
    for (id, mark) in marks {
        let (state, range) = match end.filter(|end| *end < mark.state.from) {
            Some(end) => (restart_state(&mut tx, id, from).await?, Range::Closed { end, seen_until: mark.seen_until }),
            None => {
                let restart = [Some(from), notes.get(&id).copied()].into_iter().flatten().min();
                let (state, rewinds) = resume(&mut tx, id, &mark, restart).await?;
                if rewinds {
                    rewound.push(watermarks::Mark { device: id, state, seen_until: mark.seen_until, carry: None });
                }
                (state, Range::Open { limit: cutoff.max(mark.seen_until) })
            }
        };
        let mut device = Device {
            id,
            range,
            state,
            pending: Vec::new(),
            written: state.from,
            tail: Vec::new(),
            tail_anomalies: Vec::new(),
            done: false,
        };
        device.done = state.from >= device.limit() || matches!(range, Range::Closed { end, .. } if state.from >= end);
        devices.push(device);
    }
    watermarks::save(&mut tx, &rewound).await?;
    let claims: Vec<(i32, DateTime<Utc>)> = devices
        .iter()
        .filter_map(|d| match d.range {
            Range::Open { limit } if !d.done => Some((d.id, limit)),
            _ => None,
        })
        .collect();
    watermarks::claim(&mut tx, &claims).await?;
    tx.commit().await?;

    // Skip to the first reading: `--from` may be long before the data (an index lookup per device).
    let active: Vec<&Device> = devices.iter().filter(|d| !d.done).collect();
    let first: Option<DateTime<Utc>> = sqlx::query_scalar(
        r#"SELECT min(x.t) FROM UNNEST($1::int4[], $2::timestamptz[]) AS s(d, f)
           CROSS JOIN LATERAL (SELECT min("Time") AS t FROM monitoring."PowerMeasurements" p
                               WHERE p."DeviceId" = s.d AND p."Time" >= s.f) x"#,
    )
    .bind(active.iter().map(|d| d.id).collect::<Vec<_>>())
    .bind(active.iter().map(|d| d.state.from).collect::<Vec<_>>())
    .fetch_one(db)
    .await?;
    let earliest = active.iter().map(|d| d.state.from).min().unwrap_or(cutoff);
    let first = first.map_or(earliest, |t| interval_start(t).max(earliest));
    Ok((devices, first, notes.len() as u64))
}

/// What every window's read needs.
#[derive(Clone)]
struct Reader {
    db: PgPool,
    /// The devices rebuilt: only their rows are read.
    ids: Arc<[i32]>,
    pool: Arc<Buffers>,
}

/// Reads the windows from `first` to `limit` in order, [`READERS`] at a time, into `out`; stops
/// early when `out` is closed.
async fn read_windows(
    reader: Reader,
    first: DateTime<Utc>,
    limit: DateTime<Utc>,
    out: mpsc::Sender<Result<Window, RollupError>>,
) -> Result<(), RollupError> {
    let mut in_flight = VecDeque::new();
    let (mut lo, mut length) = (first, FIRST_WINDOW);
    loop {
        while in_flight.len() < READERS && lo < limit {
            let hi = (lo + length).min(limit);
            in_flight.push_back((hi - lo, AbortOnDropHandle::new(tokio::spawn(read_window(reader.clone(), lo, hi)))));
            lo = hi;
        }
        let Some((read, next)) = in_flight.pop_front() else { return Ok(()) };
        let window = next.await.map_err(RollupError::Task)?;
        if let Ok((_, readings)) = &window {
            // From the density of the window just read (the one in flight has the old length).
            length = next_length(read, *readings);
        }
        if out.send(window.map(|(w, _)| w)).await.is_err() {
            return Ok(());
        }
    }
}

/// One window's readings `[lo, hi)`, and how many there were.
async fn read_window(reader: Reader, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Result<(Window, u64), RollupError> {
    let position: HashMap<i32, usize> = reader.ids.iter().enumerate().map(|(k, id)| (*id, k)).collect();
    let (mut decoded, mut grouped) = (take(&reader.pool.decoded), take(&reader.pool.grouped));
    // JIT compiling the COPY's expressions costs more than it saves on a window's rows.
    let mut tx = reader.db.begin_with("BEGIN; SET LOCAL jit = off").await?;
    {
        let mut stream = tx.copy_out_raw(&copy_readings(&reader.ids, lo, hi)).await?;
        let mut decoder = Decoder::default();
        while let Some(chunk) = stream.next().await {
            decoder.feed(&chunk?, |f| {
                let (Some(id), Some(time)) = (f.int4()?, f.timestamptz()?) else { return Ok(()) };
                let counters = [f.float8()?, f.float8()?, f.float8()?, f.float8()?, f.float8()?];
                let (p_total, s_total) = (f.float4()?, f.float4()?);
                if let Some(&k) = position.get(&id) {
                    decoded.push((k, Sample { time, counters, p_total, s_total }));
                }
                Ok(())
            })?;
        }
        decoder.finish()?;
    }
    tx.commit().await?;
    // Group by device (a counting sort), then sort each device's readings by time: they are
    // stored in arrival order, so nearly sorted already.
    let mut starts = vec![0; reader.ids.len() + 1];
    for (k, _) in &decoded {
        starts[k + 1] += 1;
    }
    for k in 0..reader.ids.len() {
        starts[k + 1] += starts[k];
    }
    let mut next = starts.clone();
    grouped.clear();
    grouped.resize(decoded.len(), Sample { time: lo, counters: [None; CHANNELS], p_total: None, s_total: None });
    for (k, sample) in decoded.drain(..) {
        grouped[next[k]] = sample;
        next[k] += 1;
    }
    for k in 0..reader.ids.len() {
        grouped[starts[k]..starts[k + 1]].sort_unstable_by_key(|s| s.time);
    }
    give(&reader.pool.decoded, decoded);
    let readings = grouped.len() as u64;
    Ok((Window { hi, samples: grouped, starts }, readings))
}

/// The energy of one window for every device not yet done: the intervals that are final go
/// into the batch to write; an open range's last window keeps the rest as its tail.
fn compute_window(devices: &mut [Device], window: &Window) -> Result<(Vec<Replacement>, Progress), RollupError> {
    let mut batch = Vec::new();
    let (mut readings, mut intervals) = (0u64, 0u64);
    for (k, device) in devices.iter_mut().enumerate() {
        if device.done {
            continue;
        }
        let samples = window.device(k);
        let start = samples.partition_point(|s| s.time < device.state.from);
        readings += (samples.len() - start) as u64;
        let mut observations = std::mem::take(&mut device.pending);
        observations.extend(maths::observations(&samples[start..]));
        let computed = maths::compute(&device.state, &observations)
            .map_err(|source| RollupError::Input { device: device.id, source })?;
        let next = computed.next;
        let last = window.hi >= device.limit();
        let until = match device.range {
            Range::Open { .. } if last => None,
            Range::Open { .. } => Some(next.from),
            Range::Closed { end, .. } => Some(end.min(next.from).max(device.written)),
        };
        let (done, rest): (Vec<Interval>, Vec<Interval>) =
            computed.intervals.into_iter().partition(|i| until.is_some_and(|u| i.start < u));
        intervals += done.len() as u64;
        if let Some(until) = until {
            batch.push(Replacement {
                device: device.id,
                from: device.written,
                to: Some(until),
                intervals: done,
                anomalies: computed.anomalies,
            });
            device.written = until;
        } else {
            intervals += rest.len() as u64;
            device.tail = rest;
            device.tail_anomalies = computed.anomalies;
        }
        device.done = match device.range {
            Range::Open { .. } => last,
            Range::Closed { end, .. } => next.from >= end || last,
        };
        device.pending = observations.into_iter().filter(|o| o.start >= next.from).collect();
        device.state = next;
    }
    let devices_left = devices.iter().filter(|d| !d.done).count();
    Ok((batch, Progress { until: window.hi, readings, intervals, devices_left }))
}

/// Writes the batches as they come, each in a transaction of its own; returns the intervals
/// written.
async fn write_batches(db: PgPool, mut batches: mpsc::Receiver<Vec<Replacement>>) -> Result<u64, RollupError> {
    let mut written = 0;
    while let Some(batch) = batches.recv().await {
        let mut tx = db.begin().await?;
        written += intervals::replace(&mut tx, &batch).await?;
        tx.commit().await?;
    }
    Ok(written)
}

/// The open ranges' last intervals and their watermarks, which end the claim, in one
/// transaction holding the watermark rows (so the write path sees the new watermark or waits).
async fn finish(db: &PgPool, devices: Vec<Device>) -> Result<u64, RollupError> {
    let open: Vec<Device> = devices.into_iter().filter(|d| matches!(d.range, Range::Open { .. })).collect();
    if open.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    watermarks::lock(&mut tx, &open.iter().map(|d| d.id).collect::<Vec<_>>()).await?;
    // Nothing carried: the job's next run reads the interval in progress from its start.
    let states: Vec<_> = open
        .iter()
        .map(|d| watermarks::Mark { device: d.id, state: d.state, seen_until: d.limit(), carry: None })
        .collect();
    let tails: Vec<Replacement> = open
        .into_iter()
        .map(|d| Replacement {
            device: d.id,
            from: d.written,
            to: None,
            intervals: d.tail,
            anomalies: d.tail_anomalies,
        })
        .collect();
    let written = intervals::replace(&mut tx, &tails).await?;
    watermarks::save(&mut tx, &states).await?;
    tx.commit().await?;
    Ok(written)
}

/// The COPY statement for the readings of `devices` in `[lo, hi)`. COPY takes no parameters:
/// the values are written in as literals (numbers and times that this code formats, nothing from
/// outside).
///
/// The device list is there even when every device is rebuilt: with it the planner can take the
/// primary key (`"DeviceId", "Time"`) and visit only the pages that hold the window's rows. The
/// `"Time"` BRIN index alone narrows nothing once rows are stored out of time order (a parallel
/// load, a backfill), and every window would read the whole table (bench-rollup.sh
/// BENCH_ORDER=shuffled).
fn copy_readings(devices: &[i32], lo: DateTime<Utc>, hi: DateTime<Utc>) -> String {
    let time = crate::measurements::copy::time_literal;
    let ids: Vec<String> = devices.iter().map(|id| id.to_string()).collect();
    format!(
        r#"COPY (SELECT "DeviceId", "Time", {counters}, "PTotal", "STotal"
                 FROM monitoring."PowerMeasurements"
                 WHERE "Time" >= '{lo}' AND "Time" < '{hi}' AND "DeviceId" = ANY('{{{ids}}}'::int4[])) TO STDOUT (FORMAT binary)"#,
        lo = time(lo),
        hi = time(hi),
        ids = ids.join(","),
        counters = COUNTER_COLUMNS.map(|c| format!("\"{c}\"")).join(", ")
    )
}

/// The next window's length: aimed at [`WINDOW_READINGS`] from the last window's density, at
/// most 4× longer or shorter at a time, in whole intervals.
fn next_length(length: TimeDelta, readings: u64) -> TimeDelta {
    let scale = (WINDOW_READINGS as f64 / readings.max(1) as f64).clamp(0.25, 4.0);
    let intervals = (length.as_seconds_f64() * scale / INTERVAL.as_seconds_f64()).floor().max(1.0);
    (INTERVAL * intervals as i32).min(LONGEST_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_aim_at_the_target_in_whole_intervals_within_bounds() {
        let hour = TimeDelta::hours(1);
        assert_eq!(next_length(hour, WINDOW_READINGS), hour);
        assert_eq!(next_length(hour, WINDOW_READINGS / 2), hour * 2);
        assert_eq!(next_length(hour, 0), hour * 4, "an empty window grows at most 4×");
        assert_eq!(next_length(hour, WINDOW_READINGS * 100), INTERVAL, "at least one interval");
        assert_eq!(next_length(hour, WINDOW_READINGS * 3), INTERVAL);
        assert_eq!(next_length(TimeDelta::days(30), 0), LONGEST_WINDOW);
    }

    #[test]
    fn the_copy_statement_reads_the_window_of_the_devices() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let (lo, hi) = (at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z"));
        let sql = copy_readings(&[3, 5], lo, hi);
        assert!(
            sql.contains(r#""Time" >= '2026-01-01 00:00:00.000000+00' AND "Time" < '2026-01-01 01:00:00.000000+00'"#),
            "{sql}"
        );
        assert!(sql.contains(r#"AND "DeviceId" = ANY('{3,5}'::int4[])"#), "{sql}");
        assert!(sql.ends_with(") TO STDOUT (FORMAT binary)"));
    }
}
