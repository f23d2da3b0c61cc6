//! The measurement store's write path against the real PostgreSQL: every value it can be given
//! comes back exactly (NULLs, non-finite values as NULL, times before 2000 and 1970, fractions of
//! a second, the float4/float8 extremes), whatever the encoding on the wire.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Row};
use tau_acuvim_portal::measurements::{self, COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};

use crate::helpers::site_with_devices;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn columns() -> String {
    let names =
        ["DeviceId", "Time"].into_iter().chain(REAL_QUANTITIES.map(|q| q.1)).chain(COUNTER_QUANTITIES.map(|q| q.1));
    names.map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

/// Readings covering the edge cases; `device` maps a row number to its device id.
fn edge_cases(device: impl Fn(usize) -> i32) -> Vec<Reading> {
    let times = [
        "1969-12-31T23:59:59.123456Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:00:00.000001Z",
        "2026-11-01T12:34:56.5Z",
    ];
    let reals = [f32::MAX, f32::MIN, f32::MIN_POSITIVE, 1e-45, -0.0, 0.1, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let counters = [f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, -0.0, 0.1, f64::NAN, f64::INFINITY];
    let mut out = Vec::new();
    for (n, time) in times.iter().enumerate() {
        let mut r = Reading::empty(device(n), at(time));
        if n > 0 {
            // Row 0 stays all NULL; the others rotate the values over the columns.
            for (i, v) in r.real.iter_mut().enumerate() {
                *v = if (i + n) % 4 == 0 { None } else { Some(reals[(i + n) % reals.len()]) };
            }
            for (i, v) in r.counters.iter_mut().enumerate() {
                *v = if (i + n) % 3 == 0 { None } else { Some(counters[(i + n) % counters.len()]) };
            }
        }
        out.push(r);
    }
    out
}

/// What the store must hold for a reading: non-finite values as NULL.
fn stored(r: &Reading) -> Reading {
    let mut s = r.clone();
    s.real = r.real.map(|v| v.filter(|x| x.is_finite()));
    s.counters = r.counters.map(|v| v.filter(|x| x.is_finite()));
    s
}

/// A reading as bit patterns, so -0.0 and 0.0 differ: (device, time, reals, counters).
type Bits = (i32, DateTime<Utc>, Vec<Option<u32>>, Vec<Option<u64>>);

fn bits(r: &Reading) -> Bits {
    (
        r.device_id,
        r.time,
        r.real.iter().map(|v| v.map(f32::to_bits)).collect(),
        r.counters.iter().map(|v| v.map(f64::to_bits)).collect(),
    )
}

async fn read_back(db: &PgPool, table: &str) -> Vec<Reading> {
    let sql = format!("SELECT {} FROM {table} ORDER BY \"DeviceId\", \"Time\"", columns());
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(db).await.unwrap();
    rows.iter()
        .map(|row| {
            let mut r = Reading::empty(row.get(0), row.get(1));
            for (i, v) in r.real.iter_mut().enumerate() {
                *v = row.get(2 + i);
            }
            for (i, v) in r.counters.iter_mut().enumerate() {
                *v = row.get(2 + REAL_QUANTITIES.len() + i);
            }
            r
        })
        .collect()
}

fn assert_same(got: &[Reading], want: &[Reading]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(bits(g), bits(&stored(w)), "stored {g:?}\nwritten {w:?}");
    }
}

/// The hand-written binary COPY encoder, checked by PostgreSQL's own decoder.
#[sqlx::test]
async fn the_binary_copy_encoding_round_trips_through_postgresql(pool: PgPool) {
    let readings = edge_cases(|n| [i32::MIN, -1, 0, 1, i32::MAX][n]);
    let data = measurements::copy::encode(&readings.iter().collect::<Vec<_>>()).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(r#"CREATE TABLE "Copied" (LIKE monitoring."PowerMeasurements")"#).execute(&mut *conn).await.unwrap();
    let mut copy =
        conn.copy_in_raw(&format!(r#"COPY "Copied" ({}) FROM STDIN (FORMAT binary)"#, columns())).await.unwrap();
    copy.send(data).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), readings.len() as u64);
    drop(conn);
    assert_same(&read_back(&pool, r#""Copied""#).await, &readings);
}

/// The same values through the ONE write path, into the real table; a repeated batch adds nothing.
#[sqlx::test]
async fn the_store_keeps_every_value_exactly(pool: PgPool) {
    let device = site_with_devices(&pool, "Plant", "UTC", &["edge"]).await.1[0];
    let readings = edge_cases(|_| device);
    assert_eq!(measurements::write(&pool, &readings).await.unwrap(), readings.len() as u64);
    assert_eq!(measurements::write(&pool, &readings).await.unwrap(), 0, "a retried batch is skipped");
    assert_same(&read_back(&pool, r#"monitoring."PowerMeasurements""#).await, &readings);
}

/// A device deleted while its readings wait in a buffer: the batch still stores the other
/// devices' readings and skips its own (the foreign key refused the whole batch, and the buffer
/// held it forever); a device deleted afterwards takes its readings with it.
#[sqlx::test]
async fn a_batch_skips_the_readings_of_a_deleted_device_and_a_delete_takes_them(pool: PgPool) {
    let devices = site_with_devices(&pool, "Plant", "UTC", &["kept", "deleted", "later"]).await.1;
    sqlx::query(r#"DELETE FROM monitoring."Devices" WHERE "Id" = $1"#).bind(devices[1]).execute(&pool).await.unwrap();
    let t = at("2026-01-05T10:00:00Z");
    let batch: Vec<Reading> = devices.iter().map(|&d| Reading::empty(d, t)).collect();
    assert_eq!(measurements::write(&pool, &batch).await.unwrap(), 2);
    let stored = async || -> Vec<i32> {
        sqlx::query_scalar(r#"SELECT "DeviceId" FROM monitoring."PowerMeasurements" ORDER BY "DeviceId""#)
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert_eq!(stored().await, [devices[0], devices[2]]);
    sqlx::query(r#"DELETE FROM monitoring."Devices" WHERE "Id" = $1"#).bind(devices[2]).execute(&pool).await.unwrap();
    assert_eq!(stored().await, [devices[0]]);
}
