//! SQL of `identity."ApiKeys"` (the only module that touches it): the keys' hashes, their list
//! for Settings → API keys, and the counts the metrics export.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// The id and stored hash of the live (not revoked) key with this hash.
pub async fn live_key(db: impl PgExecutor<'_>, hash: &[u8; 32]) -> Result<Option<(Uuid, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(r#"SELECT "Id", "KeyHash" FROM identity."ApiKeys" WHERE "KeyHash" = $1 AND "RevokedAt" IS NULL"#)
        .bind(hash.as_slice())
        .fetch_optional(db)
        .await
}

pub async fn record_use(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE identity."ApiKeys" SET "LastUsedAt" = now() WHERE "Id" = $1"#).bind(id).execute(db).await?;
    Ok(())
}

/// A key as Settings → API keys lists it.
#[derive(sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Live keys first, newest first.
pub async fn keys(db: impl PgExecutor<'_>) -> Result<Vec<KeyRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "Name", "Prefix", "CreatedAt", "CreatedBy", "LastUsedAt", "RevokedAt"
           FROM identity."ApiKeys" ORDER BY "RevokedAt" IS NOT NULL, "CreatedAt" DESC"#,
    )
    .fetch_all(db)
    .await
}

pub struct NewKey<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub hash: &'a [u8; 32],
    pub created_by: &'a str,
}

pub async fn insert_key(db: impl PgExecutor<'_>, key: &NewKey<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(r#"INSERT INTO identity."ApiKeys" ("Name", "Prefix", "KeyHash", "CreatedBy") VALUES ($1, $2, $3, $4)"#)
        .bind(key.name)
        .bind(key.prefix)
        .bind(key.hash.as_slice())
        .bind(key.created_by)
        .execute(db)
        .await?;
    Ok(())
}

/// The revoked key's name; `None` when there is no live key with this id.
pub async fn revoke_key(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"UPDATE identity."ApiKeys" SET "RevokedAt" = now() WHERE "Id" = $1 AND "RevokedAt" IS NULL RETURNING "Name""#,
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// (active, revoked) keys.
pub async fn key_counts(db: impl PgExecutor<'_>) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        r#"SELECT count(*) FILTER (WHERE "RevokedAt" IS NULL), count(*) FILTER (WHERE "RevokedAt" IS NOT NULL)
           FROM identity."ApiKeys""#,
    )
    .fetch_one(db)
    .await
}
