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

    // The store buckets with time_bucket on a hypertable, aligned like date_bin.
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let series = queries::power_series(
        &pool,
        Bucketing::from(&outcome),
        1,
        t0,
        t0 + chrono::TimeDelta::hours(6),
        chrono::TimeDelta::hours(2),
    )
    .await
    .unwrap();
    assert_eq!(series, (0..3).map(|h| (t0 + chrono::TimeDelta::hours(2 * h), 1000.0)).collect::<Vec<_>>());
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
