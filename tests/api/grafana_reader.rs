//! Grafana's read-only database role (src/db/reader.rs): Grafana's free edition lets every user
//! run any SQL on its data source, so the role it logs in as must read the measurements and
//! nothing else, and write nothing.

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tau_acuvim_portal::db::reader;

/// A role of this test's own (roles are cluster-wide; tests run in parallel).
fn role_name() -> String {
    format!("grafana_t_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn connect_as(pool: &PgPool, role: &str) -> PgConnection {
    let options: PgConnectOptions = (*pool.connect_options()).clone().username(role);
    PgConnection::connect_with(&options).await.expect("the reader role logs in")
}

/// The SQLSTATE a statement fails with (None: it succeeded).
async fn refused(conn: &mut PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut *conn).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().map(|c| c.to_string()).unwrap_or_default()),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[sqlx::test]
async fn the_reader_role_reads_measurements_and_nothing_else_and_writes_nothing(pool: PgPool) {
    sqlx::raw_sql(
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('Plant', 'UTC');
           INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES (1, 'main', 'Main incomer', 'generic', 'push');
           INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal") VALUES (1, now(), 1000);
           INSERT INTO identity."Users" ("Email", "PasswordHash", "IsAdmin") VALUES ('a@example.com', 'x', true);"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    let role = role_name();
    reader::ensure(&pool, &role, "a long enough password for grafana").await.unwrap();
    // Idempotent: a restart (or a rotated password) changes nothing else.
    reader::ensure(&pool, &role, "a rotated password for grafana").await.unwrap();

    let mut grafana = connect_as(&pool, &role).await;
    for table in ["Sites", "Devices", "PowerMeasurements", "EnergyIntervals", "SiteEnergyIntervals"] {
        let sql = format!(r#"SELECT count(*) FROM monitoring."{table}""#);
        assert_eq!(refused(&mut grafana, &sql).await, None, "{sql}");
    }
    let readings: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."PowerMeasurements""#)
        .fetch_one(&mut grafana)
        .await
        .unwrap();
    assert_eq!(readings, 1);

    // 42501 insufficient_privilege; 25006 read_only_sql_transaction.
    let denied = ["42501", "25006"];
    let secrets: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname IN ('identity', 'portal')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        secrets.iter().any(|t| t == r#"identity."Users""#) && secrets.iter().any(|t| t == r#"identity."Sessions""#)
    );
    for table in &secrets {
        let code = refused(&mut grafana, &format!("SELECT * FROM {table} LIMIT 1")).await;
        assert_eq!(code.as_deref(), Some("42501"), "{table} must not be readable");
    }
    for sql in [
        r#"UPDATE identity."Users" SET "IsAdmin" = true"#,
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('x', 'UTC')"#,
        r#"UPDATE monitoring."PowerMeasurements" SET "PTotal" = 0"#,
        r#"DELETE FROM monitoring."Devices""#,
        r#"TRUNCATE monitoring."PowerMeasurements""#,
        r#"CREATE TABLE monitoring."Evil" (x int)"#,
        "CREATE TABLE public.evil (x int)",
        "CREATE SCHEMA evil",
        r#"ALTER TABLE monitoring."Sites" ADD COLUMN "Evil" int"#,
    ] {
        let code = refused(&mut grafana, sql).await;
        assert!(code.as_deref().is_some_and(|c| denied.contains(&c)), "{sql} must be refused: {code:?}");
    }
    // Even with the read-only default switched off, the privileges hold.
    assert_eq!(refused(&mut grafana, "SET default_transaction_read_only = off").await, None);
    let code = refused(&mut grafana, r#"UPDATE monitoring."PowerMeasurements" SET "PTotal" = 0"#).await;
    assert_eq!(code.as_deref(), Some("42501"));
    let attributes: (bool, bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attributes, (false, false, false));
    grafana.close().await.unwrap();

    // A table created later (a new migration) is readable without another grant.
    sqlx::raw_sql(r#"CREATE TABLE monitoring."Later" (x int); INSERT INTO monitoring."Later" VALUES (1);"#)
        .execute(&pool)
        .await
        .unwrap();
    let mut grafana = connect_as(&pool, &role).await;
    assert_eq!(refused(&mut grafana, r#"SELECT * FROM monitoring."Later""#).await, None);
}

/// The portal at startup creates the role from its configuration (the compose file's
/// GRAFANA_DB_PASSWORD) and logs it; the portal's own user is refused as Grafana's.
#[tokio::test]
async fn the_portal_creates_the_role_at_startup_and_refuses_its_own_user() {
    use crate::helpers::{Portal, TestDb, production_env};
    let db = TestDb::create().await;
    let data = tempfile::tempdir().unwrap();
    let role = role_name();
    let mut env = production_env(&db);
    env.push(("Grafana__DatabaseUser", role.clone()));
    env.push(("Grafana__DatabasePassword", "a long enough password for grafana".into()));
    let portal = Portal::start(&[], &env, data.path());
    portal.wait_listening().await;
    let line = portal
        .wait_for_message("Read-only database role for Grafana is ready", std::time::Duration::from_secs(5))
        .await;
    assert_eq!(line["role"], role.as_str());
    assert!(!portal.raw_lines().join("\n").contains("a long enough password"), "the password is never logged");
    drop(portal);

    let own = crate::helpers::admin_options().get_username().to_string();
    let mut env = production_env(&db);
    env.push(("Grafana__DatabaseUser", own.clone()));
    env.push(("Grafana__DatabasePassword", "a long enough password for grafana".into()));
    let mut refused = Portal::start(&[], &env, data.path());
    assert_eq!(refused.wait_exit(std::time::Duration::from_secs(30)).await.code(), Some(2));
    let line = refused.wait_for_message("Invalid configuration", std::time::Duration::from_secs(5)).await;
    assert_eq!(line["key"], "Grafana__DatabaseUser");
}
