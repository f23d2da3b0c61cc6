//! The TimescaleDB leg: migrations and the bootstrapper against a real TimescaleDB 2.x
//! (`../shared/tools/timescale-pglite`, started by scripts/test.sh). That server has ONE backend
//! session, so everything here runs on a pool of one connection, in one test.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tau_acuvim_portal::db::migrate::{self, MIGRATOR};
use tau_acuvim_portal::db::timescale::{self, Outcome};
use tau_acuvim_portal::measurements::queries::{self, Bucketing};

use crate::helpers::{ADMIN_PASSWORD, Portal};

async fn scalar_i64(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn hypertable_compression_and_idempotence_on_real_timescaledb() {
    let Ok(url) = std::env::var("TAU_TEST_TIMESCALE_URL") else {
        eprintln!("SKIPPED: TimescaleDB leg (TAU_TEST_TIMESCALE_URL is not set; scripts/test.sh sets it)");
        return;
    };
    let pool = PgPoolOptions::new().max_connections(1).connect(&url).await.expect("connect to TimescaleDB");
    // The server may be reused by a developer between runs: start from an empty schema.
    sqlx::raw_sql(
        "DROP SCHEMA IF EXISTS monitoring CASCADE; DROP SCHEMA IF EXISTS identity CASCADE; DROP SCHEMA IF EXISTS portal CASCADE;
         DROP TABLE IF EXISTS _sqlx_migrations;",
    )
    .execute(&pool)
    .await
    .unwrap();

    let applied = migrate::run(&pool, &MIGRATOR).await.unwrap();
    assert_eq!(applied.first().map(String::as_str), Some("InitialCreate"));

    // Rows written while the table was still plain must survive the conversion (migrate_data).
    sqlx::raw_sql(
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('Plant', 'Africa/Johannesburg');
           INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES (1, 'meter-1', 'Main incomer', 'generic', 'push');
           INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "EnergyImportWh")
               SELECT 1, t, 1000, 1000 * extract(epoch FROM t - '2026-01-01') / 3600
               FROM generate_series(timestamptz '2026-01-01', '2026-01-20', interval '1 hour') AS t;"#,
    )
    .execute(&pool)
    .await
    .unwrap();

    let outcome = timescale::bootstrap(&pool).await.unwrap();
    assert!(matches!(outcome, Outcome::Hypertable { .. }), "{outcome:?}");

    let hypertables = scalar_i64(
        &pool,
        "SELECT count(*) FROM timescaledb_information.hypertables
         WHERE hypertable_schema = 'monitoring' AND hypertable_name = 'PowerMeasurements' AND compression_enabled",
    )
    .await;
    assert_eq!(hypertables, 1, "a compressed hypertable");
    assert_eq!(scalar_i64(&pool, r#"SELECT count(*) FROM monitoring."PowerMeasurements""#).await, 457);

    // The store buckets with time_bucket on a hypertable, aligned like date_bin: buckets finer
    // than an hour read the readings themselves.
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let chart = |width: chrono::TimeDelta| {
        queries::series(
            &pool,
            Bucketing::from(&outcome),
            1,
            &["PTotal"],
            t0,
            t0 + chrono::TimeDelta::hours(6),
            queries::SeriesBucket::Fixed(width),
        )
    };
    let points = |series: Vec<queries::Bucketed>| -> Vec<_> {
        series.iter().map(|b| (b.start, b.samples, b.values[0])).collect()
    };
    let bucket = |hours: i64, samples: i64| (t0 + chrono::TimeDelta::hours(hours), samples, [Some(1000.0); 3]);
    let half_hours = points(chart(chrono::TimeDelta::minutes(30)).await.unwrap());
    assert_eq!(half_hours, (0..6).map(|h| bucket(h, 1)).collect::<Vec<_>>());
    // Whole hours come from the hourly rollup before a device's stale mark and from the
    // readings after it. These rows bypassed the write path, so mark them as it would.
    sqlx::query(r#"INSERT INTO monitoring."HourlyStale" ("DeviceId", "From") VALUES (1, '2026-01-01')"#)
        .execute(&pool)
        .await
        .unwrap();
    let two_hours = points(chart(chrono::TimeDelta::hours(2)).await.unwrap());
    assert_eq!(two_hours, (0..3).map(|h| bucket(2 * h, 2)).collect::<Vec<_>>());
    type Setting = (String, Option<i16>, Option<i16>, Option<bool>);
    let settings: Vec<Setting> = sqlx::query_as(
        "SELECT attname::text, segmentby_column_index, orderby_column_index, orderby_asc
         FROM timescaledb_information.compression_settings
         WHERE hypertable_schema = 'monitoring' AND hypertable_name = 'PowerMeasurements' ORDER BY attname",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        settings,
        [("DeviceId".to_string(), Some(1), None, None), ("Time".to_string(), None, Some(1), Some(false))],
        "segment by device, order by time descending"
    );
    let policy = "SELECT count(*) FROM timescaledb_information.jobs
                  WHERE proc_name = 'policy_compression' AND hypertable_name = 'PowerMeasurements'";
    assert_eq!(scalar_i64(&pool, policy).await, 1);

    // Compress the old chunks (as the policy would), then bootstrap again, and again: nothing
    // changes and nothing fails, as on a restart or a restored dump.
    let job: i32 = sqlx::query_scalar(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' AND hypertable_name = 'PowerMeasurements'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("CALL run_job($1)").bind(job).execute(&pool).await.unwrap();
    let compressed = scalar_i64(
        &pool,
        r#"SELECT count(*) FROM timescaledb_information.chunks
           WHERE hypertable_schema = 'monitoring' AND hypertable_name = 'PowerMeasurements' AND is_compressed"#,
    )
    .await;
    assert!(compressed > 0, "the compression policy compressed the January chunks");

    for _ in 0..2 {
        let again = timescale::bootstrap(&pool).await.unwrap();
        assert_eq!(again, outcome);
    }
    assert_eq!(scalar_i64(&pool, policy).await, 1, "still exactly one compression policy");
    assert_eq!(scalar_i64(&pool, r#"SELECT count(*) FROM monitoring."PowerMeasurements""#).await, 457);
    assert!(migrate::run(&pool, &MIGRATOR).await.unwrap().is_empty());
    operations_queries_run_as_documented(&pool).await;
    grafana_reads_compressed_chunks_through_its_read_only_role(&pool).await;
    deleting_a_device_deletes_its_readings_in_compressed_chunks(&pool).await;
    // Free the server's single session for the binary.
    pool.close().await;

    // The real binary on the same (restored-like, already bootstrapped) database logs the
    // runbook's line and serves.
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("DATABASE_URL", url.clone()),
        ("Database__MaxConnections", "1".to_string()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
    ];
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;
    let line = portal
        .wait_for_message("TimescaleDB hypertable for monitoring.PowerMeasurements is ready", Duration::from_secs(5))
        .await;
    assert_eq!(line["level"], "INFO");
    portal.wait_for_message("Seeded default admin admin@example.com", Duration::from_secs(5)).await;
    drop(portal);
    crate::fleet::runbook_sql_on_timescaledb(&url).await;
}

/// The chunk query OPERATIONS.md gives (verbatim, as psql receives it from the shell) answers;
/// the runbook's original one-liner, kept beside it, fails as the document says.
pub const CHUNKS_QUERY: &str = r#"
  SELECT c.chunk_name, c.range_start, c.range_end, c.is_compressed, pg_size_pretty(d.total_bytes) AS size
  FROM timescaledb_information.chunks c
  JOIN chunks_detailed_size('monitoring."PowerMeasurements"') d USING (chunk_schema, chunk_name)
  WHERE c.hypertable_schema = 'monitoring' AND c.hypertable_name = 'PowerMeasurements'
  ORDER BY c.range_start;"#;
pub const RUNBOOK_CHUNKS_QUERY: &str = r#"SELECT chunk_name, range_start, range_end, total_bytes FROM chunks_detailed_size('monitoring."PowerMeasurements"');"#;
pub const COMPRESSION_QUERY: &str = r#"SELECT * FROM hypertable_compression_stats('monitoring."PowerMeasurements"');"#;

async fn operations_queries_run_as_documented(pool: &PgPool) {
    let chunks = sqlx::raw_sql(CHUNKS_QUERY).fetch_all(pool).await.expect("OPERATIONS.md's chunk query");
    assert!(chunks.len() >= 3, "three weeks of readings make at least three 7-day chunks");
    let error = sqlx::raw_sql(RUNBOOK_CHUNKS_QUERY).fetch_all(pool).await.expect_err("the runbook's one-liner fails");
    assert!(error.to_string().contains(r#"column "range_start" does not exist"#), "{error}");
    let stats = sqlx::raw_sql(COMPRESSION_QUERY).fetch_all(pool).await.expect("compression stats");
    assert_eq!(stats.len(), 1);
    // Backup & restore: the calls that bracket pg_restore on TimescaleDB exist and run; after
    // post_restore the database is back to normal (the bootstrapper finds nothing to do).
    sqlx::raw_sql("SELECT timescaledb_pre_restore();").execute(pool).await.expect("timescaledb_pre_restore()");
    sqlx::raw_sql("SELECT timescaledb_post_restore();").execute(pool).await.expect("timescaledb_post_restore()");
    let restoring: String =
        sqlx::query_scalar("SELECT current_setting('timescaledb.restoring')").fetch_one(pool).await.unwrap();
    assert_eq!(restoring, "off");
    assert!(matches!(timescale::bootstrap(pool).await.unwrap(), Outcome::Hypertable { .. }));
}

/// Grafana's role reads the hypertable, compressed chunks included (TimescaleDB passes the
/// hypertable's grants on to its chunks), and still nothing of identity. One session here, so the
/// role is taken with SET ROLE rather than a login of its own.
async fn grafana_reads_compressed_chunks_through_its_read_only_role(pool: &PgPool) {
    tau_acuvim_portal::db::reader::ensure(pool, "grafana_reader", "a long enough password for grafana").await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("SET ROLE grafana_reader").execute(&mut *conn).await.unwrap();
    let rows: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements""#)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let users = sqlx::raw_sql(r#"SELECT * FROM identity."Users""#).execute(&mut *conn).await;
    sqlx::raw_sql("RESET ROLE").execute(&mut *conn).await.unwrap();
    assert_eq!(rows, 457, "every reading, from compressed and uncompressed chunks");
    assert!(users.unwrap_err().to_string().contains("permission denied"));
}

/// The readings have no foreign key to the devices (migration MeasurementsDeviceLock): a trigger
/// deletes a deleted device's readings, in compressed chunks as well, where TimescaleDB would
/// apply no cascade.
async fn deleting_a_device_deletes_its_readings_in_compressed_chunks(pool: &PgPool) {
    let compressed_rows = r#"SELECT count(*) FROM monitoring."PowerMeasurements" WHERE "Time" < '2026-01-08'"#;
    assert!(scalar_i64(pool, compressed_rows).await > 0);
    sqlx::raw_sql(
        r#"INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES (1, 'meter-2', 'Feeder', 'generic', 'push');
           INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal")
               SELECT d."Id", '2026-01-03', 5 FROM monitoring."Devices" d WHERE d."ExternalId" = 'meter-2';
           DELETE FROM monitoring."Devices" WHERE "ExternalId" = 'meter-1';"#,
    )
    .execute(pool)
    .await
    .expect("delete a device with compressed readings");
    assert_eq!(scalar_i64(pool, r#"SELECT count(*) FROM monitoring."PowerMeasurements""#).await, 1, "meter-2's only");
}
