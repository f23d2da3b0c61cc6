//! The measurement store: the ONE write path every ingestion path (ingest API, Modbus poller,
//! MQTT) goes through, the quantities it stores, in SI units, and how many it stored per day.

pub mod buffer;
pub mod copy;
pub mod energy;
pub mod hourly;
pub mod queries;

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

/// Instantaneous quantities, stored as float4: (JSON name, column, unit).
pub const REAL_QUANTITIES: [(&str, &str, &str); 30] = [
    ("frequency", "Frequency", "Hz"),
    ("v1", "V1", "V"),
    ("v2", "V2", "V"),
    ("v3", "V3", "V"),
    ("v12", "V12", "V"),
    ("v23", "V23", "V"),
    ("v31", "V31", "V"),
    ("i1", "I1", "A"),
    ("i2", "I2", "A"),
    ("i3", "I3", "A"),
    ("iN", "IN", "A"),
    ("p1", "P1", "W"),
    ("p2", "P2", "W"),
    ("p3", "P3", "W"),
    ("pTotal", "PTotal", "W"),
    ("q1", "Q1", "var"),
    ("q2", "Q2", "var"),
    ("q3", "Q3", "var"),
    ("qTotal", "QTotal", "var"),
    ("s1", "S1", "VA"),
    ("s2", "S2", "VA"),
    ("s3", "S3", "VA"),
    ("sTotal", "STotal", "VA"),
    ("pf1", "PF1", ""),
    ("pf2", "PF2", ""),
    ("pf3", "PF3", ""),
    ("pfTotal", "PFTotal", ""),
    ("demandW", "DemandW", "W"),
    ("demandVar", "DemandVar", "var"),
    ("demandVA", "DemandVA", "VA"),
];

/// Cumulative counters, stored as float8: (JSON name, column, unit).
pub const COUNTER_QUANTITIES: [(&str, &str, &str); 5] = [
    ("energyImportWh", "EnergyImportWh", "Wh"),
    ("energyExportWh", "EnergyExportWh", "Wh"),
    ("reactiveImportVarh", "ReactiveImportVarh", "varh"),
    ("reactiveExportVarh", "ReactiveExportVarh", "varh"),
    ("apparentVAh", "ApparentVAh", "VAh"),
];

/// Position of a stored quantity in [`Reading::real`], by its JSON name; a name that is not in
/// [`REAL_QUANTITIES`] fails the build: callers use it in const tables only.
pub const fn real_index(name: &str) -> usize {
    let mut i = 0;
    while i < REAL_QUANTITIES.len() {
        if str_eq(REAL_QUANTITIES[i].0, name) {
            return i;
        }
        i += 1;
    }
    panic!("not a stored real quantity")
}

/// Position of a counter in [`Reading::counters`], by its JSON name (see [`real_index`]).
pub const fn counter_index(name: &str) -> usize {
    let mut i = 0;
    while i < COUNTER_QUANTITIES.len() {
        if str_eq(COUNTER_QUANTITIES[i].0, name) {
            return i;
        }
        i += 1;
    }
    panic!("not a stored counter")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A stored quantity, by its JSON name: where [`Reading::set`] puts a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(Slot);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Real(usize),
    Counter(usize),
}

impl Quantity {
    /// The quantity called `name` in [`REAL_QUANTITIES`] or [`COUNTER_QUANTITIES`].
    pub fn named(name: &str) -> Option<Quantity> {
        let real = REAL_QUANTITIES.iter().position(|q| q.0 == name).map(Slot::Real);
        real.or_else(|| COUNTER_QUANTITIES.iter().position(|q| q.0 == name).map(Slot::Counter)).map(Quantity)
    }

    /// Its SI unit ("" for power factors).
    pub fn unit(self) -> &'static str {
        match self.0 {
            Slot::Real(i) => REAL_QUANTITIES[i].2,
            Slot::Counter(i) => COUNTER_QUANTITIES[i].2,
        }
    }

    /// Every quantity's JSON name, comma-separated (for error messages that list them).
    pub fn names() -> String {
        REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| q.0).collect::<Vec<_>>().join(", ")
    }
}

/// The quantities as a Markdown table for the README (a test keeps the two in step).
pub fn markdown_table() -> String {
    let mut out = String::from("| Field | Column | Unit | Stored as |\n|---|---|---|---|\n");
    for (name, column, unit) in REAL_QUANTITIES {
        out.push_str(&format!(
            "| `{name}` | `\"{column}\"` | {} | float4 |\n",
            if unit.is_empty() { "–" } else { unit }
        ));
    }
    for (name, column, unit) in COUNTER_QUANTITIES {
        out.push_str(&format!("| `{name}` | `\"{column}\"` | {unit} (cumulative) | float8 |\n"));
    }
    out
}

/// How far ahead of the server's clock a timestamp may be (meter clocks drift); beyond it the
/// row is refused rather than stored where it would distort "latest" views.
pub const MAX_FUTURE: chrono::Duration = chrono::Duration::minutes(5);

/// One reading of one device at one time. `None`, NaN and infinities are stored as NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub device_id: i32,
    pub time: DateTime<Utc>,
    pub real: [Option<f32>; REAL_QUANTITIES.len()],
    pub counters: [Option<f64>; COUNTER_QUANTITIES.len()],
}

impl Reading {
    pub fn empty(device_id: i32, time: DateTime<Utc>) -> Reading {
        Reading { device_id, time, real: [None; REAL_QUANTITIES.len()], counters: [None; COUNTER_QUANTITIES.len()] }
    }

    /// Sets one quantity (instantaneous ones are stored as float4).
    pub fn set(&mut self, quantity: Quantity, value: Option<f64>) {
        match quantity.0 {
            Slot::Real(i) => self.real[i] = value.map(|v| v as f32),
            Slot::Counter(i) => self.counters[i] = value,
        }
    }
}

/// The times a reading may have: from `earliest` (`Measurements__EarliestTime`: a meter clock
/// reset to year 0 or a hostile timestamp is refused) to [`MAX_FUTURE`] after `now`.
#[derive(Debug, Clone, Copy)]
pub struct Horizon {
    pub earliest: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl Horizon {
    /// Why a reading at `time` cannot be stored, if it cannot.
    pub fn check(&self, time: DateTime<Utc>) -> Result<(), String> {
        if time > self.now + MAX_FUTURE {
            Err("time is more than 5 minutes in the future".into())
        } else if time < self.earliest {
            Err(format!(
                "time is before {} (Measurements__EarliestTime): no meter reading is that old",
                self.earliest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ))
        } else {
            Ok(())
        }
    }
}

/// The stored columns, quoted, in the order of [`Reading`] and of the COPY data
/// ([`copy::encode`]): device, time, reals, counters.
pub static COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let real = REAL_QUANTITIES.iter().map(|q| q.1);
    let counters = COUNTER_QUANTITIES.iter().map(|q| q.1);
    let columns: Vec<String> =
        ["DeviceId", "Time"].into_iter().chain(real).chain(counters).map(|c| format!("\"{c}\"")).collect();
    columns.join(", ")
});

/// Opens the transaction and makes sure this connection's staging table exists, in one round
/// trip. Quiet: "already exists, skipping" would be logged for every batch otherwise. ON COMMIT
/// DELETE ROWS empties it at the end of every batch, also when the batch fails.
const BEGIN_STAGING: &str = "BEGIN; SET LOCAL client_min_messages = warning; \
    CREATE TEMP TABLE IF NOT EXISTS \"PowerMeasurementsStaging\" \
    (LIKE monitoring.\"PowerMeasurements\" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS";

static COPY_STAGING: LazyLock<String> =
    LazyLock::new(|| format!("COPY pg_temp.\"PowerMeasurementsStaging\" ({}) FROM STDIN (FORMAT binary)", *COLUMNS));

/// The staged rows of the devices `$1`, those of the batch that still exist ([`lock_devices`]).
static INSERT_STAGED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO monitoring.\"PowerMeasurements\" ({cols}) SELECT {cols} FROM pg_temp.\"PowerMeasurementsStaging\" \
         WHERE \"DeviceId\" = ANY($1) ON CONFLICT (\"DeviceId\", \"Time\") DO NOTHING",
        cols = *COLUMNS
    )
});

/// Locks the rows of `devices` FOR KEY SHARE until the transaction ends, in id order as every
/// locker of devices takes them, and returns those that exist. Every writer of rows that belong
/// to devices (the readings, the energy intervals) takes it once per batch instead of a foreign
/// key checking row by row (migrations RebuildClaim and MeasurementsDeviceLock): a device deleted
/// meanwhile is skipped (its rows would go with it), and one deleted later waits for the batch
/// and then takes its rows with it.
pub(crate) async fn lock_devices(conn: &mut PgConnection, devices: &[i32]) -> Result<HashSet<i32>, sqlx::Error> {
    let ids: Vec<i32> =
        sqlx::query_scalar(r#"SELECT "Id" FROM monitoring."Devices" WHERE "Id" = ANY($1) ORDER BY "Id" FOR KEY SHARE"#)
            .bind(devices)
            .fetch_all(conn)
            .await?;
    Ok(ids.into_iter().collect())
}

/// The earliest reading of each device in a batch being written, device ids ascending: what
/// every late-row note is given.
pub struct FirstReadings {
    pub devices: Vec<i32>,
    pub times: Vec<DateTime<Utc>>,
}

/// The late-row notes, taken in every batch's transaction before its rows are inserted: each
/// reader that keeps a position in the readings (and would otherwise never see a row written
/// behind it) notes the batch's rows behind its position, and its note commits with the rows or
/// not at all. The readers: the energy rollup (its watermarks and a rebuild's claim, see
/// `energy`), the fleet push (its send positions, `fleet::push::outbox`) and the hourly chart
/// rollup (which recomputes every batch's hours, `hourly`).
async fn note_late_rows(tx: &mut PgConnection, first: &FirstReadings) -> Result<(), sqlx::Error> {
    energy::note_late_readings(tx, first).await?;
    crate::fleet::push::outbox::note_late_readings(tx, first).await?;
    hourly::note(tx, &first.devices, &first.times).await
}

/// Stores a batch: binary COPY into a per-connection staging table, then one INSERT … SELECT
/// from it. Rows already stored for the same device and time are skipped, so a retried batch
/// never duplicates, and so are the rows of a device that no longer exists. Returns how many
/// rows were new.
///
/// Why COPY and not one `INSERT … SELECT FROM UNNEST(arrays)` (issue 5 asked to measure both):
/// with scripts/bench-ingest.sh (500,000 rows, 3 alternating runs each, busy 2-core machine)
/// UNNEST took 23.0 µs of PostgreSQL CPU per row and reached 57,248 / 69,099 / 61,858 rows/s
/// (0.86 / 0.96 / 0.91 × psql COPY); binary COPY took 18.6 µs and reached 71,901 / 63,947 /
/// 52,571 rows/s (1.20 / 0.92 / 0.97 × COPY). Ingest keeps both cores busy, so the ~20 % less
/// database CPU per row is what counts; the portal's share (~6 µs per row) is the same.
pub async fn write(db: &PgPool, readings: &[Reading]) -> Result<u64, sqlx::Error> {
    if readings.is_empty() {
        return Ok(0);
    }
    // A batch may repeat a (device, time): the first one counts, as ON CONFLICT would decide.
    let mut seen = HashSet::with_capacity(readings.len());
    let rows: Vec<&Reading> = readings.iter().filter(|r| seen.insert((r.device_id, r.time))).collect();
    let mut earliest: BTreeMap<i32, DateTime<Utc>> = BTreeMap::new();
    for r in &rows {
        earliest.entry(r.device_id).and_modify(|t| *t = (*t).min(r.time)).or_insert(r.time);
    }
    let devices: Vec<i32> = earliest.keys().copied().collect();
    let data = copy::encode(&rows)?;
    // Dropping the transaction on an error rolls it back (and a dropped COPY is aborted first).
    let mut tx = db.begin_with(BEGIN_STAGING).await?;
    let present = lock_devices(&mut tx, &devices).await?;
    earliest.retain(|device, _| present.contains(device));
    let first = FirstReadings { devices: earliest.keys().copied().collect(), times: earliest.into_values().collect() };
    let mut copy = tx.copy_in_raw(COPY_STAGING.as_str()).await?;
    copy.send(data).await?;
    copy.finish().await?;
    note_late_rows(&mut tx, &first).await?;
    let new = sqlx::query(AssertSqlSafe(INSERT_STAGED.as_str()))
        .bind(&first.devices)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if new > 0 {
        // Last before the commit, so the counter row's lock is held as briefly as it can be (and
        // after every other lock the batch takes).
        sqlx::query(COUNT_STORED).bind(i64::try_from(new).unwrap_or(i64::MAX)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(new)
}

/// Adds a batch's new rows to the readings stored today (UTC, the database's clock: when they
/// were stored, whatever their timestamps), in this connection's slot of the day (see the
/// migration ReadingsStoredPerDay: concurrent batches do not queue on one row).
const COUNT_STORED: &str = r#"INSERT INTO monitoring."ReadingsStoredPerDay" ("Day", "Slot", "Readings")
    VALUES ((now() AT TIME ZONE 'UTC')::date, pg_backend_pid() % 16, $1)
    ON CONFLICT ("Day", "Slot") DO UPDATE SET "Readings" = "ReadingsStoredPerDay"."Readings" + EXCLUDED."Readings""#;

/// How many readings were stored on each of the last `days` UTC days, today last (0 for a day
/// without any), for usage billing.
pub async fn stored_per_day(db: &PgPool, days: i32) -> Result<Vec<(NaiveDate, i64)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT d."Day"::date, COALESCE(r."Readings", 0)
           FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($1 - 1), (now() AT TIME ZONE 'UTC')::date,
                                interval '1 day') AS d ("Day")
           LEFT JOIN (SELECT "Day", sum("Readings")::bigint AS "Readings" FROM monitoring."ReadingsStoredPerDay"
                      WHERE "Day" > (now() AT TIME ZONE 'UTC')::date - $1 GROUP BY "Day") r
                  ON r."Day" = d."Day"::date
           ORDER BY d."Day""#,
    )
    .bind(days)
    .fetch_all(db)
    .await
}
