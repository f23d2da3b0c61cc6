//! The Admin's side of a delivered batch: who sent it (the push token), and storing it. One
//! transaction per batch writes the rows and the batch's `IngestEvents` row, so a batch is
//! either stored with its receipt or not at all, and a replay is answered from the receipt.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use uuid::Uuid;

use super::wire::{Batch, BatchType, Device, Receipt, Site};
use crate::auth::tokens;
use crate::measurements::{self, COLUMNS, COUNTER_QUANTITIES, REAL_QUANTITIES, Reading, copy};

/// Per-row reasons listed in a receipt; the rest are only counted.
const LISTED_ERRORS: usize = 20;

/// The customer a presented token belongs to.
#[derive(Debug, Clone)]
pub struct Sender {
    pub customer_id: Uuid,
    pub code: String,
    pub active: bool,
    /// False: the token was rotated out (still identified, to report its 401s).
    pub current: bool,
}

pub async fn sender(db: &PgPool, token: &str) -> Result<Option<Sender>, sqlx::Error> {
    let wanted = tokens::hash(token);
    type Row = (Uuid, String, bool, Vec<u8>, Option<Vec<u8>>);
    let row: Option<Row> = sqlx::query_as(
        r#"SELECT "Id", "Code", "Active", "TokenHash", "PreviousTokenHash" FROM fleet."Customers"
           WHERE "TokenHash" = $1 OR "PreviousTokenHash" = $1 LIMIT 1"#,
    )
    .bind(wanted.as_slice())
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(customer_id, code, active, current, previous)| {
        if tokens::matches(&current, &wanted) {
            Some(Sender { customer_id, code, active, current: true })
        } else if previous.is_some_and(|p| tokens::matches(&p, &wanted)) {
            Some(Sender { customer_id, code, active, current: false })
        } else {
            None
        }
    }))
}

/// A refused delivery of an identified customer: listed on its Recent ingest tab and as its
/// last error.
pub async fn record_refusal(
    db: &PgPool,
    customer: Uuid,
    batch: Option<(Uuid, BatchType)>,
    status: u16,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"WITH event AS (INSERT INTO fleet."IngestEvents" ("CustomerId", "BatchId", "BatchType", "Status", "Error")
               VALUES ($1, $2, $3, $4, $5))
           UPDATE fleet."Customers" SET "LastError" = $5, "LastErrorAt" = now() WHERE "Id" = $1"#,
    )
    .bind(customer)
    .bind(batch.map(|b| b.0))
    .bind(batch.map_or("unknown", |b| b.1.as_str()))
    .bind(i32::from(status))
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Stores an accepted batch, or answers a replay with the stored receipt. `plain_hourly`: the
/// hourly table is kept by the portal (plain PostgreSQL), so note what it must recompute.
pub async fn store(
    db: &PgPool,
    customer: Uuid,
    batch: &Batch,
    horizon: measurements::Horizon,
    plain_hourly: bool,
) -> Result<Receipt, sqlx::Error> {
    let mut tx = db.begin_with(BEGIN_STAGING).await?;
    // One batch of a customer at a time: a replay racing its original waits and finds it.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))").bind(customer).execute(&mut *tx).await?;
    let stored: Option<sqlx::types::Json<Receipt>> = sqlx::query_scalar(
        r#"SELECT "Result" FROM fleet."IngestEvents" WHERE "CustomerId" = $1 AND "BatchId" = $2 AND "Status" = 200"#,
    )
    .bind(customer)
    .bind(batch.batch_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(sqlx::types::Json(receipt)) = stored {
        return Ok(Receipt { replay: true, ..receipt });
    }
    let mut receipt = Receipt {
        batch_id: batch.batch_id,
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        errors: Vec::new(),
        replay: false,
    };
    let mut newest = None;
    match batch.kind {
        BatchType::Sites => upsert_sites(&mut tx, customer, &batch.sites, &mut receipt).await?,
        BatchType::Devices => upsert_devices(&mut tx, customer, &batch.devices, &mut receipt).await?,
        BatchType::Measurements => {
            if let Some(m) = &batch.measurements {
                newest = insert_measurements(&mut tx, customer, m, horizon, plain_hourly, &mut receipt).await?;
            }
        }
    }
    let listed = receipt.errors.len().min(LISTED_ERRORS);
    receipt.errors.truncate(listed);
    sqlx::query(
        r#"INSERT INTO fleet."IngestEvents" ("CustomerId", "BatchId", "BatchType", "WireVersion", "RowsAccepted",
               "RowsDuplicate", "RowsRejected", "Status", "Error", "Result")
           VALUES ($1, $2, $3, $4, $5, $6, $7, 200, $8, $9)"#,
    )
    .bind(customer)
    .bind(batch.batch_id)
    .bind(batch.kind.as_str())
    .bind(batch.version as i32)
    .bind(receipt.accepted as i32)
    .bind(receipt.duplicates as i32)
    .bind(receipt.rejected as i32)
    .bind(receipt.errors.first())
    .bind(sqlx::types::Json(&receipt))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        r#"UPDATE fleet."Customers" SET "LastPushAt" = now(), "LastError" = NULL, "LastErrorAt" = NULL,
               "LastReadingAt" = greatest("LastReadingAt", $2) WHERE "Id" = $1"#,
    )
    .bind(customer)
    .bind(newest)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(receipt)
}

async fn upsert_sites(
    tx: &mut PgConnection,
    customer: Uuid,
    sites: &[Site],
    receipt: &mut Receipt,
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Site) -> String| sites.iter().map(f).collect::<Vec<_>>();
    let done = sqlx::query(
        r#"INSERT INTO fleet."Sites" ("CustomerId", "SourceId", "Name", "Address", "TimeZone")
           SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::text[], $5::text[])
           ON CONFLICT ("CustomerId", "SourceId") DO UPDATE SET "Name" = EXCLUDED."Name",
               "Address" = EXCLUDED."Address", "TimeZone" = EXCLUDED."TimeZone", "UpdatedAt" = now()"#,
    )
    .bind(customer)
    .bind(sites.iter().map(|s| s.id).collect::<Vec<_>>())
    .bind(column(|s| s.name.clone()))
    .bind(column(|s| s.address.clone()))
    .bind(column(|s| s.time_zone.clone()))
    .execute(tx)
    .await?;
    receipt.accepted = done.rows_affected();
    Ok(())
}

async fn upsert_devices(
    tx: &mut PgConnection,
    customer: Uuid,
    devices: &[Device],
    receipt: &mut Receipt,
) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Device) -> String| devices.iter().map(f).collect::<Vec<_>>();
    // A device of a site the Admin was never sent is refused (sites are pushed first).
    let stored: Vec<i32> = sqlx::query_scalar(
        r#"INSERT INTO fleet."Devices" ("CustomerId", "SourceId", "SiteId", "ExternalId", "Name", "Model", "Enabled")
           SELECT $1, d.id, s."Id", d.external_id, d.name, d.model, d.enabled
           FROM UNNEST($2::int4[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::bool[])
               AS d(id, site, external_id, name, model, enabled)
           JOIN fleet."Sites" s ON s."CustomerId" = $1 AND s."SourceId" = d.site
           ON CONFLICT ("CustomerId", "SourceId") DO UPDATE SET "SiteId" = EXCLUDED."SiteId",
               "ExternalId" = EXCLUDED."ExternalId", "Name" = EXCLUDED."Name", "Model" = EXCLUDED."Model",
               "Enabled" = EXCLUDED."Enabled", "UpdatedAt" = now()
           RETURNING "SourceId""#,
    )
    .bind(customer)
    .bind(devices.iter().map(|d| d.id).collect::<Vec<_>>())
    .bind(devices.iter().map(|d| d.site_id).collect::<Vec<_>>())
    .bind(column(|d| d.external_id.clone()))
    .bind(column(|d| d.name.clone()))
    .bind(column(|d| d.model.clone()))
    .bind(devices.iter().map(|d| d.enabled).collect::<Vec<_>>())
    .fetch_all(tx)
    .await?;
    receipt.accepted = stored.len() as u64;
    for d in devices.iter().filter(|d| !stored.contains(&d.id)) {
        receipt.rejected += 1;
        receipt.errors.push(format!("device {} ({}): unknown site {}", d.id, d.external_id, d.site_id));
    }
    Ok(())
}

/// The Admin's staging table, like the single write path's (measurements/mod.rs): binary COPY
/// into it, then one INSERT … SELECT into fleet."PowerMeasurements" that skips stored rows.
const BEGIN_STAGING: &str = "BEGIN; SET LOCAL client_min_messages = warning; \
    CREATE TEMP TABLE IF NOT EXISTS \"FleetStaging\" \
    (LIKE monitoring.\"PowerMeasurements\" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

static COPY_STAGING: LazyLock<String> =
    LazyLock::new(|| format!("COPY pg_temp.\"FleetStaging\" ({}) FROM STDIN (FORMAT binary)", *COLUMNS));

/// Straight into the table, the fast path: a batch the Admin holds none of (every first delivery,
/// a catch-up) is written once instead of twice. A stored row makes it fail on the primary key,
/// and the batch goes through the staging table instead (a retry, a re-sent late range).
static COPY_DIRECT: LazyLock<String> = LazyLock::new(|| {
    format!("COPY fleet.\"PowerMeasurements\" (\"CustomerId\", {}) FROM STDIN (FORMAT binary)", *COLUMNS)
});

static INSERT_STAGED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO fleet.\"PowerMeasurements\" (\"CustomerId\", {cols}) SELECT $1, {cols} FROM pg_temp.\"FleetStaging\" \
         ON CONFLICT (\"CustomerId\", \"DeviceId\", \"Time\") DO NOTHING",
        cols = *COLUMNS
    )
});

/// Where each wire column goes in a [`Reading`].
enum Slot {
    Real(usize),
    Counter(usize),
}

fn slots(columns: &[String]) -> Result<Vec<Slot>, String> {
    columns
        .iter()
        .map(|c| {
            REAL_QUANTITIES
                .iter()
                .position(|q| q.0 == c)
                .map(Slot::Real)
                .or_else(|| COUNTER_QUANTITIES.iter().position(|q| q.0 == c).map(Slot::Counter))
                .ok_or_else(|| format!("unknown measurement column `{c}`"))
        })
        .collect()
}

/// Checks a measurement batch's shape before anything is stored: a wrong shape is the sender's
/// bug, refused whole (400), not a row-level rejection.
pub fn check_shape(batch: &Batch) -> Result<(), String> {
    let Some(m) = &batch.measurements else { return Ok(()) };
    slots(&m.columns)?;
    if m.rows.len() > super::wire::MAX_ROWS {
        return Err(format!("{} rows in one batch; the limit is {}", m.rows.len(), super::wire::MAX_ROWS));
    }
    match m.rows.iter().position(|r| r.values.len() != m.columns.len()) {
        Some(i) => {
            Err(format!("measurements.rows[{i}] has {} values for {} columns", m.rows[i].values.len(), m.columns.len()))
        }
        None => Ok(()),
    }
}

/// [`COPY_DIRECT`] under a savepoint: the rows stored, or `None` when some were stored already
/// (the savepoint is rolled back and nothing of the attempt remains).
async fn copy_direct(tx: &mut PgConnection, customer: Uuid, rows: &[&Reading]) -> Result<Option<u64>, sqlx::Error> {
    sqlx::raw_sql("SAVEPOINT fleet_direct").execute(&mut *tx).await?;
    let attempt = async {
        let mut copy_in = tx.copy_in_raw(COPY_DIRECT.as_str()).await?;
        copy_in.send(copy::encode_owned_by(Some(customer), rows)?).await?;
        copy_in.finish().await
    }
    .await;
    match attempt {
        Ok(stored) => {
            sqlx::raw_sql("RELEASE SAVEPOINT fleet_direct").execute(&mut *tx).await?;
            Ok(Some(stored))
        }
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT fleet_direct").execute(&mut *tx).await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn insert_measurements(
    tx: &mut PgConnection,
    customer: Uuid,
    m: &super::wire::Measurements,
    horizon: measurements::Horizon,
    plain_hourly: bool,
    receipt: &mut Receipt,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let slots = slots(&m.columns).map_err(sqlx::Error::Protocol)?;
    let mut sources: Vec<i32> = m.rows.iter().map(|r| r.device).collect();
    sources.sort_unstable();
    sources.dedup();
    let known: HashMap<i32, i32> = sqlx::query_as(
        r#"SELECT "SourceId", "Id" FROM fleet."Devices" WHERE "CustomerId" = $1 AND "SourceId" = ANY($2)"#,
    )
    .bind(customer)
    .bind(&sources)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut readings = Vec::with_capacity(m.rows.len());
    let mut seen = std::collections::HashSet::with_capacity(m.rows.len());
    for row in &m.rows {
        let Some(&device) = known.get(&row.device) else {
            receipt.rejected += 1;
            receipt.errors.push(format!("device {}: unknown (push the devices first)", row.device));
            continue;
        };
        let time = match row.time() {
            Some(t) if horizon.check(t).is_ok() => t,
            _ => {
                receipt.rejected += 1;
                receipt.errors.push(format!("device {}: implausible time {} µs", row.device, row.time_us));
                continue;
            }
        };
        if !seen.insert((device, time)) {
            receipt.duplicates += 1;
            continue;
        }
        let mut reading = Reading::empty(device, time);
        for (slot, value) in slots.iter().zip(&row.values) {
            match slot {
                Slot::Real(i) => reading.real[*i] = value.map(|v| v as f32),
                Slot::Counter(i) => reading.counters[*i] = *value,
            }
        }
        readings.push(reading);
    }
    if readings.is_empty() {
        return Ok(None);
    }
    let newest = readings.iter().map(|r| r.time).max();
    let refs: Vec<&Reading> = readings.iter().collect();
    receipt.accepted = match copy_direct(tx, customer, &refs).await? {
        Some(stored) => stored,
        None => {
            let data = copy::encode(&refs)?;
            let mut copy_in = tx.copy_in_raw(COPY_STAGING.as_str()).await?;
            copy_in.send(data).await?;
            copy_in.finish().await?;
            let new = sqlx::query(AssertSqlSafe(INSERT_STAGED.as_str())).bind(customer).execute(&mut *tx).await?;
            new.rows_affected()
        }
    };
    receipt.duplicates += readings.len() as u64 - receipt.accepted;
    if plain_hourly {
        super::hourly::note_stale(&mut *tx, &readings).await?;
    }
    Ok(newest)
}
