//! The audit log (`identity."AuditLog"`, the only module that touches it): who did what to
//! which target, from where. A row is written in the transaction of the change it records
//! ([`crate::change`]), so it commits with the change or not at all; Settings → Audit log reads
//! it back.

use std::net::IpAddr;

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Who makes a change, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Actor {
    user_id: Option<Uuid>,
    email: String,
    ip: Option<String>,
}

impl Actor {
    /// A signed-in user.
    pub fn user(user_id: Uuid, email: &str, ip: Option<IpAddr>) -> Actor {
        Actor { user_id: Some(user_id), email: email.to_string(), ip: ip.map(|ip| ip.to_string()) }
    }

    /// Someone without a session yet (a sign-in attempt), by the email they gave.
    pub fn anonymous(email: &str, ip: Option<IpAddr>) -> Actor {
        Actor { user_id: None, email: email.to_string(), ip: ip.map(|ip| ip.to_string()) }
    }

    /// The portal itself (first-start seeding).
    pub fn system() -> Actor {
        Actor { user_id: None, email: "system".into(), ip: None }
    }
}

/// Writes one audit row for `actor` in the transaction `tx`.
pub async fn write(
    tx: &mut PgConnection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO identity."AuditLog" ("ActorUserId", "ActorEmail", "Action", "Target", "Detail", "IpAddress")
           VALUES ($1, $2, $3, $4, $5, $6)"#,
    )
    .bind(actor.user_id)
    .bind(&actor.email)
    .bind(action)
    .bind(target)
    .bind(&detail)
    .bind(actor.ip.as_deref())
    .execute(tx)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct AuditRow {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor_email: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: serde_json::Value,
    pub ip_address: Option<String>,
}

/// Newest first, `limit` entries older than `before` (an id) when given.
pub async fn page(db: impl PgExecutor<'_>, before: Option<i64>, limit: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "At", "ActorEmail", "Action", "Target", "Detail", "IpAddress" FROM identity."AuditLog"
           WHERE $1::bigint IS NULL OR "Id" < $1 ORDER BY "Id" DESC LIMIT $2"#,
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}
