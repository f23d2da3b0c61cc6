//! The measurement store: the ONE write path every ingestion path (ingest API, Modbus poller,
//! fleet push) goes through, and the quantities it stores, in SI units.

pub mod buffer;
pub mod energy;
pub mod queries;
pub mod rollup;

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgExecutor};

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
}

/// Why a timestamp cannot be stored, if it cannot.
pub fn check_time(time: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), &'static str> {
    if time > now + MAX_FUTURE { Err("time is more than 5 minutes in the future") } else { Ok(()) }
}

static INSERT: LazyLock<String> = LazyLock::new(|| {
    let real = REAL_QUANTITIES.iter().map(|q| q.1);
    let counters = COUNTER_QUANTITIES.iter().map(|q| q.1);
    let columns: Vec<String> =
        ["DeviceId", "Time"].into_iter().chain(real).chain(counters).map(|c| format!("\"{c}\"")).collect();
    let mut params = vec!["$1::int4[]".to_string(), "$2::timestamptz[]".to_string()];
    params.extend((0..REAL_QUANTITIES.len()).map(|i| format!("${}::float4[]", i + 3)));
    params.extend((0..COUNTER_QUANTITIES.len()).map(|i| format!("${}::float8[]", i + 3 + REAL_QUANTITIES.len())));
    let late = params.len() + 1;
    // Readings older than a device's rollup watermark would never be rolled up: the earliest one
    // per device is noted in the same statement (rollup.rs recomputes from there). FOR KEY SHARE
    // waits for a rollup run holding the device's watermark (FOR UPDATE) and then sees its new
    // value, so a reading is either read by that run or noted as late, never neither.
    format!(
        "WITH watermark AS (SELECT \"DeviceId\", \"ProcessedUntil\" FROM monitoring.\"EnergyWatermarks\" \
         WHERE \"DeviceId\" = ANY(${late}::int4[]) ORDER BY \"DeviceId\" FOR KEY SHARE), \
         backfill AS (INSERT INTO monitoring.\"EnergyBackfills\" (\"DeviceId\", \"From\") \
         SELECT b.d, b.t FROM UNNEST(${late}::int4[], ${}::timestamptz[]) AS b(d, t) \
         JOIN watermark w ON w.\"DeviceId\" = b.d WHERE b.t < w.\"ProcessedUntil\" \
         ON CONFLICT (\"DeviceId\") DO UPDATE SET \"From\" = least(monitoring.\"EnergyBackfills\".\"From\", EXCLUDED.\"From\")) \
         INSERT INTO monitoring.\"PowerMeasurements\" ({}) SELECT * FROM UNNEST({}) \
         ON CONFLICT (\"DeviceId\", \"Time\") DO NOTHING",
        late + 1,
        columns.join(", "),
        params.join(", ")
    )
});

/// Stores a batch in one statement (column arrays through UNNEST). Rows already stored for the
/// same device and time are skipped, so a retried batch never duplicates. Returns how many rows
/// were new.
pub async fn write(db: impl PgExecutor<'_>, readings: &[Reading]) -> Result<u64, sqlx::Error> {
    if readings.is_empty() {
        return Ok(0);
    }
    // A batch may repeat a (device, time): ON CONFLICT cannot touch one row twice in a statement.
    let mut seen = std::collections::HashSet::with_capacity(readings.len());
    let rows: Vec<&Reading> = readings.iter().filter(|r| seen.insert((r.device_id, r.time))).collect();
    let finite32 = |v: Option<f32>| v.filter(|x| x.is_finite());
    let finite64 = |v: Option<f64>| v.filter(|x| x.is_finite());
    let mut query = sqlx::query(AssertSqlSafe(INSERT.as_str()))
        .bind(rows.iter().map(|r| r.device_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.time).collect::<Vec<_>>());
    for i in 0..REAL_QUANTITIES.len() {
        query = query.bind(rows.iter().map(|r| finite32(r.real[i])).collect::<Vec<_>>());
    }
    for i in 0..COUNTER_QUANTITIES.len() {
        query = query.bind(rows.iter().map(|r| finite64(r.counters[i])).collect::<Vec<_>>());
    }
    let mut earliest: std::collections::BTreeMap<i32, DateTime<Utc>> = std::collections::BTreeMap::new();
    for r in &rows {
        earliest.entry(r.device_id).and_modify(|t| *t = (*t).min(r.time)).or_insert(r.time);
    }
    query =
        query.bind(earliest.keys().copied().collect::<Vec<_>>()).bind(earliest.values().copied().collect::<Vec<_>>());
    Ok(query.execute(db).await?.rows_affected())
}
