//! SQL of the identity tables (`identity."Users"`, `identity."AuditLog"`); the only module that
//! writes them.

use sqlx::PgExecutor;
use uuid::Uuid;

pub async fn user_id_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<Uuid>, sqlx::Error> {
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
pub async fn insert_user_if_absent(db: impl PgExecutor<'_>, user: &NewUser<'_>) -> Result<Option<Uuid>, sqlx::Error> {
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

/// What sign-in needs of an account.
pub struct LoginRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub is_disabled: bool,
}

pub async fn user_for_login(db: impl PgExecutor<'_>, email: &str) -> Result<Option<LoginRow>, sqlx::Error> {
    let row: Option<(Uuid, String, String, bool)> = sqlx::query_as(
        r#"SELECT "Id", "Email", "PasswordHash", "IsDisabled" FROM identity."Users" WHERE lower("Email") = lower($1)"#,
    )
    .bind(email)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(id, email, password_hash, is_disabled)| LoginRow { id, email, password_hash, is_disabled }))
}

pub async fn password_hash(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users" WHERE "Id" = $1"#)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Stores a new hash of the same password (cost parameters changed); not a password change.
pub async fn replace_hash(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE identity."Users" SET "PasswordHash" = $2 WHERE "Id" = $1"#)
        .bind(id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_password(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query(r#"UPDATE identity."Users" SET "PasswordHash" = $2, "PasswordChangedAt" = now() WHERE "Id" = $1"#)
            .bind(id)
            .bind(hash)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn record_login(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE identity."Users" SET "LastLoginAt" = now() WHERE "Id" = $1"#).bind(id).execute(db).await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    #[sqlx(rename = "Id")]
    pub id: Uuid,
    #[sqlx(rename = "Email")]
    pub email: String,
    #[sqlx(rename = "DisplayName")]
    pub display_name: String,
    #[sqlx(rename = "IsAdmin")]
    pub is_admin: bool,
    #[sqlx(rename = "IsDisabled")]
    pub is_disabled: bool,
    #[sqlx(rename = "LastLoginAt")]
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
}

const USER_COLUMNS: &str = r#""Id", "Email", "DisplayName", "IsAdmin", "IsDisabled", "LastLoginAt""#;

pub async fn list_users(db: impl PgExecutor<'_>) -> Result<Vec<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT {USER_COLUMNS} FROM identity."Users" ORDER BY lower("Email")"#
    )))
    .fetch_all(db)
    .await
}

pub async fn user_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(r#"SELECT {USER_COLUMNS} FROM identity."Users" WHERE "Id" = $1"#)))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The user, locked for the rest of the transaction.
pub async fn user_for_update(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        r#"SELECT {USER_COLUMNS} FROM identity."Users" WHERE "Id" = $1 FOR UPDATE"#
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Ids of the enabled admins, locked, so two concurrent demotions cannot both pass the
/// last-admin check.
pub async fn active_admins_for_update(db: impl PgExecutor<'_>) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT "Id" FROM identity."Users" WHERE "IsAdmin" AND NOT "IsDisabled" ORDER BY "Id" FOR UPDATE"#,
    )
    .fetch_all(db)
    .await
}

pub async fn set_flags(
    db: impl PgExecutor<'_>,
    id: Uuid,
    is_admin: bool,
    is_disabled: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE identity."Users" SET "IsAdmin" = $2, "IsDisabled" = $3 WHERE "Id" = $1"#)
        .bind(id)
        .bind(is_admin)
        .bind(is_disabled)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn delete_user(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(r#"DELETE FROM identity."Users" WHERE "Id" = $1"#).bind(id).execute(db).await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct AuditRow {
    #[sqlx(rename = "Id")]
    pub id: i64,
    #[sqlx(rename = "At")]
    pub at: chrono::DateTime<chrono::Utc>,
    #[sqlx(rename = "ActorEmail")]
    pub actor_email: String,
    #[sqlx(rename = "Action")]
    pub action: String,
    #[sqlx(rename = "Target")]
    pub target: Option<String>,
    #[sqlx(rename = "Detail")]
    pub detail: serde_json::Value,
    #[sqlx(rename = "IpAddress")]
    pub ip_address: Option<String>,
}

/// Newest first, `limit` entries older than `before` (an id) when given.
pub async fn audit_page(
    db: impl PgExecutor<'_>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "At", "ActorEmail", "Action", "Target", "Detail", "IpAddress" FROM identity."AuditLog"
           WHERE $1::bigint IS NULL OR "Id" < $1 ORDER BY "Id" DESC LIMIT $2"#,
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}
