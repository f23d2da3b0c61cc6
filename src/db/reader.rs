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
        "cannot manage the read-only database role {role:?} for {purpose} ({source}); the portal's database user \
         needs CREATEROLE, or create the role yourself (see README, {purpose}) and unset {password_key}"
    )]
    Database {
        role: String,
        purpose: &'static str,
        password_key: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// Who a managed role is for, for the error message: (purpose, the key of its password).
pub type RolePurpose = (&'static str, &'static str);
const GRAFANA: RolePurpose = ("Grafana", "Grafana__DatabasePassword");

/// Creates or updates `role` with `password`, read-only on [`READABLE_SCHEMAS`]. Idempotent.
pub async fn ensure(db: &PgPool, role: &str, password: &str) -> Result<(), ReaderRoleError> {
    // CONNECT on the database: PUBLIC has it by default.
    let grants = r#"SELECT unnest(ARRAY(
            SELECT unnest(ARRAY[
                format('GRANT USAGE ON SCHEMA %I TO %I', s, $1::text),
                format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, $1::text),
                format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s, $1::text),
                format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', s, $1::text)
            ])
            FROM unnest($2::text[]) AS s WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s)
        ))"#;
    ensure_read_only_role(db, role, password, GRAFANA, grants, READABLE_SCHEMAS).await?;
    tracing::info!(role, "Read-only database role for Grafana is ready");
    Ok(())
}

/// Creates or updates the login `role` with `password`: no privilege of its own, every
/// transaction read-only, and the grants that `grants` (a query with the role as `$1` and
/// `names` as `$2`) builds with `format`'s `%I` quoting. Idempotent.
pub async fn ensure_read_only_role(
    db: &PgPool,
    role: &str,
    password: &str,
    purpose: RolePurpose,
    grants: &'static str,
    names: &[&str],
) -> Result<(), ReaderRoleError> {
    let failed = |source| ReaderRoleError::Database {
        role: role.to_string(),
        purpose: purpose.0,
        password_key: purpose.1,
        source,
    };
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
    statements.push(
        sqlx::query_scalar("SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', $1::text)")
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?,
    );
    let granted: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(grants))
        .bind(role)
        .bind(names)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
    statements.extend(granted);
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut *tx).await.map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}
