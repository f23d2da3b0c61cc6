//! Per-site 15-minute energy (`monitoring."SiteEnergyIntervals"`): the main meters' intervals summed,
//! so a month's bill reads one row per interval whatever the number of devices, and the queue of
//! sites whose sums are stale from some interval on (`monitoring."SiteEnergyStale"`). This file
//! holds both tables' SQL and [`site_intervals`] / [`sites_intervals`], the door every consumer
//! reads a site's energy through.
//!
//! Only main meters (`"Role" = 'main'`, the supply points: issue 15's site hierarchy) are summed,
//! in the stored sums and the door's live part alike ([`MAIN_METERS`]): a sub-meter measures part
//! of what a main meter already did, a check meter the same supply again, and a generation meter
//! what the site produced, so adding any of them would count energy twice or as consumption.
//! A role change queues the site from `-infinity` (trigger `TR_Devices_SiteChange`, migration
//! `DeviceRoles`), like a device moving site, so the sums follow at once. [`device_energy`] is
//! the door's per-meter read, for the site page's breakdown.
//!
//! Apparent energy for kVA demand (`"DemandVAh"`): a device's `ApparentVAh` when its meter has
//! that counter; otherwise its `MaxVA` × 0.25 h, the highest apparent power sampled held for the
//! whole interval (an upper bound: a bill never understates demand the meter saw); with neither,
//! its active energy (a lower bound, exact at unity power factor).
//!
//! Reactive energy (`"ReactiveImportVarh"`, `"ReactiveExportVarh"`, for reactive charges and
//! power-factor adjustments) is known for a site's interval only when every device interval in
//! it has it: a sum over some of the main meters would understate it, so it is NULL (unknown)
//! instead, and so it is for intervals rolled up before the counters were (migration
//! `ReactiveEnergy`) until a rebuild recomputes them.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

/// A site's energy in one 15-minute interval, its devices' intervals summed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteInterval {
    pub start: DateTime<Utc>,
    pub import_wh: f64,
    pub export_wh: f64,
    /// Apparent energy for kVA demand, with the per-device fallbacks of the module doc.
    pub vah: f64,
    /// Device intervals that made up the interval (for the data completeness).
    pub rows: u32,
    /// Any of them estimated (energy spread over a data gap).
    pub estimated: bool,
    /// Reactive energy imported (lagging, what reactive charges bill) and exported; `None` when
    /// unknown (a main meter without the counter: see the module doc).
    pub reactive_import_varh: Option<f64>,
    pub reactive_export_varh: Option<f64>,
}

/// A site and a time range `[from, to)` to read: its main meters' energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteRange {
    pub site: i32,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// What the door answers for one [`SiteRange`].
#[derive(Debug, Clone, PartialEq)]
pub struct SiteEnergy {
    /// Devices the sums are over (the site's main meters now): with the intervals, the data
    /// completeness of a period.
    pub devices: u32,
    /// Oldest first; intervals without any device's data are absent.
    pub intervals: Vec<SiteInterval>,
}

/// The devices `d` a site's sums add up: its main meters.
const MAIN_METERS: &str = r#"d."Role" = 'main'"#;

/// The sum of device intervals `e` per site and interval: the one definition the stored sums
/// and the door's live part share.
const SUMS: &str = r#"sum(e."ImportWh"), sum(e."ExportWh"),
    sum(COALESCE(e."ApparentVAh", e."MaxVA"::float8 * 0.25, e."ImportWh")), count(*)::int4, bool_or(e."Estimated"),
    CASE WHEN count(e."ReactiveImportVarh") = count(*) THEN sum(e."ReactiveImportVarh") END,
    CASE WHEN count(e."ReactiveExportVarh") = count(*) THEN sum(e."ReactiveExportVarh") END"#;

/// The door's statement over the ranges `UNNEST($1 sites, $2 from, $3 to)`: one row per range
/// `k` (1-based) and interval, `(k, "Start", import, export, VAh, rows, estimated, reactive
/// import, reactive export)`. The one text
/// both [`sites_intervals`] and [`site_buckets`] read, so a sum of buckets is a sum of the door.
fn door_sql() -> String {
    format!(
        r#"WITH q AS (SELECT q.k, q.site, q.lo, q.hi, coalesce(s."From", 'infinity') AS stale
                      FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS q(site, lo, hi, k)
                      LEFT JOIN monitoring."SiteEnergyStale" s ON s."SiteId" = q.site)
           SELECT q.k, i."Start", i."ImportWh", i."ExportWh", i."DemandVAh", i."Rows", i."Estimated",
                  i."ReactiveImportVarh", i."ReactiveExportVarh"
           FROM q JOIN monitoring."SiteEnergyIntervals" i
                ON i."SiteId" = q.site AND i."Start" >= q.lo AND i."Start" < least(q.hi, q.stale)
           UNION ALL
           SELECT q.k, e."Start", {SUMS}
           FROM q
           CROSS JOIN LATERAL (SELECT d."Id" FROM monitoring."Devices" d
                               WHERE d."SiteId" = q.site AND {MAIN_METERS} AND q.stale < q.hi OFFSET 0) d
           CROSS JOIN LATERAL (SELECT * FROM monitoring."EnergyIntervals" e
                               WHERE e."DeviceId" = d."Id" AND e."Start" >= greatest(q.lo, q.stale) AND e."Start" < q.hi
                               OFFSET 0) e
           GROUP BY q.k, e."Start""#
    )
}

/// A site's imported energy in one bucket of [`site_buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BucketEnergy {
    pub import_wh: f64,
    /// Site intervals with data in the bucket (a local DST day has 92 or 100 of a full 96).
    pub intervals: u32,
}

/// A site's (main meters') imported energy per bucket `[bounds[k], bounds[k + 1])`, summed by
/// the database from the door's intervals (as fresh as [`sites_intervals`]): `bounds.len() - 1`
/// buckets, ascending bounds. The caller computes the bounds (a site's local midnights, so
/// local days and months are DST-correct by construction) and binds them: the site page's
/// year of monthly bars is 12 rows instead of 35,000 intervals (issue 21).
pub async fn site_buckets(db: &PgPool, site: i32, bounds: &[DateTime<Utc>]) -> Result<Vec<BucketEnergy>, sqlx::Error> {
    let (Some(from), Some(to)) = (bounds.first(), bounds.last()) else { return Ok(Vec::new()) };
    let sql = format!(
        r#"SELECT width_bucket(i.s, $4::timestamptz[])::int4, sum(i.wh)::float8, count(*)::int4
           FROM ({door}) AS i(k, s, wh, x, vah, n, est, ri, re)
           GROUP BY 1"#,
        door = door_sql()
    );
    let rows: Vec<(i32, f64, i32)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(vec![site])
        .bind(vec![*from])
        .bind(vec![*to])
        .bind(bounds)
        .fetch_all(db)
        .await?;
    let mut out = vec![BucketEnergy::default(); bounds.len().saturating_sub(1)];
    for (b, wh, n) in rows {
        // width_bucket numbers [bounds[k-1], bounds[k]) as k.
        if let Some(bucket) = usize::try_from(b - 1).ok().and_then(|k| out.get_mut(k)) {
            *bucket = BucketEnergy { import_wh: wh, intervals: n.max(0) as u32 };
        }
    }
    Ok(out)
}

/// One site's energy over `[from, to)`: see [`sites_intervals`].
pub async fn site_intervals(
    db: &PgPool,
    site: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<SiteEnergy, sqlx::Error> {
    let mut energy = sites_intervals(db, &[SiteRange { site, from, to }]).await?;
    Ok(energy.pop().unwrap_or(SiteEnergy { devices: 0, intervals: Vec::new() }))
}

/// The energy of each range, in the order asked, always as fresh as the device intervals: in one
/// statement (one snapshot) it reads a site's stored sums before the site's stale point and sums
/// its devices' intervals from there on, so a queued refresh that has not run yet changes
/// nothing but the speed. It never writes: consumers call it on every page.
///
/// The live part probes each device's intervals by index (the laterals, kept from being
/// flattened by `OFFSET 0`) and only for a range that is stale at all: planned as a join, it
/// scanned the whole interval table for every fresh bill (48 ms of a 50 ms bill, measured).
pub async fn sites_intervals(db: &PgPool, ranges: &[SiteRange]) -> Result<Vec<SiteEnergy>, sqlx::Error> {
    let sites: Vec<i32> = ranges.iter().map(|r| r.site).collect();
    let sql = door_sql();
    type Row = (i64, DateTime<Utc>, f64, f64, f64, i32, bool, Option<f64>, Option<f64>);
    let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&sites)
        .bind(ranges.iter().map(|r| r.from).collect::<Vec<_>>())
        .bind(ranges.iter().map(|r| r.to).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    let devices: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        r#"SELECT (SELECT count(*) FROM monitoring."Devices" d WHERE d."SiteId" = q.site AND {MAIN_METERS})
           FROM UNNEST($1::int4[]) WITH ORDINALITY AS q(site, k) ORDER BY q.k"#
    )))
    .bind(&sites)
    .fetch_all(db)
    .await?;
    let mut out: Vec<SiteEnergy> = devices
        .into_iter()
        .map(|n| SiteEnergy { devices: u32::try_from(n).unwrap_or(u32::MAX), intervals: Vec::new() })
        .collect();
    for (k, start, import_wh, export_wh, vah, rows, estimated, reactive_import_varh, reactive_export_varh) in rows {
        let rows = rows.max(0) as u32;
        let interval = SiteInterval {
            start,
            import_wh,
            export_wh,
            vah,
            rows,
            estimated,
            reactive_import_varh,
            reactive_export_varh,
        };
        if let Some(energy) = usize::try_from(k - 1).ok().and_then(|i| out.get_mut(i)) {
            energy.intervals.push(interval);
        }
    }
    // Sorted here: a sort in the statement cost more than the rest of it (measured).
    for energy in &mut out {
        energy.intervals.sort_unstable_by_key(|i| i.start);
    }
    Ok(out)
}

/// A site's range and how its demand is measured there, for [`demand_peaks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakRange {
    pub range: SiteRange,
    /// The site's IANA zone: block intervals start on its clock (every 15, 30 or 60 minutes from
    /// local midnight).
    pub time_zone: String,
    /// 15, 30 or 60.
    pub window_minutes: u32,
    /// A sliding interval may start at any quarter hour; a block one only on the clock.
    pub sliding: bool,
    /// Apparent energy (kVA demand) rather than active (kW).
    pub apparent: bool,
}

/// The highest demand interval of each range, in the order asked: its energy (Wh, or VAh when
/// `apparent`) and its first instant (of equals, the earliest), or `None` without data. Summed
/// and compared by the database from the door's intervals (the same statement, so as fresh as
/// [`sites_intervals`]): a ratchet looks back at up to 36 billing periods, and reading their
/// 100,000 intervals for every bill of the Overview and the alarm evaluator is what this saves
/// (one row per period instead of about 2,900). Intervals are laid as the tariff engine lays a
/// demand charge's (`tariffs::engine`): blocks keyed by local start and UTC offset (a repeated
/// hour is two blocks), sliding windows over the intervals present, never across a range's end.
pub async fn demand_peaks(db: &PgPool, asks: &[PeakRange]) -> Result<Vec<Option<(f64, DateTime<Utc>)>>, sqlx::Error> {
    if asks.is_empty() {
        return Ok(Vec::new());
    }
    // A window's RANGE offset must be a constant: one named window per sliding length.
    let sql = format!(
        r#"WITH p AS (SELECT * FROM UNNEST($4::text[], $5::int4[], $6::bool[], $7::bool[])
                      WITH ORDINALITY AS p(tz, w, sliding, apparent, k)),
                i AS (SELECT i.k, i.s, CASE WHEN p.apparent THEN i.vah ELSE i.wh END AS energy, p.tz, p.w, p.sliding
                      FROM ({door}) AS i(k, s, wh, x, vah, n, est) JOIN p ON p.k = i.k),
                blocks AS (SELECT k, min(s) AS first_start, sum(energy) AS energy FROM i WHERE NOT sliding
                           GROUP BY k, date_bin(make_interval(mins => w), s AT TIME ZONE tz, timestamp '2000-01-01'),
                                    (s AT TIME ZONE tz) - (s AT TIME ZONE 'UTC')),
                slides AS (SELECT k, s AS first_start,
                                  CASE w WHEN 15 THEN energy WHEN 30 THEN sum(energy) OVER w30
                                         ELSE sum(energy) OVER w60 END AS energy
                           FROM i WHERE sliding
                           WINDOW w30 AS (PARTITION BY k ORDER BY s RANGE BETWEEN CURRENT ROW AND interval '15 minutes' FOLLOWING),
                                  w60 AS (PARTITION BY k ORDER BY s RANGE BETWEEN CURRENT ROW AND interval '45 minutes' FOLLOWING))
           SELECT DISTINCT ON (k) k, energy, first_start
           FROM (SELECT k, first_start, energy FROM blocks UNION ALL SELECT k, first_start, energy FROM slides) c
           ORDER BY k, energy DESC, first_start"#,
        door = door_sql()
    );
    let rows: Vec<(i64, f64, DateTime<Utc>)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(asks.iter().map(|a| a.range.site).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| a.range.from).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| a.range.to).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| a.time_zone.as_str()).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| i32::try_from(a.window_minutes).unwrap_or(15)).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| a.sliding).collect::<Vec<_>>())
        .bind(asks.iter().map(|a| a.apparent).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    let mut out = vec![None; asks.len()];
    for (k, e, first) in rows {
        if let Some(slot) = usize::try_from(k - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some((e, first));
        }
    }
    Ok(out)
}

/// One meter's energy over each of the ranges asked.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEnergy {
    pub device: i32,
    /// Imported Wh per range, in the order asked.
    pub import_wh: Vec<f64>,
}

/// The energy of every device of `site` (whatever its role) over each range `[from, to)`: the
/// per-meter read behind a site's sub-meter breakdown. One index probe per device and range,
/// like the door's live part; devices without intervals in a range have 0 there.
pub async fn device_energy(
    db: &PgPool,
    site: i32,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Result<Vec<DeviceEnergy>, sqlx::Error> {
    let rows: Vec<(i32, Vec<f64>)> = sqlx::query_as(
        r#"SELECT d."Id", array_agg(coalesce(e.wh, 0) ORDER BY q.k)
           FROM monitoring."Devices" d
           CROSS JOIN UNNEST($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS q(lo, hi, k)
           CROSS JOIN LATERAL (SELECT sum(e."ImportWh") AS wh FROM monitoring."EnergyIntervals" e
                               WHERE e."DeviceId" = d."Id" AND e."Start" >= q.lo AND e."Start" < q.hi) e
           WHERE d."SiteId" = $1
           GROUP BY d."Id" ORDER BY d."Id""#,
    )
    .bind(site)
    .bind(ranges.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.1).collect::<Vec<_>>())
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(device, import_wh)| DeviceEnergy { device, import_wh }).collect())
}

/// Queues the sites of `devices` for a refresh from `from` (per device) on: called by every
/// writer of device intervals in its transaction. A refresh holding a site's queue row makes
/// this wait and queue the site anew after it.
pub(super) async fn queue_sites(
    conn: &mut PgConnection,
    devices: &[i32],
    from: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From")
           SELECT d."SiteId", min(s.f) FROM UNNEST($1::int4[], $2::timestamptz[]) AS s(id, f)
           JOIN monitoring."Devices" d ON d."Id" = s.id GROUP BY d."SiteId" ORDER BY d."SiteId"
           ON CONFLICT ("SiteId") DO UPDATE SET "From" = least(monitoring."SiteEnergyStale"."From", EXCLUDED."From")"#,
    )
    .bind(devices)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recomputes every queued site's sums from its stale interval on; returns how many sites it
/// refreshed. The rollup job runs it after every run (and the rebuild when it is done), which
/// keeps the door's live part short. Safe to run concurrently with writers: a write racing a
/// refresh queues the site again.
pub async fn refresh_site_sums(db: &PgPool) -> Result<u64, sqlx::Error> {
    let queued: Vec<i32> =
        sqlx::query_scalar(r#"SELECT "SiteId" FROM monitoring."SiteEnergyStale""#).fetch_all(db).await?;
    let mut refreshed = 0;
    for site in queued {
        let mut tx = db.begin().await?;
        // Holding the queue row makes a concurrent writer wait and queue the site anew after us.
        // Its stale point is read here and bound below as a parameter: as a sub-select (or a
        // join) the planner does not know it, plans for a third of the interval table, scans it
        // and JIT-compiles the plan (226 ms per refresh with a year of 100 devices, where the
        // known bound takes 1-2 ms: issue 21). NULL stands for '-infinity' (everything), which
        // has no chrono value.
        let queued: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            r#"SELECT CASE WHEN isfinite("From") THEN "From" END FROM monitoring."SiteEnergyStale"
               WHERE "SiteId" = $1 FOR UPDATE"#,
        )
        .bind(site)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(from) = queued else {
            continue; // refreshed by someone else meanwhile
        };
        sqlx::query(
            r#"DELETE FROM monitoring."SiteEnergyIntervals" WHERE "SiteId" = $1
               AND "Start" >= coalesce($2::timestamptz, '-infinity')"#,
        )
        .bind(site)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            r#"INSERT INTO monitoring."SiteEnergyIntervals"
                   ("SiteId", "Start", "ImportWh", "ExportWh", "DemandVAh", "Rows", "Estimated",
                    "ReactiveImportVarh", "ReactiveExportVarh")
               SELECT d."SiteId", e."Start", {SUMS}
               FROM monitoring."EnergyIntervals" e JOIN monitoring."Devices" d ON d."Id" = e."DeviceId"
               WHERE d."SiteId" = $1 AND {MAIN_METERS}
                 AND e."Start" >= coalesce($2::timestamptz, '-infinity')
               GROUP BY d."SiteId", e."Start""#
        )))
        .bind(site)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        sqlx::query(r#"DELETE FROM monitoring."SiteEnergyStale" WHERE "SiteId" = $1"#)
            .bind(site)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        refreshed += 1;
    }
    Ok(refreshed)
}
