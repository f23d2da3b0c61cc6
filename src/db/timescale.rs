//! The TimescaleDB bootstrapper: turns `monitoring."PowerMeasurements"` into a compressed
//! hypertable when the server has the extension, or leaves it a plain table with a BRIN index on
//! `"Time"` when it does not. Idempotent: running it twice, or on a restored dump, changes
//! nothing. Timescale statements cannot run inside a transaction block, so each runs on its own,
//! on one dedicated session that holds an advisory lock (two portals starting against the same
//! database must not race).

use sqlx::{Connection, PgConnection, PgPool};

/// Arbitrary, fixed: the advisory-lock key of this bootstrapper ("tau-ts" in ASCII).
const LOCK_KEY: i64 = 0x7461_752d_7473;

const READY: &str = "TimescaleDB hypertable for monitoring.PowerMeasurements is ready";

/// Chunks of a week keep ~1 M rows per chunk at 100 devices × 1 reading/min.
const CHUNK_INTERVAL: &str = "7 days";
/// Chunks older than this are compressed; recent ones stay row-oriented for fast inserts.
const COMPRESS_AFTER: &str = "7 days";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Hypertable { extension_version: String },
    PlainTable { reason: String },
}

/// Runs `run` on a dedicated session holding the bootstrappers' advisory lock (Timescale
/// statements cannot run in a transaction block, so a transaction cannot serialise them).
pub async fn under_lock<T>(
    pool: &PgPool,
    run: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(LOCK_KEY).execute(&mut conn).await?;
    let outcome = run(&mut conn).await;
    // On error the session is closed below, which releases the lock as well.
    if outcome.is_ok() {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut conn).await?;
    }
    conn.close().await.ok();
    outcome
}

pub async fn bootstrap(pool: &PgPool) -> Result<Outcome, sqlx::Error> {
    let outcome = under_lock(pool, async |conn| run_locked(conn).await).await?;
    match &outcome {
        Outcome::Hypertable { extension_version } => tracing::info!(extension_version, "{READY}"),
        Outcome::PlainTable { reason } => tracing::warn!(
            "TimescaleDB is not in use ({reason}): monitoring.PowerMeasurements stays a plain PostgreSQL \
             table with a BRIN index on \"Time\". Everything works; chunking and compression are not \
             available. Use the timescale/timescaledb image to get them."
        ),
    }
    Ok(outcome)
}

async fn run_locked(conn: &mut PgConnection) -> Result<Outcome, sqlx::Error> {
    let version = match enable_extension(conn).await? {
        Ok(version) => version,
        Err(reason) => {
            sqlx::query(
                r#"CREATE INDEX IF NOT EXISTS "IX_PowerMeasurements_Time_brin"
                   ON monitoring."PowerMeasurements" USING brin ("Time")"#,
            )
            .execute(&mut *conn)
            .await?;
            return Ok(Outcome::PlainTable { reason });
        }
    };

    let (is_hypertable, compression_enabled): (bool, bool) = sqlx::query_as(
        "SELECT count(*) > 0, coalesce(bool_or(compression_enabled), false)
         FROM timescaledb_information.hypertables
         WHERE hypertable_schema = 'monitoring' AND hypertable_name = 'PowerMeasurements'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !is_hypertable {
        // migrate_data: a table that already holds rows (a plain install later moved to the
        // Timescale image) is converted in place.
        sqlx::query(
            r#"SELECT create_hypertable('monitoring."PowerMeasurements"', 'Time',
                   chunk_time_interval => $1::interval, if_not_exists => TRUE, migrate_data => TRUE)"#,
        )
        .bind(CHUNK_INTERVAL)
        .execute(&mut *conn)
        .await?;
    }
    if !compression_enabled {
        // Re-running this ALTER on a hypertable with compressed chunks fails, hence the check.
        sqlx::query(
            r#"ALTER TABLE monitoring."PowerMeasurements" SET (timescaledb.compress,
                   timescaledb.compress_segmentby = '"DeviceId"', timescaledb.compress_orderby = '"Time" DESC')"#,
        )
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        r#"SELECT add_compression_policy('monitoring."PowerMeasurements"', $1::interval, if_not_exists => TRUE)"#,
    )
    .bind(COMPRESS_AFTER)
    .execute(&mut *conn)
    .await?;
    Ok(Outcome::Hypertable { extension_version: version })
}

/// `Ok(Ok(version))` when TimescaleDB is (now) installed in this database, `Ok(Err(reason))`
/// when it cannot be used here, `Err` on a database error.
async fn enable_extension(conn: &mut PgConnection) -> Result<Result<String, String>, sqlx::Error> {
    let installed: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(version) = installed {
        return Ok(Ok(version));
    }
    let available: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')")
            .fetch_one(&mut *conn)
            .await?;
    if !available {
        return Ok(Err("the timescaledb extension is not installed on this PostgreSQL server".into()));
    }
    // Available but possibly not preloaded, or our role may not create extensions: either way
    // the server says why, and the portal still works on plain tables.
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS timescaledb").execute(&mut *conn).await {
        return match e {
            sqlx::Error::Database(db) => {
                Ok(Err(format!("the timescaledb extension could not be enabled: {}", db.message())))
            }
            other => Err(other),
        };
    }
    let version = sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(version))
}
