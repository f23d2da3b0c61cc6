//! SQL of the broker's tables (`mqtt_users`, `mqtt_acls`, as seed 002 defines them) and of
//! `monitoring."MqttCredentials"`, which ties a broker account to its device. The only module
//! that writes them.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::change::Change;
use crate::db::reader::ReaderRoleError;

/// mosquitto-go-auth's access bits, as its ACL query `(access & $2) != 0` tests them: the broker
/// asks with 1 (read: a message is delivered to the client), 2 (write: the client publishes) or
/// 4 (subscribe: the client asks for a subscription).
pub const READ: i32 = 1;
pub const WRITE: i32 = 2;
pub const SUBSCRIBE: i32 = 4;
/// `sensor/<externalId>/#`: read and write (3). The device publishes its readings here.
pub const SENSOR_ACCESS: i32 = READ | WRITE;
/// `command/<externalId>/#`: read and subscribe (5). The seed's example grants 1 ("read only"),
/// which go-auth checks only when a message is delivered: the SUBSCRIBE itself (asked with 4)
/// would be refused, so the device could never receive a command.
pub const COMMAND_ACCESS: i32 = READ | SUBSCRIBE;

/// The ACL topics of a device.
pub fn acl_topics(external_id: &str) -> [(String, i32); 2] {
    [(format!("sensor/{external_id}/#"), SENSOR_ACCESS), (format!("command/{external_id}/#"), COMMAND_ACCESS)]
}

/// bcrypt, `$2a$` with cost 10 (the seed's hasher settings); off the async threads.
pub async fn bcrypt_hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        bcrypt::hash_with_result(password, 10).map(|h| h.format_for_version(bcrypt::Version::TwoA))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    #[sqlx(rename = "Username")]
    pub username: String,
    #[sqlx(rename = "CreatedAt")]
    pub created_at: DateTime<Utc>,
    #[sqlx(rename = "CreatedBy")]
    pub created_by: String,
    #[sqlx(rename = "RotatedAt")]
    pub rotated_at: Option<DateTime<Utc>>,
}

pub async fn credentials(db: impl PgExecutor<'_>, device_id: i32) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Username", "CreatedAt", "CreatedBy", "RotatedAt" FROM monitoring."MqttCredentials" WHERE "DeviceId" = $1"#,
    )
    .bind(device_id)
    .fetch_optional(db)
    .await
}

/// What [`issue`] did.
pub enum Issued {
    Created(String),
    Rotated(String),
    /// The broker already has an account of that name that is not this device's.
    Taken(String),
}

/// Gives the device broker credentials with `hash` (a new account named after its externalId,
/// or a new password for the one it has) and its two ACLs, in `change`.
pub async fn issue(
    change: &mut Change,
    device_id: i32,
    external_id: &str,
    hash: &str,
    by: &str,
) -> Result<Issued, sqlx::Error> {
    let existing: Option<String> =
        sqlx::query_scalar(r#"SELECT "Username" FROM monitoring."MqttCredentials" WHERE "DeviceId" = $1 FOR UPDATE"#)
            .bind(device_id)
            .fetch_optional(change.db())
            .await?;
    let issued = match existing {
        Some(username) => {
            sqlx::query("UPDATE mqtt_users SET password_hash = $2, is_active = true WHERE username = $1")
                .bind(&username)
                .bind(hash)
                .execute(change.db())
                .await?;
            sqlx::query(r#"UPDATE monitoring."MqttCredentials" SET "RotatedAt" = now() WHERE "DeviceId" = $1"#)
                .bind(device_id)
                .execute(change.db())
                .await?;
            Issued::Rotated(username)
        }
        None => {
            let inserted = sqlx::query(
                "INSERT INTO mqtt_users (username, password_hash, is_active, is_superuser) VALUES ($1, $2, true, false) \
                 ON CONFLICT (username) DO NOTHING",
            )
            .bind(external_id)
            .bind(hash)
            .execute(change.db())
            .await?;
            if inserted.rows_affected() == 0 {
                return Ok(Issued::Taken(external_id.to_string()));
            }
            sqlx::query(
                r#"INSERT INTO monitoring."MqttCredentials" ("DeviceId", "Username", "CreatedBy") VALUES ($1, $2, $3)"#,
            )
            .bind(device_id)
            .bind(external_id)
            .bind(by)
            .execute(change.db())
            .await?;
            Issued::Created(external_id.to_string())
        }
    };
    let username = match &issued {
        Issued::Created(u) | Issued::Rotated(u) | Issued::Taken(u) => u.clone(),
    };
    sqlx::query("DELETE FROM mqtt_acls WHERE username = $1").bind(&username).execute(change.db()).await?;
    for (topic, access) in acl_topics(external_id) {
        sqlx::query("INSERT INTO mqtt_acls (username, topic, access) VALUES ($1, $2, $3)")
            .bind(&username)
            .bind(topic)
            .bind(access)
            .execute(change.db())
            .await?;
    }
    Ok(issued)
}

/// Removes the device's broker account and ACLs (the delete trigger takes them); its username,
/// `None` when it had none.
pub async fn revoke(change: &mut Change, device_id: i32) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"DELETE FROM monitoring."MqttCredentials" WHERE "DeviceId" = $1 RETURNING "Username""#)
        .bind(device_id)
        .fetch_optional(change.db())
        .await
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerSetupError {
    #[error(
        "Mqtt__Username {0:?} is the MQTT username of device {1:?}: the portal's own broker account needs a name of \
         its own"
    )]
    UsernameTaken(String, String),
    #[error("cannot hash Mqtt__Password: {0}")]
    Hash(String),
    #[error("cannot write the portal's broker account into mqtt_users")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Role(#[from] ReaderRoleError),
}

/// Writes the portal's own account as a superuser with `password` (bcrypt), at every start.
pub async fn ensure_superuser(db: &PgPool, username: &str, password: &str) -> Result<(), BrokerSetupError> {
    let device: Option<String> = sqlx::query_scalar(
        r#"SELECT d."ExternalId" FROM monitoring."MqttCredentials" c JOIN monitoring."Devices" d ON d."Id" = c."DeviceId"
           WHERE c."Username" = $1"#,
    )
    .bind(username)
    .fetch_optional(db)
    .await?;
    if let Some(device) = device {
        return Err(BrokerSetupError::UsernameTaken(username.into(), device));
    }
    let hash = bcrypt_hash(password.to_string()).await.map_err(BrokerSetupError::Hash)?;
    sqlx::query(
        "INSERT INTO mqtt_users (username, password_hash, is_active, is_superuser) VALUES ($1, $2, true, true) \
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, is_active = true, is_superuser = true",
    )
    .bind(username)
    .bind(hash)
    .execute(db)
    .await?;
    Ok(())
}

/// How many devices have broker credentials.
pub async fn credential_count(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."MqttCredentials""#).fetch_one(db).await
}

/// The tables the broker's auth plugin reads.
const BROKER_TABLES: [&str; 2] = ["mqtt_users", "mqtt_acls"];

/// Creates or updates the broker's role: it may read `mqtt_users` and `mqtt_acls` (the seed's
/// three queries) and nothing else. The broker listens to the outside world; its login must not
/// open the portal's data.
pub async fn ensure_broker_role(db: &PgPool, role: &str, password: &str) -> Result<(), ReaderRoleError> {
    let grants = r#"SELECT unnest(ARRAY[format('GRANT USAGE ON SCHEMA public TO %I', $1::text)] || ARRAY(
            SELECT format('GRANT SELECT ON TABLE public.%I TO %I', t, $1::text) FROM unnest($2::text[]) AS t
        ))"#;
    let purpose = ("the MQTT broker", "Mqtt__BrokerDatabasePassword");
    crate::db::reader::ensure_read_only_role(db, role, password, purpose, grants, &BROKER_TABLES).await?;
    tracing::info!(role, "Read-only database role for the MQTT broker is ready");
    Ok(())
}
