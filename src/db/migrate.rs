//! Applies pending migrations one by one, logging `Applied migration '<name>'` for each, so that
//! an operator sees exactly what an upgrade changed and, on failure, which migration broke.
//!
//! This is sqlx's `Migrator::run` loop written out (same table, lock and checksums, so the
//! `sqlx` CLI stays compatible) because `run` reports neither what it applied nor, on every
//! failure path, which migration failed.

use std::collections::HashMap;

use sqlx::migrate::{Migrate, MigrateError, Migration, Migrator};
use sqlx::{PgConnection, PgPool};

/// The schema, embedded in the binary at build time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("Migration '{name}' (version {version}) failed: {source}")]
    Failed { name: String, version: i64, source: MigrateError },
    #[error(
        "Migration '{name}' (version {version}) was changed after it was applied (checksum mismatch); \
         migrations are append-only: restore the original file and add a new migration"
    )]
    Edited { name: String, version: i64 },
    #[error(
        "The database has migration version {version} applied, which this build does not know: \
         it was written by a newer version of the portal; run that version or restore a backup"
    )]
    Unknown { version: i64 },
    #[error(
        "Migration version {version} is marked partially applied (dirty); fix it by hand and remove its row from _sqlx_migrations"
    )]
    Dirty { version: i64 },
    #[error("Could not run migrations: {0}")]
    Other(#[from] MigrateError),
    #[error("Could not run migrations: {0}")]
    Database(#[from] sqlx::Error),
}

/// Applies what is pending and returns the names applied, in order.
pub async fn run(pool: &PgPool, migrator: &Migrator) -> Result<Vec<String>, MigrationError> {
    // A dedicated session: the migration lock is a session-level advisory lock, and a failed run
    // must not hand a connection still holding it back to the pool. Dropping it closes it.
    let mut conn = pool.acquire().await?.detach();
    let applied = apply_pending(&mut conn, migrator).await?;
    conn.unlock().await?;
    Ok(applied)
}

async fn apply_pending(conn: &mut PgConnection, migrator: &Migrator) -> Result<Vec<String>, MigrationError> {
    let table = &migrator.table_name;
    conn.lock().await?;
    conn.ensure_migrations_table(table).await?;
    if let Some(version) = conn.dirty_version(table).await? {
        return Err(MigrationError::Dirty { version });
    }
    let applied: HashMap<i64, Vec<u8>> =
        conn.list_applied_migrations(table).await?.into_iter().map(|m| (m.version, m.checksum.into_owned())).collect();
    let known = |v: i64| migrator.iter().any(|m| m.version == v && !m.migration_type.is_down_migration());
    if let Some(version) = applied.keys().copied().filter(|v| !known(*v)).min() {
        return Err(MigrationError::Unknown { version });
    }

    let mut newly_applied = Vec::new();
    for migration in migrator.iter().filter(|m| !m.migration_type.is_down_migration()) {
        let name = name_of(migration);
        match applied.get(&migration.version) {
            Some(checksum) if checksum.as_slice() != &*migration.checksum => {
                return Err(MigrationError::Edited { name, version: migration.version });
            }
            Some(_) => {}
            None => {
                conn.apply(table, migration).await.map_err(|source| MigrationError::Failed {
                    name: name.clone(),
                    version: migration.version,
                    source,
                })?;
                tracing::info!(version = migration.version, "Applied migration '{name}'");
                newly_applied.push(name);
            }
        }
    }
    Ok(newly_applied)
}

/// The migration's name as the runbook expects it: the file name after the version
/// (`20260101000000_InitialCreate.sql` → `InitialCreate`).
fn name_of(migration: &Migration) -> String {
    migration.description.replace(' ', "_")
}
