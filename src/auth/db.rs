//! SQL of the identity tables (`identity."Users"`, `identity."AuditLog"`); the only module that
//! writes them.

use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn user_id_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT "Id" FROM identity."Users" WHERE lower("Email") = lower($1)"#)
        .bind(email)
        .fetch_optional(db)
        .await
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
}

/// Inserts unless an account with that email (case-insensitively) exists; `None` then.
pub async fn insert_user_if_absent(
    db: impl PgExecutor<'_>,
    user: &NewUser<'_>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO identity."Users" ("Email", "DisplayName", "PasswordHash", "IsAdmin")
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (lower("Email")) DO NOTHING
           RETURNING "Id""#,
    )
    .bind(user.email)
    .bind(user.display_name)
    .bind(user.password_hash)
    .bind(user.is_admin)
    .fetch_optional(db)
    .await
}

pub struct AuditEntry<'a> {
    pub actor_user_id: Option<Uuid>,
    pub actor_email: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub detail: serde_json::Value,
    pub ip_address: Option<&'a str>,
}

pub async fn audit(db: impl PgExecutor<'_>, entry: &AuditEntry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO identity."AuditLog" ("ActorUserId", "ActorEmail", "Action", "Target", "Detail", "IpAddress")
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(entry.actor_user_id)
    .bind(entry.actor_email)
    .bind(entry.action)
    .bind(entry.target)
    .bind(&entry.detail)
    .bind(entry.ip_address)
    .execute(db)
    .await?;
    Ok(())
}
