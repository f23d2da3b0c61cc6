//! Energy intervals from readings written through the store's one write path, rolled up by the
//! real job functions against the real PostgreSQL, and the `tau-portal rollup` command.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tau_acuvim_portal::measurements::energy::WRAP_WH;
use tau_acuvim_portal::measurements::{self, Reading, rollup};

use crate::helpers::{Portal, TestApp, TestDb, production_env, wait_for};

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
    let site: i32 = sqlx::query_scalar(
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ($1, 'Europe/London')
           ON CONFLICT DO NOTHING RETURNING "Id""#,
    )
    .bind(format!("Site of {external_id}"))
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query_scalar(
        r#"INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
           VALUES ($1, $2, $2, 'generic', 'push') RETURNING "Id""#,
    )
    .bind(site)
    .bind(external_id)
    .fetch_one(db)
    .await
    .unwrap()
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
struct Row {
    #[sqlx(rename = "Start")]
    start: DateTime<Utc>,
    #[sqlx(rename = "ImportWh")]
    import_wh: f64,
    #[sqlx(rename = "MaxW")]
    max_w: Option<f32>,
    #[sqlx(rename = "Samples")]
    samples: i32,
    #[sqlx(rename = "Estimated")]
    estimated: bool,
    #[sqlx(rename = "CounterReset")]
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
    let report = rollup::rebuild(&pool, Some(&[d]), at(360), Some(at(720)), app.clock.now(), |_| {}).await.unwrap();
    assert!(report.intervals >= 24, "{report:?}");
    assert_eq!(intervals(&pool, d).await, incremental);

    // A rebuild of everything from the start equals it too.
    sqlx::query(r#"DELETE FROM monitoring."EnergyIntervals""#).execute(&pool).await.unwrap();
    rollup::rebuild(&pool, None, at(-60), None, app.clock.now(), |_| {}).await.unwrap();
    assert_eq!(intervals(&pool, d).await, incremental);
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
        cli.messages().iter().any(|m| m == &format!("Rebuilt energy intervals of device {d}")),
        "{:?}",
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

/// Site totals from the site rollup, as (SiteId, import Wh, device rows), every site.
async fn site_totals(db: &PgPool) -> Vec<(i32, f64, i64)> {
    measurements::site_rollup::refresh(db).await.unwrap();
    sqlx::query_as(
        r#"SELECT "SiteId", sum("ImportWh"), sum("Rows")::int8 FROM monitoring."SiteEnergyIntervals"
           GROUP BY "SiteId" ORDER BY "SiteId""#,
    )
    .fetch_all(db)
    .await
    .unwrap()
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
    assert_eq!(site_totals(&pool).await, [(site_a, 1_000.0, 5), (site_b, 2_000.0, 5)]);

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
    assert_eq!(site_totals(&pool).await, [(site_a, 3_500.0, 9 + 5)]);

    // Device a is deleted: its energy leaves the site.
    sqlx::query(r#"DELETE FROM monitoring."Devices" WHERE "Id" = $1"#).bind(a).execute(&pool).await.unwrap();
    assert_eq!(site_totals(&pool).await, [(site_a, 2_000.0, 5)]);

    // A site deleted with its devices leaves nothing queued or summed behind.
    sqlx::query(r#"DELETE FROM monitoring."Sites" WHERE "Id" = $1"#).bind(site_a).execute(&pool).await.unwrap();
    assert_eq!(site_totals(&pool).await, []);
    let queued: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."SiteEnergyStale""#).fetch_one(&pool).await.unwrap();
    assert_eq!(queued, 0);
}
