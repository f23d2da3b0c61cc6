//! SQL of `identity."Users"`; the only module that writes it. Writes that change what a cached
//! session says about its user (role, status, deletion) take the [`Change`] and note it.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::change::{Cache, Change};

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
#[sqlx(rename_all = "PascalCase")]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub is_disabled: bool,
    pub last_login_at: Option<chrono::DateTime<chrono::Utc>>,
}

const USER_COLUMNS: &str = r#""Id", "Email", "DisplayName", "IsAdmin", "IsDisabled", "LastLoginAt""#;

/// (is admin, is disabled, accounts) per combination that has any, for the metrics.
pub async fn user_counts(db: impl PgExecutor<'_>) -> Result<Vec<(bool, bool, i64)>, sqlx::Error> {
    sqlx::query_as(r#"SELECT "IsAdmin", "IsDisabled", count(*) FROM identity."Users" GROUP BY 1, 2"#)
        .fetch_all(db)
        .await
}

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

/// Sets the role and status; the user's cached sessions still carry the old ones.
pub async fn set_flags(change: &mut Change, id: Uuid, is_admin: bool, is_disabled: bool) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE identity."Users" SET "IsAdmin" = $2, "IsDisabled" = $3 WHERE "Id" = $1"#)
        .bind(id)
        .bind(is_admin)
        .bind(is_disabled)
        .execute(change.db())
        .await?;
    change.stale(Cache::SessionsOf(id));
    Ok(())
}

/// Deletes the user; the foreign key takes the sessions with it, the cache must forget them too.
pub async fn delete_user(change: &mut Change, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(r#"DELETE FROM identity."Users" WHERE "Id" = $1"#).bind(id).execute(change.db()).await?;
    change.stale(Cache::SessionsOf(id));
    Ok(())
}
