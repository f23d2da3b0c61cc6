//! The read-only database role Grafana's data source logs in as.
//!
//! Grafana's free edition lets every user query every data source with any SQL, and a Viewer's
//! `POST /grafana/api/ds/query` passes the forwardAuth gate like any other Grafana request. With
//! the portal's own login (the database owner, a superuser in the TimescaleDB image) that is an
//! `UPDATE identity."Users"` away from taking over the portal. So Grafana gets a role of its own,
//! managed here at every startup (after the migrations and the bootstrapper): it may connect and
//! read the measurement schema (`monitoring`), nothing in `identity` (users, sessions, API keys,
//! the audit log) or `portal` (branding, tariffs), and write nothing: no table privilege beyond
//! SELECT, no CREATE on any schema, and every transaction read-only. Its password is set from
//! `Grafana__DatabasePassword` each time, so rotating it is changing the secret and restarting.

use sqlx::PgPool;

/// The schemas whose tables (present and future) Grafana may read.
pub const READABLE_SCHEMAS: &[&str] = &["monitoring"];

#[derive(Debug, thiserror::Error)]
pub enum ReaderRoleError {
    #[error(
        "cannot manage the read-only database role {role:?} for Grafana ({source}); the portal's database user \
         needs CREATEROLE, or create the role yourself (see README, Grafana) and unset Grafana__DatabasePassword"
    )]
    Database {
        role: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Creates or updates `role` with `password`, read-only on [`READABLE_SCHEMAS`]. Idempotent.
pub async fn ensure(db: &PgPool, role: &str, password: &str) -> Result<(), ReaderRoleError> {
    let failed = |source| ReaderRoleError::Database { role: role.to_string(), source };
    let mut tx = db.begin().await.map_err(failed)?;
    // Quoting by the server (format's %I and %L): the role name and the password are data.
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
    let mut statements: Vec<String> = Vec::new();
    let verb = if exists { "ALTER" } else { "CREATE" };
    statements.push(
        sqlx::query_scalar(
            "SELECT format('%s ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
             INHERIT CONNECTION LIMIT 20 PASSWORD %L', $1::text, $2::text, $3::text)",
        )
        .bind(verb)
        .bind(role)
        .bind(password)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?,
    );
    let grants: Vec<String> = sqlx::query_scalar(
        // CONNECT on the database: PUBLIC has it by default.
        r#"SELECT unnest(ARRAY[
               format('ALTER ROLE %I SET default_transaction_read_only = on', $1::text)
           ] || ARRAY(
               SELECT unnest(ARRAY[
                   format('GRANT USAGE ON SCHEMA %I TO %I', s, $1::text),
                   format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, $1::text),
                   format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, $1::text),
                   format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', s, $1::text)
               ])
               FROM unnest($2::text[]) AS s WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)
           ))"#,
    )
    .bind(role)
    .bind(READABLE_SCHEMAS)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    statements.extend(grants);
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.map_err(failed)?;
    }
    tx.commit().await.map_err(failed)?;
    tracing::info!(role, "Read-only database role for Grafana is ready");
    Ok(())
}
