//! OPERATIONS.md "Backup & restore" on PostgreSQL: a running portal's database is dumped with
//! `pg_dump -F c`, restored with `pg_restore` into a fresh database, and the portal started on the
//! restored database finds its schema up to date, seeds nothing and serves the same data. (The
//! TimescaleDB calls around `pg_restore` are run on TimescaleDB in tests/api/timescale.rs; the
//! PGlite double cannot be dumped.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::helpers::{Portal, TestDb, production_env, site_with_devices};

fn pg_tool(name: &str) -> PathBuf {
    let dir = std::env::var("TAU_TEST_PG_BINDIR").expect("TAU_TEST_PG_BINDIR (scripts/test.sh sets it)");
    PathBuf::from(dir).join(name)
}

/// `pg_dump`/`pg_restore` connection arguments for `db`.
fn conn_args(db: &TestDb) -> Vec<String> {
    let o = db.options();
    vec![
        "-h".into(),
        o.get_host().to_string(),
        "-p".into(),
        o.get_port().to_string(),
        "-U".into(),
        o.get_username().to_string(),
        "-d".into(),
        db.name.clone(),
    ]
}

#[tokio::test]
async fn a_dump_restored_into_a_fresh_database_serves_the_same_portal() {
    let source = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let portal = Portal::start(&[], &production_env(&source), data.path());
    portal.wait_for_message("Seeded default admin", Duration::from_secs(60)).await;
    let pool = source.pool().await;
    let (_, devices) = site_with_devices(&pool, "Plant", "Africa/Johannesburg", &["meter-1"]).await;
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "EnergyImportWh")
           SELECT $1, t, 1000, 1000 * extract(epoch FROM t - '2026-01-01') / 3600
           FROM generate_series(timestamptz '2026-01-01', '2026-01-02', interval '1 minute') AS t"#,
    )
    .bind(devices[0])
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    drop(portal);

    let dump = data.path().join("backup.dump");
    let out =
        Command::new(pg_tool("pg_dump")).args(conn_args(&source)).args(["-F", "c", "-f"]).arg(&dump).output().unwrap();
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));

    let restored = TestDb::create().await;
    let out = Command::new(pg_tool("pg_restore")).args(conn_args(&restored)).arg(&dump).output().unwrap();
    assert!(out.status.success(), "pg_restore: {}", String::from_utf8_lossy(&out.stderr));

    let portal = Portal::start(&[], &production_env(&restored), data.path());
    portal.wait_listening().await;
    let messages = portal.messages();
    assert!(messages.iter().any(|m| m == "Database schema is up to date"), "{messages:?}");
    assert!(!messages.iter().any(|m| m.starts_with("Applied migration") || m.starts_with("Seeded")), "{messages:?}");
    let pool = restored.pool().await;
    let rows: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements""#).fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1441, "every reading came back");
    let client = reqwest::Client::new();
    let health = client.get(portal.url("/health/ready")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
