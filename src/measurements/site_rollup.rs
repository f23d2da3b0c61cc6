//! Per-site 15-minute energy (`monitoring."SiteEnergyIntervals"`): the devices' intervals summed,
//! refreshed from the queue of stale sites (`"SiteEnergyStale"`): the rollup's interval writers
//! queue the sites they change (rollup.rs, `queue_sites`), a database trigger those of devices
//! moved or deleted (migrations `SiteEnergyIntervals` and `RebuildClaim`). A month's bill then reads one row per interval, whatever the number
//! of devices.

use sqlx::PgPool;

/// Recomputes every queued site from its stale interval on; returns how many sites it refreshed.
/// Safe to run concurrently with writers: a write racing a refresh queues the site again.
///
/// Apparent energy for kVA demand (`"DemandVAh"`): a device's `ApparentVAh` when its meter has
/// that counter; otherwise its `MaxVA` × 0.25 h, the highest apparent power sampled held for the
/// whole interval (an upper bound: a bill never understates demand the meter saw); with neither,
/// its active energy (a lower bound, exact at unity power factor).
pub async fn refresh(db: &PgPool) -> Result<u64, sqlx::Error> {
    let queued: Vec<i32> =
        sqlx::query_scalar(r#"SELECT "SiteId" FROM monitoring."SiteEnergyStale""#).fetch_all(db).await?;
    let mut refreshed = 0;
    for site in queued {
        let mut tx = db.begin().await?;
        // Holding the queue row makes a concurrent writer wait and queue the site anew after us.
        // "From" stays in SQL: it may be '-infinity', which has no chrono value.
        let queued = sqlx::query(r#"SELECT 1 FROM monitoring."SiteEnergyStale" WHERE "SiteId" = $1 FOR UPDATE"#)
            .bind(site)
            .fetch_optional(&mut *tx)
            .await?;
        if queued.is_none() {
            continue; // refreshed by someone else meanwhile
        }
        sqlx::query(
            r#"DELETE FROM monitoring."SiteEnergyIntervals" WHERE "SiteId" = $1
               AND "Start" >= (SELECT "From" FROM monitoring."SiteEnergyStale" WHERE "SiteId" = $1)"#,
        )
        .bind(site)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            r#"INSERT INTO monitoring."SiteEnergyIntervals"
                   ("SiteId", "Start", "ImportWh", "ExportWh", "DemandVAh", "Rows", "Estimated")
               SELECT d."SiteId", e."Start", sum(e."ImportWh"), sum(e."ExportWh"),
                      sum(COALESCE(e."ApparentVAh", e."MaxVA"::float8 * 0.25, e."ImportWh")),
                      count(*)::int4, bool_or(e."Estimated")
               FROM monitoring."EnergyIntervals" e JOIN monitoring."Devices" d ON d."Id" = e."DeviceId"
               WHERE d."SiteId" = $1
                 AND e."Start" >= (SELECT "From" FROM monitoring."SiteEnergyStale" WHERE "SiteId" = $1)
               GROUP BY d."SiteId", e."Start""#,
        )
        .bind(site)
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
