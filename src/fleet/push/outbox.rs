//! The push's SQL on the customer's database: the send positions (monitoring."FleetPositions"),
//! the late-reading marks the single write path leaves (monitoring."FleetLateReadings") and the
//! outbox of formed batches (monitoring."FleetOutbox").
//!
//! Forming a batch and moving the positions past it is one transaction that holds the devices'
//! position rows FOR UPDATE. The write path reads the same rows FOR KEY SHARE in the transaction
//! that inserts readings ([`note_late_readings`], one of `measurements::write`'s late-row
//! notes), so a reading is either committed before the batch is read (and is in it, or beyond
//! the new position) or its insert waits for the new position and notes itself late: never
//! neither. The batch's exact body is stored in the same
//! transaction, so from then on it is delivered as stored: readings that commit into its range
//! later are late readings and go in a later batch.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fleet::wire::{self, Batch, BatchType, Measurements};
use crate::measurements::copy::{self, Decoder};
use crate::measurements::{COLUMNS, FirstReadings, Reading};

/// A batch of the outbox.
#[derive(Debug, sqlx::FromRow)]
pub struct Pending {
    #[sqlx(rename = "Seq")]
    pub seq: i64,
    #[sqlx(rename = "BatchId")]
    pub batch_id: Uuid,
    #[sqlx(rename = "BatchType")]
    pub kind: String,
    #[sqlx(rename = "Rows")]
    pub rows: i32,
    #[sqlx(rename = "Body")]
    pub body: Vec<u8>,
    #[sqlx(rename = "Attempts")]
    pub attempts: i32,
    #[sqlx(rename = "Refusals")]
    pub refusals: i32,
    #[sqlx(rename = "CreatedAt")]
    pub created_at: DateTime<Utc>,
}

/// The oldest batch still to deliver.
pub async fn next(db: &PgPool) -> Result<Option<Pending>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "Seq", "BatchId", "BatchType", "Rows", "Body", "Attempts", "Refusals", "CreatedAt"
           FROM monitoring."FleetOutbox" WHERE "QuarantinedAt" IS NULL ORDER BY "Seq" LIMIT 1"#,
    )
    .fetch_optional(db)
    .await
}

pub async fn enqueue(db: impl sqlx::PgExecutor<'_>, batch: &Batch, body: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."FleetOutbox" ("BatchId", "BatchType", "Rows", "Body") VALUES ($1, $2, $3, $4)"#,
    )
    .bind(batch.batch_id)
    .bind(batch.kind.as_str())
    .bind(batch.rows() as i32)
    .bind(body)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delivered(db: &PgPool, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query(r#"DELETE FROM monitoring."FleetOutbox" WHERE "Seq" = $1"#).bind(seq).execute(db).await?;
    Ok(())
}

/// Records a failed attempt; `refused`: the Admin called the batch malformed. Returns the
/// batch's refusals so far.
pub async fn failed(
    db: &PgPool,
    seq: i64,
    status: Option<u16>,
    error: &str,
    refused: bool,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        r#"UPDATE monitoring."FleetOutbox" SET "Attempts" = "Attempts" + 1, "Refusals" = "Refusals" + $4::int,
               "LastAttemptAt" = now(), "LastStatus" = $2, "LastError" = $3
           WHERE "Seq" = $1 RETURNING "Refusals""#,
    )
    .bind(seq)
    .bind(status.map(i32::from))
    .bind(error)
    .bind(i32::from(refused))
    .fetch_one(db)
    .await
}

pub async fn quarantine(db: &PgPool, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query(r#"UPDATE monitoring."FleetOutbox" SET "QuarantinedAt" = now() WHERE "Seq" = $1"#)
        .bind(seq)
        .execute(db)
        .await?;
    Ok(())
}

/// Replaces a batch the Admin found too large (413: it stored nothing) by its two halves, in
/// order, each with a new idempotency key.
pub async fn split(db: &PgPool, seq: i64, halves: [(Batch, Vec<u8>); 2]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(r#"DELETE FROM monitoring."FleetOutbox" WHERE "Seq" = $1"#).bind(seq).execute(&mut *tx).await?;
    for (batch, body) in &halves {
        enqueue(&mut *tx, batch, body).await?;
    }
    tx.commit().await
}

/// A quarantined batch, for the Settings page.
#[derive(Debug, sqlx::FromRow)]
pub struct Quarantined {
    #[sqlx(rename = "BatchId")]
    pub batch_id: Uuid,
    #[sqlx(rename = "BatchType")]
    pub kind: String,
    #[sqlx(rename = "Rows")]
    pub rows: i32,
    #[sqlx(rename = "LastStatus")]
    pub status: Option<i32>,
    #[sqlx(rename = "LastError")]
    pub error: Option<String>,
    #[sqlx(rename = "QuarantinedAt")]
    pub at: Option<DateTime<Utc>>,
}

pub async fn quarantined(db: &PgPool) -> Result<Vec<Quarantined>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT "BatchId", "BatchType", "Rows", "LastStatus", "LastError", "QuarantinedAt"
           FROM monitoring."FleetOutbox" WHERE "QuarantinedAt" IS NOT NULL ORDER BY "Seq" DESC LIMIT 50"#,
    )
    .fetch_all(db)
    .await
}

/// (batches waiting, rows in them, batches quarantined).
pub async fn counts(db: &PgPool) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        r#"SELECT count(*) FILTER (WHERE "QuarantinedAt" IS NULL),
                  coalesce(sum("Rows") FILTER (WHERE "QuarantinedAt" IS NULL), 0)::int8,
                  count(*) FILTER (WHERE "QuarantinedAt" IS NOT NULL)
           FROM monitoring."FleetOutbox""#,
    )
    .fetch_one(db)
    .await
}

/// The write path's note (in the batch's transaction, before its rows are inserted): the
/// earliest reading of each device in `first` that is older than the device's send position, so
/// the push sends the device again from there. The FOR KEY SHARE lock on the position row is
/// held until the batch commits.
pub(crate) async fn note_late_readings(tx: &mut sqlx::PgConnection, first: &FirstReadings) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"WITH position AS (SELECT "DeviceId", "SentUntil" FROM monitoring."FleetPositions"
                             WHERE "DeviceId" = ANY($1::int4[]) ORDER BY "DeviceId" FOR KEY SHARE)
           INSERT INTO monitoring."FleetLateReadings" ("DeviceId", "From")
           SELECT b.d, b.t FROM UNNEST($1::int4[], $2::timestamptz[]) AS b(d, t)
           JOIN position p ON p."DeviceId" = b.d WHERE b.t < p."SentUntil"
           ON CONFLICT ("DeviceId") DO UPDATE SET "From" = least(monitoring."FleetLateReadings"."From", EXCLUDED."From")"#,
    )
    .bind(&first.devices)
    .bind(&first.times)
    .execute(tx)
    .await?;
    Ok(())
}

/// A measurement batch formed and stored in the outbox.
pub struct Formed {
    pub rows: usize,
    /// More readings may be waiting (the batch was cut at the row or byte cap).
    pub full: bool,
    pub oldest: DateTime<Utc>,
}

/// Forms the next measurement batch of the `devices` the Admin has been sent, at most `cap`
/// rows and about `byte_target` gzip bytes, stores it and moves the positions past it. `None`:
/// nothing to send.
pub async fn form_measurements(
    db: &PgPool,
    devices: &[i32],
    cap: usize,
    byte_target: usize,
) -> Result<Option<Formed>, FormError> {
    if devices.is_empty() {
        return Ok(None);
    }
    sqlx::query(
        r#"INSERT INTO monitoring."FleetPositions" ("DeviceId")
           SELECT "Id" FROM monitoring."Devices" WHERE "Id" = ANY($1) ON CONFLICT DO NOTHING"#,
    )
    .bind(devices)
    .execute(db)
    .await?;
    let mut tx = db.begin().await?;
    let held: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        r#"SELECT "DeviceId", "SentUntil" FROM monitoring."FleetPositions" WHERE "DeviceId" = ANY($1)
           ORDER BY "DeviceId" FOR UPDATE"#,
    )
    .bind(devices)
    .fetch_all(&mut *tx)
    .await?;
    let mut since: BTreeMap<i32, DateTime<Utc>> = held.into_iter().collect();
    // Late readings: send the device again from the earliest one (the Admin skips what it has).
    let late: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        r#"DELETE FROM monitoring."FleetLateReadings" WHERE "DeviceId" = ANY($1) RETURNING "DeviceId", "From""#,
    )
    .bind(devices)
    .fetch_all(&mut *tx)
    .await?;
    let mut moved: BTreeMap<i32, DateTime<Utc>> = BTreeMap::new();
    for (device, from) in late {
        if let Some(s) = since.get_mut(&device).filter(|s| from < **s) {
            *s = from;
            moved.insert(device, from);
        }
    }

    let readings = read_from(&mut tx, &since, cap).await?;
    let fetched = readings.len();
    if fetched == 0 {
        move_positions(&mut tx, &moved).await?;
        tx.commit().await?;
        return Ok(None);
    }
    // Encoding is CPU work: off the async threads. A batch over the byte target is halved
    // (a prefix of the rows: still every device's earliest readings) until it fits.
    let (batch, body, readings) = tokio::task::spawn_blocking(move || {
        let mut n = readings.len();
        loop {
            let batch = Batch {
                measurements: Some(Measurements::from_readings(&readings[..n])),
                ..Batch::new(BatchType::Measurements)
            };
            let body = batch.encode()?;
            if body.len() <= byte_target || n == 1 {
                let mut readings = readings;
                readings.truncate(n);
                return Ok::<_, String>((batch, body, readings));
            }
            n /= 2;
        }
    })
    .await
    .map_err(|e| FormError::Encode(e.to_string()))?
    .map_err(FormError::Encode)?;

    for r in &readings {
        let next = r.time + TimeDelta::microseconds(1);
        let entry = moved.entry(r.device_id).or_insert(next);
        *entry = (*entry).max(next);
    }
    move_positions(&mut tx, &moved).await?;
    enqueue(&mut *tx, &batch, &body).await?;
    tx.commit().await?;
    let oldest = readings.iter().map(|r| r.time).min().unwrap_or_else(Utc::now);
    Ok(Some(Formed { rows: readings.len(), full: fetched == cap || readings.len() < fetched, oldest }))
}

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Encode(String),
}

async fn move_positions(tx: &mut sqlx::PgConnection, to: &BTreeMap<i32, DateTime<Utc>>) -> Result<(), sqlx::Error> {
    if to.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"UPDATE monitoring."FleetPositions" p SET "SentUntil" = x.s FROM UNNEST($1::int4[], $2::timestamptz[]) AS x(d, s)
           WHERE p."DeviceId" = x.d"#,
    )
    .bind(to.keys().copied().collect::<Vec<_>>())
    .bind(to.values().copied().collect::<Vec<_>>())
    .execute(tx)
    .await?;
    Ok(())
}

/// Up to `cap` readings from the positions on, device by device, each device's oldest first,
/// read as binary COPY (several times faster than decoding rows). The nested loop over the
/// devices (in the given order) with the per-device `ORDER BY "Time" LIMIT` inside stops at
/// `cap`: whatever is cut, each device's rows are its earliest ones, so the new position after
/// the last one sent never skips a reading.
async fn read_from(
    tx: &mut sqlx::PgConnection,
    since: &BTreeMap<i32, DateTime<Utc>>,
    cap: usize,
) -> Result<Vec<Reading>, sqlx::Error> {
    let ids: Vec<String> = since.keys().map(i32::to_string).collect();
    let times: Vec<String> = since.values().map(|t| format!("\"{}\"", copy::time_literal(*t))).collect();
    let cols = COLUMNS.as_str();
    let sql = format!(
        r#"COPY (SELECT m.* FROM UNNEST('{{{ids}}}'::int4[], '{{{times}}}'::timestamptz[]) AS p(d, since)
               CROSS JOIN LATERAL (SELECT {cols} FROM monitoring."PowerMeasurements" m
                   WHERE m."DeviceId" = p.d AND m."Time" >= p.since ORDER BY m."Time" LIMIT {cap}) m
               LIMIT {cap}) TO STDOUT (FORMAT binary)"#,
        ids = ids.join(","),
        times = times.join(",")
    );
    let mut readings = Vec::with_capacity(cap.min(wire::MAX_ROWS));
    let mut stream = tx.copy_out_raw(&sql).await?;
    let mut decoder = Decoder::default();
    while let Some(chunk) = stream.next().await {
        decoder.feed(&chunk?, |f| {
            readings.extend(copy::decode_reading(f)?);
            Ok(())
        })?;
    }
    decoder.finish()?;
    Ok(readings)
}
