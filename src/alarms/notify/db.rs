//! SQL of `alarms."RecipientLists"`, `alarms."Outbox"` and `alarms."Deliveries"`.

use chrono::{DateTime, NaiveTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::change::Change;

pub const LIST_NAME_UNIQUE: &str = "UX_RecipientLists_Name";

/// The severities, most urgent first, as SQL compares them.
const SEVERITY_ORDER: &str = "ARRAY['critical','major','minor','warning']";

#[derive(Debug, Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct ListRow {
    pub id: i32,
    pub name: String,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    pub min_severity: String,
    pub quiet_from: Option<NaiveTime>,
    pub quiet_until: Option<NaiveTime>,
    pub time_zone: String,
    pub enabled: bool,
}

pub struct ListFields<'a> {
    pub name: &'a str,
    pub emails: &'a [String],
    pub webhook_url: Option<&'a str>,
    pub min_severity: &'a str,
    pub quiet_from: Option<NaiveTime>,
    pub quiet_until: Option<NaiveTime>,
    pub time_zone: &'a str,
    pub enabled: bool,
}

const LIST_COLUMNS: &str = r#""Id", "Name", "Emails", "WebhookUrl", "WebhookSecret", "MinSeverity", "QuietFrom",
    "QuietUntil", "TimeZone", "Enabled""#;

pub async fn lists(db: impl PgExecutor<'_>) -> Result<Vec<ListRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {LIST_COLUMNS} FROM alarms."RecipientLists" ORDER BY lower("Name")"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await
}

pub async fn list(db: impl PgExecutor<'_>, id: i32) -> Result<Option<ListRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {LIST_COLUMNS} FROM alarms."RecipientLists" WHERE "Id" = $1"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await
}

pub async fn insert_list(change: &mut Change, l: &ListFields<'_>, secret: &str) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        r#"INSERT INTO alarms."RecipientLists" ("Name", "Emails", "WebhookUrl", "MinSeverity", "QuietFrom",
               "QuietUntil", "TimeZone", "Enabled", "WebhookSecret")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING "Id""#,
    )
    .bind(l.name)
    .bind(l.emails)
    .bind(l.webhook_url)
    .bind(l.min_severity)
    .bind(l.quiet_from)
    .bind(l.quiet_until)
    .bind(l.time_zone)
    .bind(l.enabled)
    .bind(secret)
    .fetch_one(change.db())
    .await
}

/// False when the list does not exist.
pub async fn update_list(change: &mut Change, id: i32, l: &ListFields<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        r#"UPDATE alarms."RecipientLists" SET "Name" = $1, "Emails" = $2, "WebhookUrl" = $3, "MinSeverity" = $4,
               "QuietFrom" = $5, "QuietUntil" = $6, "TimeZone" = $7, "Enabled" = $8
           WHERE "Id" = $9"#,
    )
    .bind(l.name)
    .bind(l.emails)
    .bind(l.webhook_url)
    .bind(l.min_severity)
    .bind(l.quiet_from)
    .bind(l.quiet_until)
    .bind(l.time_zone)
    .bind(l.enabled)
    .bind(id)
    .execute(change.db())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The deleted list's name (its waiting events go with it; its deliveries stay, by name).
pub async fn delete_list(change: &mut Change, id: i32) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(r#"DELETE FROM alarms."RecipientLists" WHERE "Id" = $1 RETURNING "Name""#)
        .bind(id)
        .fetch_optional(change.db())
        .await
}

/// Queues an alarm event for every enabled list that hears about the alarms' severity, in the
/// transaction that raised or ended them.
pub async fn queue(
    tx: &mut PgConnection,
    alarm_ids: &[i64],
    event: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let events: Vec<(i64, DateTime<Utc>)> = alarm_ids.iter().map(|&id| (id, at)).collect();
    queue_each(tx, &events, event).await
}

/// [`queue`] for alarms each with its own time (a cycle's raises and ends, in one statement).
pub async fn queue_each(
    tx: &mut PgConnection,
    alarms: &[(i64, DateTime<Utc>)],
    event: &str,
) -> Result<(), sqlx::Error> {
    if alarms.is_empty() {
        return Ok(());
    }
    let sql = format!(
        r#"INSERT INTO alarms."Outbox" ("ListId", "AlarmId", "Event", "At")
           SELECT l."Id", a."Id", $2, e.at
           FROM UNNEST($1::int8[], $3::timestamptz[]) AS e(id, at)
           JOIN alarms."Alarms" a ON a."Id" = e.id CROSS JOIN alarms."RecipientLists" l
           WHERE l."Enabled"
             AND array_position({SEVERITY_ORDER}, a."Severity") <= array_position({SEVERITY_ORDER}, l."MinSeverity")
           ON CONFLICT DO NOTHING"#
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(alarms.iter().map(|a| a.0).collect::<Vec<_>>())
        .bind(event)
        .bind(alarms.iter().map(|a| a.1).collect::<Vec<_>>())
        .execute(tx)
        .await?;
    Ok(())
}

/// An event waiting for a list, with the alarm it is about.
#[derive(Debug, Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct Waiting {
    pub list_id: i32,
    pub alarm_id: i64,
    pub event: String,
    pub at: DateTime<Utc>,
    pub severity: String,
    pub rule_name: String,
    pub subject: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub trigger_value: Option<f64>,
    pub clear_value: Option<f64>,
    pub cleared_by: Option<String>,
}

pub async fn waiting(db: impl PgExecutor<'_>) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT o."ListId", o."AlarmId", o."Event", o."At", a."Severity", a."RuleName", a."Subject", a."Message",
                  a."StartedAt", a."EndedAt", a."TriggerValue", a."ClearValue", a."ClearedBy"
           FROM alarms."Outbox" o JOIN alarms."Alarms" a ON a."Id" = o."AlarmId"
           ORDER BY o."ListId", o."At", o."AlarmId""#,
    )
    .fetch_all(db)
    .await
}

/// A message to send, rendered.
pub struct NewDelivery {
    pub list_id: i32,
    pub list_name: String,
    pub channel: &'static str,
    pub target: String,
    pub kind: &'static str,
    pub alarm_ids: Vec<i64>,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

/// Stores a list's planned deliveries and takes the events they tell of off its outbox, in one
/// transaction: an event is planned once.
pub async fn plan(
    tx: &mut PgConnection,
    list_id: i32,
    told: &[(i64, String)],
    deliveries: &[NewDelivery],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for d in deliveries {
        sqlx::query(
            r#"INSERT INTO alarms."Deliveries" ("ListId", "ListName", "Channel", "Target", "Kind", "AlarmIds",
                   "Subject", "Body", "Html", "NextAttemptAt", "CreatedAt")
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)"#,
        )
        .bind(d.list_id)
        .bind(&d.list_name)
        .bind(d.channel)
        .bind(&d.target)
        .bind(d.kind)
        .bind(&d.alarm_ids)
        .bind(&d.subject)
        .bind(&d.body)
        .bind(&d.html)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let (alarms, events): (Vec<i64>, Vec<String>) = told.iter().cloned().unzip();
    sqlx::query(
        r#"DELETE FROM alarms."Outbox" o USING unnest($2::bigint[], $3::text[]) AS t("AlarmId", "Event")
           WHERE o."ListId" = $1 AND o."AlarmId" = t."AlarmId" AND o."Event" = t."Event""#,
    )
    .bind(list_id)
    .bind(&alarms)
    .bind(&events)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct DeliveryRow {
    pub id: i64,
    pub list_id: Option<i32>,
    pub list_name: String,
    pub channel: String,
    pub target: String,
    pub kind: String,
    pub alarm_ids: Vec<i64>,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The list's webhook secret (signing happens at send time, under the current secret).
    pub webhook_secret: Option<String>,
}

const DELIVERY_COLUMNS: &str = r#"d."Id", d."ListId", d."ListName", d."Channel", d."Target", d."Kind", d."AlarmIds",
    d."Subject", d."Body", d."Html", d."Status", d."Attempts", d."LastError", d."CreatedAt", d."SentAt",
    l."WebhookSecret"
    FROM alarms."Deliveries" d LEFT JOIN alarms."RecipientLists" l ON l."Id" = d."ListId""#;

/// Deliveries due now, oldest first.
pub async fn due(db: impl PgExecutor<'_>, now: DateTime<Utc>, limit: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let sql = format!(
        r#"SELECT {DELIVERY_COLUMNS} WHERE d."Status" = 'pending' AND d."NextAttemptAt" <= $1
           ORDER BY d."NextAttemptAt", d."Id" LIMIT $2"#
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(db).await
}

pub async fn recent(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {DELIVERY_COLUMNS} ORDER BY d."Id" DESC LIMIT $1"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(db).await
}

/// Records one attempt: sent, or failed with `error` and tried again at `retry` (`None`: given up).
pub async fn record_attempt(
    db: impl PgExecutor<'_>,
    id: i64,
    now: DateTime<Utc>,
    outcome: Result<(), (&str, Option<DateTime<Utc>>)>,
) -> Result<(), sqlx::Error> {
    let (status, error, next) = match outcome {
        Ok(()) => ("sent", None, None),
        Err((error, Some(retry))) => ("pending", Some(error), Some(retry)),
        Err((error, None)) => ("failed", Some(error), None),
    };
    sqlx::query(
        r#"UPDATE alarms."Deliveries" SET "Attempts" = "Attempts" + 1, "Status" = $2,
               "LastError" = coalesce($3, "LastError"), "NextAttemptAt" = coalesce($4, "NextAttemptAt"),
               "SentAt" = CASE WHEN $2 = 'sent' THEN $5 END
           WHERE "Id" = $1"#,
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(next)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
