//! The 15-minute intervals per device (`monitoring."EnergyIntervals"`): the one way they are
//! written, by the job's runs and the rebuild alike, so the site sums always follow.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::maths::{Anomaly, Interval};
use super::{anomalies, site_sums};
use crate::measurements::{self, copy};

/// One device's intervals from `from` up to `to` (`None`: all later ones), to be replaced by
/// `intervals`, which all lie inside that range.
pub(super) struct Replacement {
    pub device: i32,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub intervals: Vec<Interval>,
    /// What the computation did not count (recorded for the device's page; see maths.rs).
    pub anomalies: Vec<Anomaly>,
}

/// Replaces the intervals of each device's range, and queues the devices' sites for a refresh
/// of their sums from the ranges' starts; returns how many intervals were written.
pub(super) async fn replace(conn: &mut PgConnection, replacements: &[Replacement]) -> Result<u64, sqlx::Error> {
    if replacements.is_empty() {
        return Ok(0);
    }
    delete_intervals(conn, replacements).await?;
    let devices: Vec<i32> = replacements.iter().map(|r| r.device).collect();
    let from: Vec<DateTime<Utc>> = replacements.iter().map(|r| r.from).collect();
    site_sums::queue_sites(conn, &devices, &from).await?;
    anomalies::record(conn, replacements).await?;
    write_intervals(conn, replacements).await
}

/// Deletes each device's intervals in its range.
///
/// The rows are found by an index lookup per device and deleted by `ctid`: as a join of the
/// ranges with the table, the planner chose a hash join over the whole table for every batch
/// (measured: most of a rebuild's delete time). The ORDER BY keeps the lateral subquery from
/// being flattened into that join. The `ctid`s are used within the statement that reads them,
/// and only rollup writers change intervals (one at a time per device, under its watermark or
/// the rebuild lock).
async fn delete_intervals(conn: &mut PgConnection, ranges: &[Replacement]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"DELETE FROM monitoring."EnergyIntervals" WHERE ctid = ANY(ARRAY(
               SELECT x.ctid FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[]) AS r(d, f, t)
               CROSS JOIN LATERAL (SELECT ctid FROM monitoring."EnergyIntervals"
                                   WHERE "DeviceId" = r.d AND "Start" >= r.f AND "Start" < coalesce(r.t, 'infinity')
                                   ORDER BY "Start") x))"#,
    )
    .bind(ranges.iter().map(|r| r.device).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.from).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.to).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the new intervals with one binary COPY, and returns how many. The devices' rows are
/// locked first ([`measurements::lock_devices`], what the dropped foreign key did row by row;
/// see the module doc of `energy`): a device deleted meanwhile is skipped.
async fn write_intervals(conn: &mut PgConnection, replacements: &[Replacement]) -> Result<u64, sqlx::Error> {
    let ids: Vec<i32> = replacements.iter().filter(|r| !r.intervals.is_empty()).map(|r| r.device).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let present = measurements::lock_devices(conn, &ids).await?;
    let rows: Vec<(i32, &Interval)> = replacements
        .iter()
        .filter(|r| present.contains(&r.device))
        .flat_map(|r| r.intervals.iter().map(move |i| (r.device, i)))
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    // Field count, then per field its length and value.
    let mut w = copy::Writer::new(rows.len(), 2 + 12 * 4 + 4 + 8 + 5 * 8 + 2 * 4 + 4 + 2);
    for (device, i) in rows {
        w.row(12);
        w.int4(device);
        w.timestamptz(i.start)?;
        w.float8(Some(i.import_wh));
        w.float8(Some(i.export_wh));
        w.float8(i.apparent_vah);
        w.float8(i.reactive_import_varh);
        w.float8(i.reactive_export_varh);
        w.float4(i.max_w);
        w.float4(i.max_va);
        w.int4(i.samples.try_into().unwrap_or(i32::MAX));
        w.bool(i.estimated);
        w.bool(i.counter_reset);
    }
    let mut copy = conn
        .copy_in_raw(
            r#"COPY monitoring."EnergyIntervals" ("DeviceId", "Start", "ImportWh", "ExportWh", "ApparentVAh",
                   "ReactiveImportVarh", "ReactiveExportVarh", "MaxW", "MaxVA", "Samples", "Estimated", "CounterReset") FROM STDIN (FORMAT binary)"#,
        )
        .await?;
    copy.send(w.finish()).await?;
    copy.finish().await
}

/// A run of consecutive estimated intervals of one device: a data gap the rollup spread the
/// counters' energy over (`[start, end)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstimatedGap {
    pub device: i32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub intervals: i64,
}

/// The estimated gaps of `devices` whose intervals start at or after `since`, oldest first
/// (gaps and islands: a run breaks where the next interval is not estimated or missing).
pub async fn estimated_gaps(
    db: &sqlx::PgPool,
    devices: &[i32],
    since: DateTime<Utc>,
) -> Result<Vec<EstimatedGap>, sqlx::Error> {
    let rows: Vec<(i32, DateTime<Utc>, DateTime<Utc>, i64)> = sqlx::query_as(
        r#"SELECT "DeviceId", min("Start"), max("Start") + interval '15 minutes', count(*)
           FROM (SELECT "DeviceId", "Start",
                        "Start" - (row_number() OVER (PARTITION BY "DeviceId" ORDER BY "Start")) * interval '15 minutes' AS run
                 FROM monitoring."EnergyIntervals"
                 WHERE "DeviceId" = ANY($1) AND "Start" >= $2 AND "Estimated") e
           GROUP BY "DeviceId", run ORDER BY min("Start"), "DeviceId""#,
    )
    .bind(devices)
    .bind(since)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(device, start, end, intervals)| EstimatedGap { device, start, end, intervals }).collect())
}
