//! SQL of `alarms."Rules"` and `alarms."Alarms"` (the only module that touches them). Writes an
//! admin or a user makes take the [`Change`] (audited, one transaction) and note the active-alarm
//! count as stale; the evaluator's raises and clears are one transaction per cycle.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::notify;
use crate::change::{Cache, Change};

pub const RULE_NAME_UNIQUE: &str = "UX_AlarmRules_Name";
pub const RULE_SITE_FK: &str = "Rules_SiteId_fkey";
pub const RULE_DEVICE_FK: &str = "Rules_DeviceId_fkey";

// ---------------------------------------------------------------- rules

#[derive(Debug, Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct RuleRow {
    pub id: i32,
    pub name: String,
    pub kind: String,
    pub severity: String,
    pub enabled: bool,
    pub site_id: Option<i32>,
    pub device_id: Option<i32>,
    pub missed_polls: Option<i32>,
    pub quantity: Option<String>,
    pub direction: Option<String>,
    pub limit: Option<f64>,
    pub nominal: Option<f64>,
    pub hysteresis: f64,
    pub hold_seconds: i32,
    /// Demand limit: `kW` or `kVA`.
    pub unit: Option<String>,
    /// Budget: `to-date` or `projected`.
    pub basis: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// The scope's names, for the rules list (`None`: every device).
    pub site_name: Option<String>,
    pub device_name: Option<String>,
}

/// A rule as stored (validated by `forms`).
pub struct RuleFields<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub severity: &'a str,
    pub enabled: bool,
    pub site_id: Option<i32>,
    pub device_id: Option<i32>,
    pub missed_polls: Option<i32>,
    pub quantity: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub limit: Option<f64>,
    pub nominal: Option<f64>,
    pub hysteresis: f64,
    pub hold_seconds: i32,
    pub unit: Option<&'a str>,
    pub basis: Option<&'a str>,
}

const RULE_COLUMNS: &str = r#"r."Id", r."Name", r."Kind", r."Severity", r."Enabled", r."SiteId", r."DeviceId",
    r."MissedPolls", r."Quantity", r."Direction", r."Limit", r."Nominal", r."Hysteresis", r."HoldSeconds",
    r."Unit", r."Basis", r."UpdatedAt", s."Name" AS "SiteName", d."Name" AS "DeviceName"
    FROM alarms."Rules" r
    LEFT JOIN monitoring."Sites" s ON s."Id" = r."SiteId"
    LEFT JOIN monitoring."Devices" d ON d."Id" = r."DeviceId""#;

pub async fn rules(db: impl PgExecutor<'_>) -> Result<Vec<RuleRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {RULE_COLUMNS} ORDER BY lower(r."Name")"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await
}

pub async fn enabled_rules(db: impl PgExecutor<'_>) -> Result<Vec<RuleRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {RULE_COLUMNS} WHERE r."Enabled" ORDER BY r."Id""#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(db).await
}

pub async fn rule(db: impl PgExecutor<'_>, id: i32) -> Result<Option<RuleRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {RULE_COLUMNS} WHERE r."Id" = $1"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await
}

fn bind_rule<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    r: &RuleFields<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(r.name)
        .bind(r.kind)
        .bind(r.severity)
        .bind(r.enabled)
        .bind(r.site_id)
        .bind(r.device_id)
        .bind(r.missed_polls)
        .bind(r.quantity)
        .bind(r.direction)
        .bind(r.limit)
        .bind(r.nominal)
        .bind(r.hysteresis)
        .bind(r.hold_seconds)
        .bind(r.unit)
        .bind(r.basis)
}

pub async fn insert_rule(change: &mut Change, r: &RuleFields<'_>) -> Result<i32, sqlx::Error> {
    let q = sqlx::query(
        r#"INSERT INTO alarms."Rules" ("Name", "Kind", "Severity", "Enabled", "SiteId", "DeviceId", "MissedPolls",
               "Quantity", "Direction", "Limit", "Nominal", "Hysteresis", "HoldSeconds", "Unit", "Basis")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING "Id""#,
    );
    let row = bind_rule(q, r).fetch_one(change.db()).await?;
    sqlx::Row::try_get(&row, "Id")
}

/// Saves the rule and ends its open alarms (their condition is not the rule's any more; the
/// evaluator raises them again under the new one). False when the rule does not exist.
pub async fn update_rule(
    change: &mut Change,
    id: i32,
    r: &RuleFields<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let q = sqlx::query(
        r#"UPDATE alarms."Rules" SET "Name" = $1, "Kind" = $2, "Severity" = $3, "Enabled" = $4, "SiteId" = $5,
               "DeviceId" = $6, "MissedPolls" = $7, "Quantity" = $8, "Direction" = $9, "Limit" = $10,
               "Nominal" = $11, "Hysteresis" = $12, "HoldSeconds" = $13, "Unit" = $14, "Basis" = $15,
               "UpdatedAt" = $17
           WHERE "Id" = $16"#,
    );
    let done = bind_rule(q, r).bind(id).bind(now).execute(change.db()).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    end_open_alarms_of_rule(change, id, now).await?;
    Ok(true)
}

/// Deletes the rule after ending its open alarms (history keeps them, without the rule);
/// the deleted rule's name, `None` when it did not exist.
pub async fn delete_rule(change: &mut Change, id: i32, now: DateTime<Utc>) -> Result<Option<String>, sqlx::Error> {
    end_open_alarms_of_rule(change, id, now).await?;
    sqlx::query_scalar(r#"DELETE FROM alarms."Rules" WHERE "Id" = $1 RETURNING "Name""#)
        .bind(id)
        .fetch_optional(change.db())
        .await
}

async fn end_open_alarms_of_rule(change: &mut Change, id: i32, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    change.stale(Cache::ActiveAlarms);
    let ended: Vec<i64> = sqlx::query_scalar(
        r#"UPDATE alarms."Alarms" SET "EndedAt" = greatest($2, "StartedAt"), "ClearedBy" = 'rule'
           WHERE "RuleId" = $1 AND "EndedAt" IS NULL RETURNING "Id""#,
    )
    .bind(id)
    .bind(now)
    .fetch_all(change.db())
    .await?;
    notify::db::queue(change.db(), &ended, "cleared", now).await
}

// ---------------------------------------------------------------- alarms

#[derive(Debug, Clone, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct AlarmRow {
    pub id: i64,
    pub rule_id: Option<i32>,
    pub rule_name: String,
    pub kind: String,
    pub severity: String,
    pub site_id: i32,
    pub device_id: Option<i32>,
    pub subject: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub trigger_value: Option<f64>,
    pub clear_value: Option<f64>,
    pub details: serde_json::Value,
    pub cleared_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub ack_comment: Option<String>,
    pub time_zone: String,
}

const ALARM_COLUMNS: &str = r#"a."Id", a."RuleId", a."RuleName", a."Kind", a."Severity", a."SiteId", a."DeviceId",
    a."Subject", a."Message", a."StartedAt", a."EndedAt", a."TriggerValue", a."ClearValue", a."Details",
    a."ClearedBy", a."AcknowledgedAt", a."AcknowledgedBy", a."AckComment", s."TimeZone"
    FROM alarms."Alarms" a JOIN monitoring."Sites" s ON s."Id" = a."SiteId""#;

/// Which alarms a list shows.
#[derive(Debug, Default)]
pub struct AlarmFilter<'a> {
    /// `Some(true)`: open only; `Some(false)`: ended only.
    pub open: Option<bool>,
    pub severity: Option<&'a str>,
    pub site_id: Option<i32>,
    pub limit: i64,
}

/// Open alarms first (most severe, then newest), then history, newest first.
pub async fn alarms(db: impl PgExecutor<'_>, f: &AlarmFilter<'_>) -> Result<Vec<AlarmRow>, sqlx::Error> {
    let sql = format!(
        r#"SELECT {ALARM_COLUMNS}
           WHERE ($1::boolean IS NULL OR ($1 = (a."EndedAt" IS NULL)))
             AND ($2::text IS NULL OR a."Severity" = $2)
             AND ($3::integer IS NULL OR a."SiteId" = $3)
           ORDER BY a."EndedAt" IS NULL DESC,
                    CASE WHEN a."EndedAt" IS NULL THEN array_position(ARRAY['critical','major','minor','warning'], a."Severity") END,
                    a."StartedAt" DESC, a."Id" DESC
           LIMIT $4"#
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(f.open)
        .bind(f.severity)
        .bind(f.site_id)
        .bind(f.limit)
        .fetch_all(db)
        .await
}

pub async fn alarm(db: impl PgExecutor<'_>, id: i64) -> Result<Option<AlarmRow>, sqlx::Error> {
    let sql = format!(r#"SELECT {ALARM_COLUMNS} WHERE a."Id" = $1"#);
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await
}

pub async fn active_count(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(r#"SELECT count(*) FROM alarms."Alarms" WHERE "EndedAt" IS NULL"#).fetch_one(db).await
}

/// An open alarm, by what raised it.
#[derive(Debug, sqlx::FromRow)]
#[sqlx(rename_all = "PascalCase")]
pub struct OpenAlarm {
    pub id: i64,
    pub rule_id: Option<i32>,
    pub site_id: i32,
    pub device_id: Option<i32>,
    pub started_at: DateTime<Utc>,
}

pub async fn open_alarms(db: impl PgExecutor<'_>) -> Result<Vec<OpenAlarm>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Id", "RuleId", "SiteId", "DeviceId", "StartedAt" FROM alarms."Alarms" WHERE "EndedAt" IS NULL"#,
    )
    .fetch_all(db)
    .await
}

/// An alarm the evaluator raises.
pub struct NewAlarm {
    pub rule_id: i32,
    pub rule_name: String,
    pub kind: String,
    pub severity: String,
    pub site_id: i32,
    pub device_id: Option<i32>,
    pub subject: String,
    pub message: String,
    pub started_at: DateTime<Utc>,
    pub trigger_value: Option<f64>,
    pub details: serde_json::Value,
    /// An event that is over when it is found (a data gap): raised and ended at once, by the
    /// condition, at this time.
    pub ended_at: Option<DateTime<Utc>>,
}

/// When alarms of `rules` raised since `since` started, by rule and subject: an event rule
/// (data gap, new maximum demand) raises one alarm per event, told apart by its start.
pub async fn starts_since(
    db: impl PgExecutor<'_>,
    rules: &[i32],
    since: DateTime<Utc>,
) -> Result<Vec<(i32, i32, Option<i32>, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "RuleId", "SiteId", "DeviceId", "StartedAt" FROM alarms."Alarms"
           WHERE "RuleId" = ANY($1) AND "StartedAt" >= $2"#,
    )
    .bind(rules)
    .bind(since)
    .fetch_all(db)
    .await
}

/// An alarm the evaluator ends.
pub struct EndAlarm {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
    /// 'condition' or 'rule'.
    pub by: &'static str,
}

/// Writes a cycle's ends and raises in `tx`; the ids of the alarms raised (a raise that meets an
/// open alarm of the same rule and subject is skipped, as is a repeated end). Ends go first: a new
/// maximum demand ends the previous one's alarm and raises its own for the same subject in one
/// cycle. One statement for all the ends and one for all the raises, whatever their number: when
/// thousands of meters go silent (or answer again) at once, a statement per alarm kept the
/// database busy for minutes.
pub async fn apply(tx: &mut PgConnection, raises: &[NewAlarm], ends: &[EndAlarm]) -> Result<Vec<i64>, sqlx::Error> {
    let mut seen = std::collections::HashSet::new();
    let ends: Vec<&EndAlarm> = ends.iter().filter(|e| seen.insert(e.id)).collect();
    if !ends.is_empty() {
        let ended: Vec<(i64, DateTime<Utc>)> = sqlx::query_as(
            r#"UPDATE alarms."Alarms" a
               SET "EndedAt" = greatest(e.at, a."StartedAt"), "ClearValue" = e.value, "ClearedBy" = e.by
               FROM UNNEST($1::int8[], $2::timestamptz[], $3::float8[], $4::text[]) AS e(id, at, value, by)
               WHERE a."Id" = e.id AND a."EndedAt" IS NULL RETURNING a."Id", e.at"#,
        )
        .bind(ends.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.at).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.value).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.by).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        notify::db::queue_each(tx, &ended, "cleared").await?;
    }
    if raises.is_empty() {
        return Ok(Vec::new());
    }
    // In the given order (ORDINALITY), so of two raises for one subject the first is the one kept.
    let raised: Vec<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        r#"INSERT INTO alarms."Alarms" ("RuleId", "RuleName", "Kind", "Severity", "SiteId", "DeviceId", "Subject",
               "Message", "StartedAt", "TriggerValue", "Details", "EndedAt", "ClearedBy")
           SELECT r.rule, r.name, r.kind, r.severity, r.site, r.device, r.subject, r.message, r.started, r.value,
                  r.details, r.ended, CASE WHEN r.ended IS NOT NULL THEN 'condition' END
           FROM UNNEST($1::int4[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::int4[], $7::text[], $8::text[],
                       $9::timestamptz[], $10::float8[], $11::jsonb[], $12::timestamptz[]) WITH ORDINALITY
                AS r(rule, name, kind, severity, site, device, subject, message, started, value, details, ended, n)
           ORDER BY r.n
           ON CONFLICT ("RuleId", "SiteId", coalesce("DeviceId", 0)) WHERE "EndedAt" IS NULL DO NOTHING
           RETURNING "Id", "StartedAt", "EndedAt""#,
    )
    .bind(raises.iter().map(|a| a.rule_id).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.rule_name.as_str()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.severity.as_str()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.site_id).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.device_id).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.subject.as_str()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.message.as_str()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.started_at).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.trigger_value).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.details.clone()).collect::<Vec<_>>())
    .bind(raises.iter().map(|a| a.ended_at).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let started: Vec<(i64, DateTime<Utc>)> = raised.iter().map(|&(id, at, _)| (id, at)).collect();
    notify::db::queue_each(tx, &started, "raised").await?;
    let over: Vec<(i64, DateTime<Utc>)> = raised.iter().filter_map(|&(id, _, ended)| Some((id, ended?))).collect();
    notify::db::queue_each(tx, &over, "cleared").await?;
    Ok(raised.into_iter().map(|(id, ..)| id).collect())
}

/// Records who acknowledged the alarm; false when it does not exist or already was.
pub async fn acknowledge(
    change: &mut Change,
    id: i64,
    user: &crate::auth::sessions::SessionUser,
    comment: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    change.stale(Cache::ActiveAlarms);
    let done = sqlx::query(
        r#"UPDATE alarms."Alarms" SET "AcknowledgedAt" = $2, "AcknowledgedByUserId" = $3, "AcknowledgedBy" = $4,
               "AckComment" = nullif($5, '')
           WHERE "Id" = $1 AND "AcknowledgedAt" IS NULL"#,
    )
    .bind(id)
    .bind(now)
    .bind(user.user_id)
    .bind(&user.email)
    .bind(comment)
    .execute(change.db())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends an open alarm by hand; false when it does not exist or has already ended.
pub async fn clear(change: &mut Change, id: i64, by: &str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    change.stale(Cache::ActiveAlarms);
    let ended: Option<i64> = sqlx::query_scalar(
        r#"UPDATE alarms."Alarms" SET "EndedAt" = greatest($2, "StartedAt"), "ClearedBy" = $3
           WHERE "Id" = $1 AND "EndedAt" IS NULL RETURNING "Id""#,
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .fetch_optional(change.db())
    .await?;
    notify::db::queue(change.db(), ended.as_slice(), "cleared", now).await?;
    Ok(ended.is_some())
}
