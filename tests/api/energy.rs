//! Energy intervals from readings written through the store's one write path, rolled up by the
//! real job functions against the real PostgreSQL, and the `tau-portal rollup` command. The
//! owner's own tests: the one place outside `measurements::energy` that names its tables, to
//! damage them (a rebuild repairs them) and to check what the owner promises about them.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use tau_acuvim_portal::db::migrate::{self, MIGRATOR};
use tau_acuvim_portal::measurements::energy::maths::WRAP_WH;
use tau_acuvim_portal::measurements::energy::{self, SiteRange, rebuild, rollup};
use tau_acuvim_portal::measurements::{self, Reading};

use crate::helpers::{Portal, TestApp, TestDb, production_env, site_with_devices, wait_for};

const PTOTAL: usize = 14; // REAL_QUANTITIES index of "PTotal"
const IMPORT: usize = 0; // COUNTER_QUANTITIES index of "EnergyImportWh"
const EXPORT: usize = 1;

fn base() -> DateTime<Utc> {
    "2025-06-02T10:00:00Z".parse().unwrap()
}

fn at(minutes: i64) -> DateTime<Utc> {
    base() + TimeDelta::minutes(minutes)
}

async fn device(db: &PgPool, external_id: &str) -> i32 {
    site_with_devices(db, &format!("Site of {external_id}"), "Europe/London", &[external_id]).await.1[0]
}

/// Writes (minute, import Wh) readings through `measurements::write`, PTotal = minute × 10 W.
async fn write(db: &PgPool, device: i32, readings: &[(i64, f64)]) {
    let batch: Vec<Reading> = readings
        .iter()
        .map(|&(minute, wh)| {
            let mut r = Reading::empty(device, at(minute));
            r.counters[IMPORT] = Some(wh);
            r.counters[EXPORT] = Some(0.0);
            r.real[PTOTAL] = Some(minute as f32 * 10.0);
            r
        })
        .collect();
    measurements::write(db, &batch).await.unwrap();
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
struct Row {
    start: DateTime<Utc>,
    import_wh: f64,
    max_w: Option<f32>,
    samples: i32,
    estimated: bool,
    counter_reset: bool,
}

async fn intervals(db: &PgPool, device: i32) -> Vec<Row> {
    sqlx::query_as(
        r#"SELECT "Start", "ImportWh", "MaxW", "Samples", "Estimated", "CounterReset"
           FROM monitoring."EnergyIntervals" WHERE "DeviceId" = $1 ORDER BY "Start""#,
    )
    .bind(device)
    .fetch_all(db)
    .await
    .unwrap()
}

/// (minutes after base, Wh) of the intervals, rounded to mWh.
async fn energy(db: &PgPool, device: i32) -> Vec<(i64, f64)> {
    intervals(db, device)
        .await
        .iter()
        .map(|r| ((r.start - base()).num_minutes(), (r.import_wh * 1000.0).round() / 1000.0))
        .collect()
}

async fn run(app: &TestApp) -> rollup::Report {
    rollup::run_once(&app.state.db, app.clock.now()).await.unwrap()
}

#[sqlx::test]
async fn intervals_are_counter_differences_split_at_boundaries_and_never_counted_twice(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let d = device(&pool, "meter-1").await;
    write(&pool, d, &[(5, 1000.0), (20, 1300.0), (35, 1600.0)]).await;
    let report = run(&app).await;
    assert_eq!(report.readings, 3);
    // 10:05→10:20 (300 Wh): 10 minutes before 10:15, 5 after; 10:20→10:35 likewise.
    assert_eq!(energy(&pool, d).await, vec![(0, 200.0), (15, 300.0), (30, 100.0)]);
    let rows = intervals(&pool, d).await;
    assert_eq!(rows.iter().map(|r| r.samples).collect::<Vec<_>>(), vec![1, 1, 1]);
    assert_eq!(rows[1].max_w, Some(200.0));

    // The partial 10:30 interval is recomputed by the next run, not added to.
    write(&pool, d, &[(50, 1900.0)]).await;
    run(&app).await;
    run(&app).await;
    assert_eq!(energy(&pool, d).await, vec![(0, 200.0), (15, 300.0), (30, 300.0), (45, 100.0)]);
    let total: f64 = intervals(&pool, d).await.iter().map(|r| r.import_wh).sum();
    assert_eq!(total, 900.0);
}

#[sqlx::test]
async fn wrap_reset_and_gap_across_runs(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let d = device(&pool, "meter-1").await;
    // Run 1 ends just before the wrap.
    write(&pool, d, &[(1, WRAP_WH - 300.0), (2, WRAP_WH - 200.0)]).await;
    run(&app).await;
    // Run 2: the wrap (300 Wh across it), then a meter replacement at 10:04 (new baseline 50).
    write(&pool, d, &[(3, 100.0), (4, 50.0), (5, 80.0)]).await;
    run(&app).await;
    let rows = intervals(&pool, d).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].import_wh, 100.0 + 300.0 + 30.0, "wrap bridged, the reset step counted as 0");
    assert!(rows[0].counter_reset);
    // Run 3: nothing from 10:05 to 11:05, then 600 Wh more: spread over the hour, estimated.
    write(&pool, d, &[(65, 680.0), (66, 690.0)]).await;
    run(&app).await;
    let rows = intervals(&pool, d).await;
    assert_eq!(rows.len(), 5);
    let e: Vec<f64> = rows.iter().map(|r| (r.import_wh * 1000.0).round() / 1000.0).collect();
    assert_eq!(e, vec![430.0 + 100.0, 150.0, 150.0, 150.0, 50.0 + 10.0]);
    assert!(rows.iter().all(|r| r.estimated));
    assert!(rows.iter().all(|r| r.import_wh >= 0.0));
    assert_eq!(rows.iter().map(|r| r.samples).collect::<Vec<_>>(), vec![5, 0, 0, 0, 2]);
}

/// A day of 1-minute readings with a varying load, as (minute, Wh).
fn day() -> Vec<(i64, f64)> {
    let mut wh = 1e6;
    (0..24 * 60)
        .map(|m| {
            wh += 10.0 + (m % 37) as f64;
            (m, wh)
        })
        .collect()
}

#[sqlx::test]
async fn late_readings_are_rolled_up_as_if_they_had_come_on_time(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let (late, on_time) = (device(&pool, "late").await, device(&pool, "on-time").await);
    let readings = day();
    write(&pool, on_time, &readings).await;
    // The late device's readings from 02:00 to 05:00 arrive after the rest was rolled up.
    let (missing, first): (Vec<_>, Vec<_>) = readings.iter().copied().partition(|(m, _)| (120..300).contains(m));
    write(&pool, late, &first).await;
    run(&app).await;
    assert_ne!(energy(&pool, late).await, energy(&pool, on_time).await);
    write(&pool, late, &missing).await;
    let noted: Option<DateTime<Utc>> =
        sqlx::query_scalar(r#"SELECT "From" FROM monitoring."EnergyBackfills" WHERE "DeviceId" = $1"#)
            .bind(late)
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(noted, Some(at(120)), "the write path notes the earliest late reading");
    let report = run(&app).await;
    assert_eq!(report.backfills, 1);
    assert_eq!(energy(&pool, late).await, energy(&pool, on_time).await);
    assert_eq!(intervals(&pool, late).await.len(), 96);
}

#[sqlx::test]
async fn a_rebuilt_range_equals_the_incremental_result(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let d = device(&pool, "meter-1").await;
    let readings = day();
    // Incremental: the day arrives in hourly batches, a run after each.
    for hour in readings.chunks(60) {
        write(&pool, d, hour).await;
        run(&app).await;
    }
    let incremental = intervals(&pool, d).await;
    assert_eq!(incremental.len(), 96);

    // Damage a range, rebuild it: back to the same; the intervals outside are not touched.
    sqlx::query(
        r#"UPDATE monitoring."EnergyIntervals" SET "ImportWh" = 0, "Samples" = 0
           WHERE "DeviceId" = $1 AND "Start" >= $2 AND "Start" < $3"#,
    )
    .bind(d)
    .bind(at(360))
    .bind(at(720))
    .execute(&pool)
    .await
    .unwrap();
    let report = rebuild::rebuild(&pool, Some(&[d]), at(360), Some(at(720)), app.clock.now(), |_| {}).await.unwrap();
    assert!(report.intervals >= 24, "{report:?}");
    assert_eq!(intervals(&pool, d).await, incremental);

    // A rebuild of everything from the start equals it too.
    sqlx::query(r#"DELETE FROM monitoring."EnergyIntervals""#).execute(&pool).await.unwrap();
    rebuild::rebuild(&pool, None, at(-60), None, app.clock.now(), |_| {}).await.unwrap();
    assert_eq!(intervals(&pool, d).await, incremental);
}

/// Devices whose day covers the cases a rebuild's windows cut through: steady, a wrap, a meter
/// reset, a 3-hour gap, a late start, a sparse meter and a silent one, as (name, readings).
fn fleet_day() -> Vec<(&'static str, Vec<(i64, f64)>)> {
    let steady = day();
    let wrap = steady.iter().map(|&(m, wh)| (m, (WRAP_WH - 1e6 - 400_000.0 + wh) % WRAP_WH)).collect();
    let reset = steady.iter().map(|&(m, wh)| (m, if m < 700 { wh } else { wh - 1e6 + 10.0 })).collect();
    let gap = steady.iter().copied().filter(|(m, _)| !(300..480).contains(m)).collect();
    let late_start = steady.iter().copied().filter(|(m, _)| *m >= 900).collect();
    let sparse = steady.iter().copied().filter(|(m, _)| m % 37 == 0).collect();
    vec![
        ("steady", steady),
        ("wrap", wrap),
        ("reset", reset),
        ("gap", gap),
        ("late-start", late_start),
        ("sparse", sparse),
        ("silent", Vec::new()),
    ]
}

/// Writes the fleet's readings of minutes `[from, to)`.
async fn write_fleet(db: &PgPool, fleet: &[(i32, Vec<(i64, f64)>)], from: i64, to: i64) {
    for (d, readings) in fleet {
        let part: Vec<_> = readings.iter().copied().filter(|(m, _)| (from..to).contains(m)).collect();
        if !part.is_empty() {
            write(db, *d, &part).await;
        }
    }
}

async fn all_intervals(db: &PgPool, fleet: &[(i32, Vec<(i64, f64)>)]) -> Vec<Vec<Row>> {
    let mut all = Vec::new();
    for (d, _) in fleet {
        all.push(intervals(db, *d).await);
    }
    all
}

#[sqlx::test]
async fn a_rebuild_of_many_devices_equals_the_incremental_result(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut fleet = Vec::new();
    for (name, readings) in fleet_day() {
        fleet.push((device(&pool, name).await, readings));
    }
    // Incremental: the day arrives in hourly batches, a job run after each.
    for hour in 0..24 {
        write_fleet(&pool, &fleet, hour * 60, hour * 60 + 60).await;
        run(&app).await;
    }
    let incremental = all_intervals(&pool, &fleet).await;
    assert_eq!(incremental[0].len(), 96);
    assert!(incremental[2].iter().any(|r| r.counter_reset), "the reset is flagged");
    assert!(incremental[3].iter().any(|r| r.estimated), "the gap is estimated");
    assert!(incremental[6].is_empty());

    // From scratch (no intervals, no watermarks): windows of 1 h, 4 h, … cut through every case.
    sqlx::query(r#"TRUNCATE monitoring."EnergyIntervals", monitoring."EnergyWatermarks""#)
        .execute(&pool)
        .await
        .unwrap();
    let mut windows = Vec::new();
    let report =
        rebuild::rebuild(&pool, None, at(-60), None, app.clock.now(), |p| windows.push(p.clone())).await.unwrap();
    assert_eq!(all_intervals(&pool, &fleet).await, incremental);
    let written: usize = fleet.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(report.readings, written as u64, "every reading counted once");
    assert_eq!(report.devices, 7);
    assert!(windows.len() >= 3, "{windows:?}");
    assert_eq!(windows.iter().map(|w| w.readings).sum::<u64>(), report.readings);
    assert_eq!(windows.last().map(|w| w.devices_left), Some(0));
    // The job's next run re-reads only each device's last interval and changes nothing.
    let after = run(&app).await;
    assert!(after.readings < 7 * 15, "{after:?}");
    assert_eq!(all_intervals(&pool, &fleet).await, incremental);

    // Damaged intervals, watermarks in place, a rebuild of one device from midday: the same again.
    sqlx::query(r#"UPDATE monitoring."EnergyIntervals" SET "ImportWh" = 0, "Samples" = 0"#)
        .execute(&pool)
        .await
        .unwrap();
    let reset = fleet[2].0;
    rebuild::rebuild(&pool, Some(&[reset]), at(600), None, app.clock.now(), |_| {}).await.unwrap();
    let rows = intervals(&pool, reset).await;
    // The restart point is the interval of the counters' last values before 20:00 (19:45).
    assert!(rows.iter().filter(|r| r.start < at(585)).all(|r| r.import_wh == 0.0), "before the range: untouched");
    let rebuilt: Vec<&Row> = rows.iter().filter(|r| r.start >= at(600)).collect();
    assert_eq!(rebuilt, incremental[2].iter().filter(|r| r.start >= at(600)).collect::<Vec<_>>());
    // A closed range of every device: inside it, the same; outside, untouched.
    rebuild::rebuild(&pool, None, at(0), Some(at(720)), app.clock.now(), |_| {}).await.unwrap();
    for ((d, _), expected) in fleet.iter().zip(&incremental) {
        let rows = intervals(&pool, *d).await;
        let inside = |r: &&Row| r.start >= at(0) && r.start < at(720);
        assert_eq!(rows.iter().filter(inside).collect::<Vec<_>>(), expected.iter().filter(inside).collect::<Vec<_>>());
    }
}

/// A rebuild paused after its first window (the progress callback runs between windows): the
/// job leaves the devices alone, a second rebuild is refused, and readings written meanwhile
/// (behind the rebuild and ahead of it) all end up counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_written_during_a_rebuild_are_not_lost_and_the_job_waits() {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    migrate::run(&pool, &MIGRATOR).await.unwrap();
    let now = at(24 * 60 + 10);
    let mut fleet = Vec::new();
    for (name, readings) in fleet_day().into_iter().take(4) {
        fleet.push((device(&pool, name).await, readings));
    }
    // Everything but the minutes 10–19 (behind the first window's end) and 70–89 (ahead of it)
    // of every device, which arrive during the rebuild.
    let late = |m: i64| (10..20).contains(&m) || (70..90).contains(&m);
    for (d, readings) in &fleet {
        let part: Vec<_> = readings.iter().copied().filter(|(m, _)| !late(*m)).collect();
        write(&pool, *d, &part).await;
    }
    let runtime = tokio::runtime::Handle::current();
    let mut paused = false;
    let (pool2, fleet2) = (pool.clone(), fleet.clone());
    rebuild::rebuild(&pool, None, at(0), None, now, |p| {
        if paused {
            return;
        }
        paused = true;
        assert_eq!(p.until, at(60), "the first window is an hour");
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                let job = rollup::run_once(&pool2, now).await.unwrap();
                assert_eq!((job.deferred, job.readings), (4, 0), "{job:?}");
                let second = rebuild::rebuild(&pool2, None, at(0), None, now, |_| {}).await;
                assert!(matches!(second, Err(rollup::RollupError::Busy)), "{second:?}");
                for (d, readings) in &fleet2 {
                    let part: Vec<_> = readings.iter().copied().filter(|(m, _)| late(*m)).collect();
                    write(&pool2, *d, &part).await;
                }
            })
        });
    })
    .await
    .unwrap();
    assert!(paused);
    let noted: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."EnergyBackfills""#).fetch_one(&pool).await.unwrap();
    assert_eq!(noted, 4, "the readings behind the rebuild were noted as late");
    let job = rollup::run_once(&pool, now).await.unwrap();
    assert_eq!((job.backfills, job.deferred), (4, 0));
    let rebuilt = all_intervals(&pool, &fleet).await;

    // The same readings written on time and rolled up once.
    sqlx::query(
        r#"TRUNCATE monitoring."EnergyIntervals", monitoring."EnergyWatermarks", monitoring."PowerMeasurements""#,
    )
    .execute(&pool)
    .await
    .unwrap();
    write_fleet(&pool, &fleet, 0, 24 * 60).await;
    rollup::run_once(&pool, now).await.unwrap();
    assert_eq!(rebuilt, all_intervals(&pool, &fleet).await);
    pool.close().await;
}

#[sqlx::test]
async fn ensure_up_to_date_rolls_up_to_the_given_time(pool: PgPool) {
    let d = device(&pool, "meter-1").await;
    write(&pool, d, &[(1, 0.0), (14, 130.0)]).await;
    rollup::ensure_up_to_date(&pool, &[d], at(10)).await.unwrap();
    assert_eq!(energy(&pool, d).await, vec![(0, 0.0)], "only readings before 10:10 count: one, no step yet");
    rollup::ensure_up_to_date(&pool, &[d], at(15)).await.unwrap();
    assert_eq!(energy(&pool, d).await, vec![(0, 130.0)]);
    // A later run with an earlier cutoff does not roll up less.
    rollup::run_once(&pool, at(2)).await.unwrap();
    assert_eq!(energy(&pool, d).await, vec![(0, 130.0)]);
}

/// A run carries the interval in progress to the next as its summary so far: each run reads only
/// the readings after the last one's cutoff, and the intervals equal one pass over all of them.
/// A reading that arrives behind a run's cutoff inside that interval is noted and counted (the
/// interval is read again), and so is everything when the carry cannot be read back.
#[sqlx::test]
async fn the_interval_in_progress_is_carried_between_runs_and_a_late_reading_in_it_is_counted(pool: PgPool) {
    let (carried, whole) = (device(&pool, "carried").await, device(&pool, "whole").await);
    let readings: Vec<(i64, f64)> = day().into_iter().take(60).collect();
    write(&pool, whole, &readings).await;
    rollup::ensure_up_to_date(&pool, &[whole], at(60)).await.unwrap();

    // Runs every two readings, their cutoffs inside intervals; 10:50 arrives late.
    let (late, on_time): (Vec<_>, Vec<_>) = readings.iter().copied().partition(|(m, _)| *m == 50);
    for chunk in on_time.chunks(2) {
        write(&pool, carried, chunk).await;
        let cutoff = at(chunk[chunk.len() - 1].0 + 1);
        let report = rollup::ensure_up_to_date(&pool, &[carried], cutoff).await.unwrap();
        assert_eq!(report.readings, chunk.len() as u64, "only the new readings are read (up to {cutoff})");
    }
    assert_ne!(intervals(&pool, carried).await, intervals(&pool, whole).await, "10:50 missing");
    write(&pool, carried, &late).await;
    let noted: Option<DateTime<Utc>> =
        sqlx::query_scalar(r#"SELECT "From" FROM monitoring."EnergyBackfills" WHERE "DeviceId" = $1"#)
            .bind(carried)
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert_eq!(noted, Some(at(50)), "a reading behind the carry is noted");
    let report = rollup::ensure_up_to_date(&pool, &[carried], at(60)).await.unwrap();
    assert_eq!((report.readings, report.backfills), (15, 0), "10:45 to 11:00 read again; no final interval changed");
    assert_eq!(intervals(&pool, carried).await, intervals(&pool, whole).await);

    // A carry that does not read back is ignored: the interval is read from its start.
    sqlx::query(r#"UPDATE monitoring."EnergyWatermarks" SET "Carry" = '{"not": "a carry"}' WHERE "DeviceId" = $1"#)
        .bind(carried)
        .execute(&pool)
        .await
        .unwrap();
    write(&pool, carried, &[(60, readings[59].1 + 40.0)]).await;
    let report = rollup::ensure_up_to_date(&pool, &[carried], at(61)).await.unwrap();
    assert_eq!(report.readings, 16);
    write(&pool, whole, &[(60, readings[59].1 + 40.0)]).await;
    rollup::ensure_up_to_date(&pool, &[whole], at(61)).await.unwrap();
    assert_eq!(intervals(&pool, carried).await, intervals(&pool, whole).await);
}

#[tokio::test]
async fn the_rollup_command_rebuilds_a_range_and_the_portal_runs_the_job() {
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let env = production_env(&db);
    let mut migrate = Portal::start(&["migrate"], &env, data.path());
    assert!(migrate.wait_exit(Duration::from_secs(60)).await.success());
    let pool = db.pool().await;
    let d = device(&pool, "meter-1").await;
    write(&pool, d, &day()).await;

    let mut cli = Portal::start(&["rollup", "--from", "2025-06-02", "--device", "meter-1"], &env, data.path());
    assert!(cli.wait_exit(Duration::from_secs(60)).await.success(), "{:?}", cli.messages());
    assert!(
        cli.messages().iter().any(|m| m == "Rebuilt energy intervals up to 2025-06-02T11:00:00Z"),
        "the first window's progress: {:?}",
        cli.messages()
    );
    assert!(cli.messages().iter().any(|m| m.contains("from 1440 readings")), "{:?}", cli.messages());
    assert_eq!(intervals(&pool, d).await.len(), 96);

    let mut bad = Portal::start(&["rollup", "--from", "yesterday"], &env, data.path());
    assert!(!bad.wait_exit(Duration::from_secs(30)).await.success());
    assert!(bad.raw_lines().iter().any(|l| l.contains("neither an RFC 3339 time")), "{:?}", bad.raw_lines());
    let mut unknown = Portal::start(&["rollup", "--from", "2025-06-02", "--device", "nope"], &env, data.path());
    assert!(!unknown.wait_exit(Duration::from_secs(30)).await.success());
    assert!(unknown.messages().iter().any(|m| m.contains("unknown device externalId 'nope'")));

    // The portal's background job picks up a new device's readings on its own.
    let other = device(&pool, "meter-2").await;
    write(&pool, other, &day()).await;
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;
    let n = wait_for("the job to roll up meter-2", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move { Some(intervals(&pool, other).await.len()).filter(|n| *n == 96) }
    })
    .await;
    assert_eq!(n, 96);
}

/// Site totals from the site rollup, as (SiteId, import Wh, device rows), every site. The
/// energy door's answer for `sites`, read before the refresh, agrees with them.
async fn site_totals(db: &PgPool, sites: &[i32]) -> Vec<(i32, f64, i64)> {
    let ranges: Vec<SiteRange> = sites.iter().map(|&site| SiteRange { site, from: at(-1440), to: at(1440) }).collect();
    let door: Vec<(i32, f64, i64)> = energy::sites_intervals(db, &ranges)
        .await
        .unwrap()
        .iter()
        .zip(sites)
        .filter(|(e, _)| !e.intervals.is_empty())
        .map(|(e, &site)| {
            let wh: f64 = e.intervals.iter().map(|i| i.import_wh).sum();
            (site, wh, e.intervals.iter().map(|i| i64::from(i.rows)).sum())
        })
        .collect();
    // The door's sums per bucket (the site page's bars) add up to the same, before the refresh
    // (summed from the device intervals) and after it (from the stored sums).
    let buckets = || async {
        let mut out = Vec::new();
        for &site in sites {
            let sums = energy::site_buckets(db, site, &[at(-1440), at(60), at(1440)]).await.unwrap();
            let (wh, n) =
                (sums.iter().map(|b| b.import_wh).sum::<f64>(), sums.iter().map(|b| b.intervals).sum::<u32>());
            out.push((site, wh, n));
        }
        out
    };
    let counted: Vec<(i32, f64, u32)> = energy::sites_intervals(db, &ranges)
        .await
        .unwrap()
        .iter()
        .zip(sites)
        .map(|(e, &site)| (site, e.intervals.iter().map(|i| i.import_wh).sum(), e.intervals.len() as u32))
        .collect();
    assert_eq!(buckets().await, counted, "buckets before the refresh");
    energy::refresh_site_sums(db).await.unwrap();
    assert_eq!(buckets().await, counted, "buckets after the refresh");
    let stored: Vec<(i32, f64, i64)> = sqlx::query_as(
        r#"SELECT "SiteId", sum("ImportWh"), sum("Rows")::int8 FROM monitoring."SiteEnergyIntervals"
           GROUP BY "SiteId" ORDER BY "SiteId""#,
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(door, stored, "the door is as fresh as the device intervals before any refresh");
    stored
}

#[sqlx::test]
async fn site_sums_follow_their_devices_through_rollups_moves_and_deletes(pool: PgPool) {
    let a = device(&pool, "site-a-meter").await;
    let b = device(&pool, "site-b-meter").await;
    let site_of = |d: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i32>(r#"SELECT "SiteId" FROM monitoring."Devices" WHERE "Id" = $1"#)
                .bind(d)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (site_a, site_b) = (site_of(a).await, site_of(b).await);
    // 1 kWh over the first hour for a, 2 kWh for b.
    write(&pool, a, &[(0, 0.0), (60, 1_000.0)]).await;
    write(&pool, b, &[(0, 0.0), (60, 2_000.0)]).await;
    rollup::run_once(&pool, at(61)).await.unwrap();
    let sites = [site_a, site_b];
    assert_eq!(site_totals(&pool, &sites).await, [(site_a, 1_000.0, 5), (site_b, 2_000.0, 5)]);

    // More readings: the job's run refreshes the sums too.
    write(&pool, a, &[(120, 1_500.0)]).await;
    rollup::run_once(&pool, at(121)).await.unwrap();
    let counted: f64 =
        sqlx::query_scalar(r#"SELECT sum("ImportWh") FROM monitoring."SiteEnergyIntervals" WHERE "SiteId" = $1"#)
            .bind(site_a)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counted, 1_500.0, "refreshed by the rollup run itself");

    // Device b moves to site a: both sites' sums follow.
    sqlx::query(r#"UPDATE monitoring."Devices" SET "SiteId" = $1 WHERE "Id" = $2"#)
        .bind(site_a)
        .bind(b)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(site_totals(&pool, &sites).await, [(site_a, 3_500.0, 9 + 5)]);

    // Device a is deleted: its energy leaves the site, and its intervals go with it.
    sqlx::query(r#"DELETE FROM monitoring."Devices" WHERE "Id" = $1"#).bind(a).execute(&pool).await.unwrap();
    assert_eq!(site_totals(&pool, &sites).await, [(site_a, 2_000.0, 5)]);
    assert!(intervals(&pool, a).await.is_empty(), "the trigger deletes a deleted device's intervals");

    // A site deleted with its devices leaves nothing queued or summed behind.
    sqlx::query(r#"DELETE FROM monitoring."Sites" WHERE "Id" = $1"#).bind(site_a).execute(&pool).await.unwrap();
    assert_eq!(site_totals(&pool, &sites).await, []);
    let queued: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."SiteEnergyStale""#).fetch_one(&pool).await.unwrap();
    assert_eq!(queued, 0);
}

/// Hostile and broken counters through the write path and the job (issue 20, items 7 and 8): a
/// reading ten years before the rest, a counter of 1e300 Wh (the rollup failed on it every minute
/// forever), one of 1e35 Wh (billed as 0 kWh), and a meter with history whose counter jumps to
/// just below the wrap (billed as 98 GWh in one interval). The job goes on, counts none of them,
/// bills stay plausible, and the device's page says what was not counted and why.
#[sqlx::test]
async fn hostile_counters_are_not_counted_and_shown_on_the_device_page(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let d = device(&pool, "meter-1").await;
    let decade_ago = -10 * 365 * 24 * 60;
    let mut history: Vec<(i64, f64)> = vec![(decade_ago, 1000.0)];
    history.extend((0..60).map(|m| (m, 5e6 + 100.0 * m as f64)));
    history.extend([(60, 1e300), (61, 5e6 + 6100.0), (62, 1e35), (63, 5e6 + 6300.0)]);
    history.extend([(64, WRAP_WH - 1000.0), (65, 500.0), (66, 900.0)]);
    write(&pool, d, &history).await;
    let report = run(&app).await;
    assert_eq!(report.devices, 1, "the run succeeded");

    let rows = intervals(&pool, d).await;
    assert!(rows.len() < 20, "{} intervals: the decade was not filled in", rows.len());
    let total: f64 = rows.iter().map(|r| r.import_wh).sum();
    // 59 steps of 100 Wh, the two steps around each impossible value (200 Wh each), and the
    // 1,500 Wh across the wrap plus 400 Wh after it: nothing of the jump or of the decade.
    assert!((total - (5900.0 + 200.0 + 200.0 + 1500.0 + 400.0)).abs() < 1e-6, "{total}");
    assert!(rows.iter().all(|r| r.import_wh <= 100e6 * 0.25));

    app.seed_admin().await;
    let mut b = app.browser();
    b.sign_in("admin@example.com", crate::helpers::ADMIN_PASSWORD).await;
    let page = b.get(&format!("/devices/{d}")).await;
    assert!(page.body.contains("Energy not counted"), "{}", page.body);
    // Both counters were silent for the decade; the import counter's three impossible points.
    assert!(page.body.contains("5 counter readings of this meter could not be energy"), "{}", page.body);
    for why in [
        "read 1.000e300 Wh, which no meter counts",
        "rose by 99,994,992,700 Wh in 60 s (a mean 5,999,700 MW, above the plausible 100 MW)",
        "No import energy reading for 3650.0 days (longer than the 7 days",
    ] {
        assert!(page.body.contains(why), "{why}: {}", page.body);
    }
    // Recomputing the same readings (a rebuild) notes nothing twice.
    rebuild::rebuild(&pool, Some(&[d]), at(decade_ago), None, app.clock.now(), |_| {}).await.unwrap();
    let noted: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."EnergyAnomalies" WHERE "DeviceId" = $1"#)
        .bind(d)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(noted, 5);
}

/// (minutes after base, reactive import varh, reactive export varh) of a device's intervals.
async fn reactive(db: &PgPool, device: i32) -> Vec<(i64, Option<f64>, Option<f64>)> {
    let rows: Vec<(DateTime<Utc>, Option<f64>, Option<f64>)> = sqlx::query_as(
        r#"SELECT "Start", "ReactiveImportVarh", "ReactiveExportVarh" FROM monitoring."EnergyIntervals"
           WHERE "DeviceId" = $1 ORDER BY "Start""#,
    )
    .bind(device)
    .fetch_all(db)
    .await
    .unwrap();
    rows.into_iter().map(|(s, i, e)| ((s - base()).num_minutes(), i, e)).collect()
}

#[sqlx::test]
async fn reactive_energy_comes_from_the_reactive_counters_like_active_energy(pool: PgPool) {
    const REACTIVE_IMPORT: usize = 2; // COUNTER_QUANTITIES index of "ReactiveImportVarh"
    const REACTIVE_EXPORT: usize = 3;
    let app = TestApp::new(pool.clone()).await;
    let (site, devices) = site_with_devices(&pool, "Reactive", "Europe/London", &["q-1", "p-only"]).await;
    let (d, plain) = (devices[0], devices[1]);
    // 10:05 → 10:20: 300 Wh, 150 varh imported, 30 varh exported; the reactive import counter
    // wraps like the active one may (the Acuvim's range).
    let readings = [(5, 1000.0, WRAP_WH - 50.0, 7.0), (20, 1300.0, 100.0, 37.0)];
    let batch: Vec<Reading> = readings
        .iter()
        .map(|&(minute, wh, q_in, q_out)| {
            let mut r = Reading::empty(d, at(minute));
            r.counters[IMPORT] = Some(wh);
            r.counters[REACTIVE_IMPORT] = Some(q_in);
            r.counters[REACTIVE_EXPORT] = Some(q_out);
            r
        })
        .collect();
    measurements::write(&pool, &batch).await.unwrap();
    write(&pool, plain, &[(5, 0.0), (20, 600.0)]).await;
    run(&app).await;
    // Spread in proportion to time as active energy is: 10 of 15 minutes before 10:15.
    assert_eq!(reactive(&pool, d).await, vec![(0, Some(100.0), Some(20.0)), (15, Some(50.0), Some(10.0))]);
    assert_eq!(energy(&pool, d).await, vec![(0, 200.0), (15, 100.0)]);
    // A meter without the counters has unknown reactive energy, not zero.
    assert_eq!(reactive(&pool, plain).await, vec![(0, None, None), (15, None, None)]);

    // The rebuild computes the same figures.
    sqlx::query(r#"DELETE FROM monitoring."EnergyIntervals""#).execute(&pool).await.unwrap();
    rebuild::rebuild(&pool, None, at(-60), None, app.clock.now(), |_| {}).await.unwrap();
    assert_eq!(reactive(&pool, d).await, vec![(0, Some(100.0), Some(20.0)), (15, Some(50.0), Some(10.0))]);

    // The door: a site's reactive energy is known only where every main meter's is.
    let door = |pool: PgPool| async move {
        let e = energy::site_intervals(&pool, site, at(-60), at(60)).await.unwrap();
        e.intervals.iter().map(|i| (i.reactive_import_varh, i.reactive_export_varh)).collect::<Vec<_>>()
    };
    assert_eq!(door(pool.clone()).await, vec![(None, None), (None, None)]);
    sqlx::query(r#"UPDATE monitoring."Devices" SET "Role" = 'check' WHERE "Id" = $1"#)
        .bind(plain)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(door(pool.clone()).await, vec![(Some(100.0), Some(20.0)), (Some(50.0), Some(10.0))]);
    energy::refresh_site_sums(&pool).await.unwrap();
    assert_eq!(door(pool.clone()).await, vec![(Some(100.0), Some(20.0)), (Some(50.0), Some(10.0))], "stored sums");
}

/// The job rolls devices up in batches (one transaction each): when the database refuses one
/// device's intervals, the batch is tried again device by device, the others are rolled up, the
/// refused one keeps its watermark and readings, and it is rolled up once the fault is gone.
#[sqlx::test]
async fn a_device_the_database_refuses_does_not_stop_the_rest_of_its_batch(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut devices = Vec::new();
    for name in ["meter-a", "meter-b", "meter-c"] {
        let d = device(&pool, name).await;
        write(&pool, d, &[(5, 1000.0), (20, 1300.0), (35, 1600.0)]).await;
        devices.push(d);
    }
    let refused = devices[1];
    // A fault of the database's own, for one device only: its intervals cannot be written.
    sqlx::raw_sql(AssertSqlSafe(format!(
        r#"CREATE FUNCTION monitoring.refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
           CREATE TRIGGER "TR_Test_Refuse" BEFORE INSERT ON monitoring."EnergyIntervals"
           FOR EACH ROW WHEN (NEW."DeviceId" = {refused}) EXECUTE FUNCTION monitoring.refuse_for_test();"#
    )))
    .execute(&pool)
    .await
    .unwrap();
    let err = rollup::run_once(&pool, app.clock.now()).await.unwrap_err();
    assert!(err.to_string().contains("refused for the test"), "{err}");
    let expected = vec![(0, 200.0), (15, 300.0), (30, 100.0)];
    assert_eq!(energy(&pool, devices[0]).await, expected);
    assert_eq!(energy(&pool, devices[2]).await, expected);
    assert!(energy(&pool, refused).await.is_empty());

    sqlx::raw_sql(r#"DROP TRIGGER "TR_Test_Refuse" ON monitoring."EnergyIntervals""#).execute(&pool).await.unwrap();
    let report = run(&app).await;
    assert_eq!(report.readings, 3, "the refused device's readings (the others carry their last interval)");
    for d in devices {
        assert_eq!(energy(&pool, d).await, expected);
    }
}
