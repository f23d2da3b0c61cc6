//! How far the rollup has got per device (`monitoring."EnergyWatermarks"`, with a rebuild's
//! claim in `"ClaimedUntil"`) and the notes of readings that arrived behind it
//! (`monitoring."EnergyBackfills"`): both tables' SQL. Who locks a watermark row how is the
//! protocol of the module doc (`energy/mod.rs`, "Who locks what").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

use super::maths::{
    APPARENT, CHANNELS, ChannelState, EXPORT, IMPORT, Observation, Point, REACTIVE_EXPORT, REACTIVE_IMPORT, State,
};
use crate::measurements::FirstReadings;

/// A device with a watermark row, and where its next run would start reading: the earlier of its
/// watermark and its backfill note, or for a device never rolled up its first reading (`None`:
/// it has none). A hint for planning runs, read without locks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Pending {
    pub device: i32,
    pub start: Option<DateTime<Utc>>,
}

/// Creates the missing watermark rows and returns the devices. Committed before any run: the
/// write path can only notice a late reading for a device that has a watermark row.
pub(super) async fn ensure(db: &PgPool, devices: Option<&[i32]>) -> Result<Vec<Pending>, sqlx::Error> {
    sqlx::query(
        r#"INSERT INTO monitoring."EnergyWatermarks" ("DeviceId")
           SELECT "Id" FROM monitoring."Devices" WHERE $1::int4[] IS NULL OR "Id" = ANY($1)
           ON CONFLICT DO NOTHING"#,
    )
    .bind(devices)
    .execute(db)
    .await?;
    let rows: Vec<(i32, Option<DateTime<Utc>>)> = sqlx::query_as(
        r#"SELECT w."DeviceId",
                  CASE WHEN w."Carry" IS NOT NULL AND b."From" IS NULL THEN w."SeenUntil"
                       WHEN w."ProcessedUntil" > '1900-01-01' THEN least(w."ProcessedUntil", b."From")
                       ELSE (SELECT min("Time") FROM monitoring."PowerMeasurements" m WHERE m."DeviceId" = w."DeviceId")
                  END
           FROM monitoring."EnergyWatermarks" w LEFT JOIN monitoring."EnergyBackfills" b ON b."DeviceId" = w."DeviceId"
           WHERE $1::int4[] IS NULL OR w."DeviceId" = ANY($1)
           ORDER BY w."DeviceId""#,
    )
    .bind(devices)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(device, start)| Pending { device, start }).collect())
}

/// The earliest watermark of a device that has been rolled up at all (for the lag metric).
pub(super) async fn oldest(db: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        r#"SELECT min("ProcessedUntil") FROM monitoring."EnergyWatermarks" WHERE "ProcessedUntil" > '1900-01-01'"#,
    )
    .fetch_one(db)
    .await
}

pub(super) struct Watermark {
    pub state: State,
    /// The latest cutoff a run read up to.
    pub seen_until: DateTime<Utc>,
    /// The interval in progress at `state.from` as a run left it: the summary of its readings
    /// before `seen_until` (`"Carry"`; see [`Carry`]).
    pub carry: Option<Observation>,
}

/// What a run saves of a device: its state, the cutoff it read up to, and the interval in
/// progress it carries to the next run (a summary of the interval at `state.from`, of every
/// reading before `seen_until`).
pub(super) struct Mark {
    pub device: i32,
    pub state: State,
    pub seen_until: DateTime<Utc>,
    pub carry: Option<Observation>,
}

/// The stored form of a carried interval (jsonb): [`Observation`] with its powers widened to
/// f64, so the text holds every value exactly (a float32 written as its shortest decimal and
/// read back through a float64 may round twice).
#[derive(Serialize, Deserialize)]
struct Carry {
    start: DateTime<Utc>,
    samples: u32,
    last_time: DateTime<Utc>,
    max_w: Option<f64>,
    max_va: Option<f64>,
    points: [Vec<(DateTime<Utc>, f64)>; CHANNELS],
}

impl Carry {
    /// `None` for a value JSON cannot hold (not finite): that interval is read again instead.
    fn of(o: &Observation) -> Option<Carry> {
        let finite = o.points.iter().flatten().all(|p| p.value.is_finite())
            && [o.max_w, o.max_va].iter().flatten().all(|v| v.is_finite());
        finite.then(|| Carry {
            start: o.start,
            samples: o.samples,
            last_time: o.last_time,
            max_w: o.max_w.map(f64::from),
            max_va: o.max_va.map(f64::from),
            points: o.points.clone().map(|points| points.into_iter().map(|p| (p.time, p.value)).collect()),
        })
    }

    fn observation(self) -> Observation {
        Observation {
            start: self.start,
            samples: self.samples,
            last_time: self.last_time,
            // Exact: the values were float32 when widened.
            max_w: self.max_w.map(|v| v as f32),
            max_va: self.max_va.map(|v| v as f32),
            points: self.points.map(|points| points.into_iter().map(|(time, value)| Point { time, value }).collect()),
        }
    }
}

/// Locks the devices' watermark rows for the rest of the transaction (in id order, as every
/// locker does, so two never wait for each other) and returns them.
pub(super) async fn lock(conn: &mut PgConnection, devices: &[i32]) -> Result<Vec<(i32, Watermark)>, sqlx::Error> {
    let rows = sqlx::query(
        r#"SELECT * FROM monitoring."EnergyWatermarks" WHERE "DeviceId" = ANY($1) ORDER BY "DeviceId" FOR UPDATE"#,
    )
    .bind(devices)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let mut channels = [ChannelState::default(); CHANNELS];
            for (c, (at, value, stale)) in CHANNEL_COLUMNS.iter().enumerate() {
                let time: Option<DateTime<Utc>> = row.try_get(*at)?;
                let value: Option<f64> = row.try_get(*value)?;
                channels[c] = ChannelState {
                    last: time.zip(value).map(|(time, value)| Point { time, value }),
                    stale: row.try_get(*stale)?,
                };
            }
            let state = State { from: row.try_get("ProcessedUntil")?, channels };
            // A carry that does not read back (or not for this state) is left out: the run reads
            // the interval again.
            let carry = row
                .try_get::<Option<Json<serde_json::Value>>, _>("Carry")?
                .and_then(|carry| serde_json::from_value::<Carry>(carry.0).ok())
                .map(Carry::observation)
                .filter(|carry| carry.start == state.from);
            Ok((row.try_get("DeviceId")?, Watermark { state, seen_until: row.try_get("SeenUntil")?, carry }))
        })
        .collect()
}

const CHANNEL_COLUMNS: [(&str, &str, &str); CHANNELS] = [
    ("ImportAt", "ImportWh", "ImportStale"),
    ("ExportAt", "ExportWh", "ExportStale"),
    ("ApparentAt", "ApparentVAh", "ApparentStale"),
    ("ReactiveImportAt", "ReactiveImportVarh", "ReactiveImportStale"),
    ("ReactiveExportAt", "ReactiveExportVarh", "ReactiveExportStale"),
];

/// The write path's note (in the batch's transaction, before its rows are inserted): the
/// earliest reading of each device in `first` that is older than its watermark, inside the
/// interval in progress a run carries (before its `"SeenUntil"`) or inside a rebuild's claim, so
/// the next run recomputes the device from there. FOR KEY SHARE waits for a
/// run holding the watermark (FOR UPDATE) and then sees its new value, so every reading is
/// either read by that run or noted, never neither; the lock is held until the batch commits.
pub(crate) async fn note_late_readings(tx: &mut PgConnection, first: &FirstReadings) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"WITH watermark AS (SELECT "DeviceId",
                                     greatest("ProcessedUntil", "ClaimedUntil",
                                              CASE WHEN "Carry" IS NOT NULL THEN "SeenUntil" END) AS "Until"
                              FROM monitoring."EnergyWatermarks"
                              WHERE "DeviceId" = ANY($1::int4[]) ORDER BY "DeviceId" FOR KEY SHARE)
           INSERT INTO monitoring."EnergyBackfills" ("DeviceId", "From")
           SELECT b.d, b.t FROM UNNEST($1::int4[], $2::timestamptz[]) AS b(d, t)
           JOIN watermark w ON w."DeviceId" = b.d WHERE b.t < w."Until"
           ON CONFLICT ("DeviceId") DO UPDATE SET "From" = least(monitoring."EnergyBackfills"."From", EXCLUDED."From")"#,
    )
    .bind(&first.devices)
    .bind(&first.times)
    .execute(tx)
    .await?;
    Ok(())
}

/// Takes (deletes and returns) the backfill note of each of `devices`, under their locked
/// watermarks.
pub(super) async fn take_backfills(
    conn: &mut PgConnection,
    devices: &[i32],
) -> Result<Vec<(i32, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        r#"DELETE FROM monitoring."EnergyBackfills" WHERE "DeviceId" = ANY($1) RETURNING "DeviceId", "From""#,
    )
    .bind(devices)
    .fetch_all(conn)
    .await
}

/// A rebuild's claim: until it ends (with [`save`]), the write path notes every reading of the
/// device older than `until` as late, while the rebuild reads without holding the row.
pub(super) async fn claim(conn: &mut PgConnection, claims: &[(i32, DateTime<Utc>)]) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"UPDATE monitoring."EnergyWatermarks" w SET "ClaimedUntil" = c.t
           FROM UNNEST($1::int4[], $2::timestamptz[]) AS c(d, t) WHERE w."DeviceId" = c.d"#,
    )
    .bind(claims.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Saves the devices' states as their watermarks with what they carry; `SeenUntil` only moves
/// forward, a rebuild's claim ends (the job runs only when no rebuild does, and a rebuild saves
/// when it is done).
pub(super) async fn save(conn: &mut PgConnection, marks: &[Mark]) -> Result<(), sqlx::Error> {
    if marks.is_empty() {
        return Ok(());
    }
    let at = |c: usize| marks.iter().map(|m| m.state.channels[c].last.map(|p| p.time)).collect::<Vec<_>>();
    let value = |c: usize| marks.iter().map(|m| m.state.channels[c].last.map(|p| p.value)).collect::<Vec<_>>();
    let stale = |c: usize| marks.iter().map(|m| m.state.channels[c].stale).collect::<Vec<_>>();
    let carry = marks
        .iter()
        .map(|m| m.carry.as_ref().and_then(Carry::of).and_then(|carry| serde_json::to_string(&carry).ok()))
        .collect::<Vec<_>>();
    sqlx::query(
        r#"UPDATE monitoring."EnergyWatermarks" w SET "ProcessedUntil" = s.f, "SeenUntil" = greatest(w."SeenUntil", s.seen),
               "ImportAt" = s.ia, "ImportWh" = s.iv, "ImportStale" = s."is",
               "ExportAt" = s.ea, "ExportWh" = s.ev, "ExportStale" = s.es,
               "ApparentAt" = s.aa, "ApparentVAh" = s.av, "ApparentStale" = s."as",
               "ReactiveImportAt" = s.ria, "ReactiveImportVarh" = s.riv, "ReactiveImportStale" = s.ris,
               "ReactiveExportAt" = s.rea, "ReactiveExportVarh" = s.rev, "ReactiveExportStale" = s.res,
               -- A carry holds the readings before the cutoff it was read up to, which is where
               -- the write path's note starts: kept only when that is "SeenUntil".
               "Carry" = CASE WHEN s.seen >= w."SeenUntil" THEN s.carry::jsonb END, "ClaimedUntil" = NULL
           FROM UNNEST($1::int4[], $2::timestamptz[], $3::timestamptz[],
                       $4::timestamptz[], $5::float8[], $6::bool[],
                       $7::timestamptz[], $8::float8[], $9::bool[],
                       $10::timestamptz[], $11::float8[], $12::bool[],
                       $13::timestamptz[], $14::float8[], $15::bool[],
                       $16::timestamptz[], $17::float8[], $18::bool[], $19::text[])
                AS s(d, f, seen, ia, iv, "is", ea, ev, es, aa, av, "as", ria, riv, ris, rea, rev, res, carry)
           WHERE w."DeviceId" = s.d"#,
    )
    .bind(marks.iter().map(|m| m.device).collect::<Vec<_>>())
    .bind(marks.iter().map(|m| m.state.from).collect::<Vec<_>>())
    .bind(marks.iter().map(|m| m.seen_until).collect::<Vec<_>>())
    .bind(at(IMPORT))
    .bind(value(IMPORT))
    .bind(stale(IMPORT))
    .bind(at(EXPORT))
    .bind(value(EXPORT))
    .bind(stale(EXPORT))
    .bind(at(APPARENT))
    .bind(value(APPARENT))
    .bind(stale(APPARENT))
    .bind(at(REACTIVE_IMPORT))
    .bind(value(REACTIVE_IMPORT))
    .bind(stale(REACTIVE_IMPORT))
    .bind(at(REACTIVE_EXPORT))
    .bind(value(REACTIVE_EXPORT))
    .bind(stale(REACTIVE_EXPORT))
    .bind(carry)
    .execute(conn)
    .await?;
    Ok(())
}
