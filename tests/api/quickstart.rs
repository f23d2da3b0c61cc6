//! The README's first command, `scripts/dev.sh`, end to end: its own PostgreSQL cluster, the
//! simulated meters, the demo site, the portal, and live readings within seconds; then Ctrl-C
//! (SIGTERM) stops everything it started.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

use crate::helpers::{free_port, wait_for};

#[tokio::test]
async fn the_quick_start_shows_live_readings_from_simulated_meters_and_stops_cleanly() {
    if std::env::var_os("TAU_SKIP_QUICKSTART").is_some() {
        eprintln!("SKIPPED: TAU_SKIP_QUICKSTART is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The postgres OS user must reach the cluster below it when the test runs as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (portal, pg, modbus) = (free_port(), free_port(), free_port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .env("TAU_DEV_DIR", dir.path())
        .env("TAU_DEV_BIN", env!("CARGO_BIN_EXE_tau-portal"))
        .env("TAU_DEV_PORT", portal.to_string())
        .env("TAU_DEV_PG_PORT", pg.to_string())
        .env("TAU_DEV_MODBUS_PORT", modbus.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run scripts/dev.sh");

    let db = PgConnectOptions::new().host("127.0.0.1").port(pg).username("postgres").database("power_monitoring");
    // Generous: a loaded machine; the cluster is created on the first run.
    let readings = wait_for("readings of the demo meters", Duration::from_secs(120), || async {
        let pool = sqlx::PgPool::connect_with(db.clone()).await.ok()?;
        let n: i64 = sqlx::query_scalar(
            r#"SELECT count(DISTINCT m."DeviceId") FROM monitoring."PowerMeasurements" m
               JOIN monitoring."Devices" d ON d."Id" = m."DeviceId" WHERE d."ExternalId" LIKE 'demo-%'"#,
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        pool.close().await;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(readings, 3, "every demo meter has readings");
    let health = reqwest::get(format!("http://127.0.0.1:{portal}/health")).await.unwrap();
    assert!(health.status().is_success());
    let password = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert!(password.trim().len() >= 12, "an admin password was generated");

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("dev.sh stops").unwrap();
    assert!(status.code().is_some(), "dev.sh exited by itself after SIGTERM: {status:?}");
    for port in [portal, pg, modbus] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still open after Ctrl-C");
    }
}
