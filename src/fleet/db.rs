//! The customer registry's SQL (Admin mode): fleet."Customers" and what the pages show of
//! each customer's sites, devices, rows and ingest events.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::auth::tokens::NewToken;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Customer {
    #[sqlx(rename = "Id")]
    pub id: Uuid,
    #[sqlx(rename = "Code")]
    pub code: String,
    #[sqlx(rename = "Name")]
    pub name: String,
    #[sqlx(rename = "Active")]
    pub active: bool,
    #[sqlx(rename = "TokenPrefix")]
    pub token_prefix: String,
    #[sqlx(rename = "TokenRotatedAt")]
    pub token_rotated_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "CreatedAt")]
    pub created_at: DateTime<Utc>,
    #[sqlx(rename = "LastPushAt")]
    pub last_push_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "LastReadingAt")]
    pub last_reading_at: Option<DateTime<Utc>>,
    #[sqlx(rename = "LastError")]
    pub last_error: Option<String>,
    #[sqlx(rename = "LastErrorAt")]
    pub last_error_at: Option<DateTime<Utc>>,
    pub sites: i64,
    pub devices: i64,
    pub rows_24h: i64,
}

const SELECT_CUSTOMERS: &str = r#"SELECT c."Id", c."Code", c."Name", c."Active", c."TokenPrefix", c."TokenRotatedAt",
        c."CreatedAt", c."LastPushAt", c."LastReadingAt", c."LastError", c."LastErrorAt",
        (SELECT count(*) FROM fleet."Sites" s WHERE s."CustomerId" = c."Id") AS sites,
        (SELECT count(*) FROM fleet."Devices" d WHERE d."CustomerId" = c."Id") AS devices,
        (SELECT coalesce(sum(e."RowsAccepted"), 0)::int8 FROM fleet."IngestEvents" e
         WHERE e."CustomerId" = c."Id" AND e."BatchType" = 'measurements' AND e."Status" = 200
           AND e."ReceivedAt" > now() - interval '24 hours') AS rows_24h
    FROM fleet."Customers" c"#;

pub async fn customers(db: &PgPool) -> Result<Vec<Customer>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(r#"{SELECT_CUSTOMERS} ORDER BY c."Code""#))).fetch_all(db).await
}

pub async fn customer(db: &PgPool, id: Uuid) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(r#"{SELECT_CUSTOMERS} WHERE c."Id" = $1"#)))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The unique constraint on the customer code (a taken code is a field error).
pub const CODE_UNIQUE: &str = "Customers_Code_key";

/// Registers a customer; its id.
pub async fn register(
    db: impl PgExecutor<'_>,
    code: &str,
    name: &str,
    token: &NewToken,
    by: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO fleet."Customers" ("Code", "Name", "TokenHash", "TokenPrefix", "CreatedBy")
           VALUES ($1, $2, $3, $4, $5) RETURNING "Id""#,
    )
    .bind(code)
    .bind(name)
    .bind(token.hash.as_slice())
    .bind(&token.prefix)
    .bind(by)
    .fetch_one(db)
    .await
}

/// Replaces the token; the old one is refused from this commit on. The customer's code.
pub async fn rotate(db: impl PgExecutor<'_>, id: Uuid, token: &NewToken) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        r#"UPDATE fleet."Customers" SET "PreviousTokenHash" = "TokenHash", "TokenHash" = $2, "TokenPrefix" = $3,
               "TokenRotatedAt" = now()
           WHERE "Id" = $1 RETURNING "Code""#,
    )
    .bind(id)
    .bind(token.hash.as_slice())
    .bind(&token.prefix)
    .fetch_optional(db)
    .await
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    name: &str,
    active: bool,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"UPDATE fleet."Customers" SET "Name" = $2, "Active" = $3 WHERE "Id" = $1 RETURNING "Code""#)
        .bind(id)
        .bind(name)
        .bind(active)
        .fetch_optional(db)
        .await
}

/// What deleting a customer takes with it, for the confirmation page.
pub async fn measurement_rows(db: &PgPool, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM fleet."PowerMeasurements" WHERE "CustomerId" = $1"#)
        .bind(id)
        .fetch_one(db)
        .await
}

pub async fn event_count(db: &PgPool, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM fleet."IngestEvents" WHERE "CustomerId" = $1"#)
        .bind(id)
        .fetch_one(db)
        .await
}

/// Deletes the customer; the foreign keys cascade to its sites, devices, measurements, events.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"DELETE FROM fleet."Customers" WHERE "Id" = $1 RETURNING "Code""#)
        .bind(id)
        .fetch_optional(db)
        .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct Event {
    #[sqlx(rename = "BatchId")]
    pub batch_id: Option<Uuid>,
    #[sqlx(rename = "BatchType")]
    pub batch_type: String,
    #[sqlx(rename = "RowsAccepted")]
    pub accepted: i32,
    #[sqlx(rename = "RowsDuplicate")]
    pub duplicates: i32,
    #[sqlx(rename = "RowsRejected")]
    pub rejected: i32,
    #[sqlx(rename = "Status")]
    pub status: i32,
    #[sqlx(rename = "Error")]
    pub error: Option<String>,
    #[sqlx(rename = "ReceivedAt")]
    pub received_at: DateTime<Utc>,
}

pub async fn recent_events(db: &PgPool, id: Uuid, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "BatchId", "BatchType", "RowsAccepted", "RowsDuplicate", "RowsRejected", "Status", "Error", "ReceivedAt"
           FROM fleet."IngestEvents" WHERE "CustomerId" = $1 ORDER BY "ReceivedAt" DESC, "Id" DESC LIMIT $2"#,
    )
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await
}
