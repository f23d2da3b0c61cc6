//! The energy anomalies (`monitoring."EnergyAnomalies"`): counter points the rollup did not count
//! and why (maths.rs, `Anomaly`), recorded by the interval writer, read by the device page.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::intervals::Replacement;

const CHANNELS: [&str; 3] = ["import", "export", "apparent"];

/// Notes the replacements' anomalies (each once, however often a recomputation meets it).
pub(super) async fn record(conn: &mut PgConnection, replacements: &[Replacement]) -> Result<(), sqlx::Error> {
    let rows: Vec<(i32, &super::maths::Anomaly)> =
        replacements.iter().flat_map(|r| r.anomalies.iter().map(move |a| (r.device, a))).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let (mut devices, mut times, mut channels, mut kinds, mut texts) = (vec![], vec![], vec![], vec![], vec![]);
    for (device, a) in rows {
        devices.push(device);
        times.push(a.point.time);
        channels.push(CHANNELS.get(a.channel).copied().unwrap_or("import"));
        kinds.push(a.kind.code());
        texts.push(a.describe());
    }
    // Devices deleted meanwhile are skipped (the join), as the interval writer skips them.
    sqlx::query(
        r#"INSERT INTO monitoring."EnergyAnomalies" ("DeviceId", "Time", "Channel", "Kind", "Description")
           SELECT a.d, a.t, a.c, a.k, a.x FROM UNNEST($1::int4[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
               AS a(d, t, c, k, x)
           JOIN monitoring."Devices" dev ON dev."Id" = a.d
           ON CONFLICT ("DeviceId", "Time", "Channel") DO NOTHING"#,
    )
    .bind(devices)
    .bind(times)
    .bind(channels)
    .bind(kinds)
    .bind(texts)
    .execute(conn)
    .await?;
    Ok(())
}

/// One recorded anomaly, for display.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AnomalyRow {
    #[sqlx(rename = "Time")]
    pub time: DateTime<Utc>,
    #[sqlx(rename = "Kind")]
    pub kind: String,
    #[sqlx(rename = "Description")]
    pub description: String,
}

/// A device's most recent anomalies, newest first, and how many there are in all.
pub async fn of_device(
    db: impl PgExecutor<'_> + Copy,
    device: i32,
    limit: i64,
) -> Result<(Vec<AnomalyRow>, i64), sqlx::Error> {
    let rows = sqlx::query_as(
        r#"SELECT "Time", "Kind", "Description" FROM monitoring."EnergyAnomalies"
           WHERE "DeviceId" = $1 ORDER BY "Time" DESC LIMIT $2"#,
    )
    .bind(device)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."EnergyAnomalies" WHERE "DeviceId" = $1"#)
        .bind(device)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}
