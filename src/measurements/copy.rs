//! PostgreSQL's binary COPY format for a batch of readings, written by hand (sqlx streams COPY
//! data but does not encode it): <https://www.postgresql.org/docs/current/sql-copy.html>, "Binary
//! Format". Columns in the order of [`super::COLUMNS`]: int4, timestamptz, float4…, float8….

use chrono::{DateTime, NaiveDate, Utc};

use super::{COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};

/// Signature, flags (no OIDs), header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const FIELDS: i16 = (2 + REAL_QUANTITIES.len() + COUNTER_QUANTITIES.len()) as i16;
/// Field count, then (length, value) per field: -1 as the length is NULL.
const ROW_BYTES: usize = 2 + (4 + 4) + (4 + 8) + REAL_QUANTITIES.len() * (4 + 4) + COUNTER_QUANTITIES.len() * (4 + 8);
const TRAILER: i16 = -1;
const NULL: i32 = -1;

/// The rows as one binary COPY stream. NaN and infinities become NULL, as in every write path.
pub fn encode(rows: &[&Reading]) -> Result<Vec<u8>, sqlx::Error> {
    let mut buf = Vec::with_capacity(HEADER.len() + rows.len() * ROW_BYTES + 2);
    buf.extend_from_slice(HEADER);
    for r in rows {
        buf.extend_from_slice(&FIELDS.to_be_bytes());
        buf.extend_from_slice(&4i32.to_be_bytes());
        buf.extend_from_slice(&r.device_id.to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&micros_since_2000(r.time)?.to_be_bytes());
        for v in r.real {
            match v.filter(|x| x.is_finite()) {
                Some(x) => {
                    buf.extend_from_slice(&4i32.to_be_bytes());
                    buf.extend_from_slice(&x.to_be_bytes());
                }
                None => buf.extend_from_slice(&NULL.to_be_bytes()),
            }
        }
        for v in r.counters {
            match v.filter(|x| x.is_finite()) {
                Some(x) => {
                    buf.extend_from_slice(&8i32.to_be_bytes());
                    buf.extend_from_slice(&x.to_be_bytes());
                }
                None => buf.extend_from_slice(&NULL.to_be_bytes()),
            }
        }
    }
    buf.extend_from_slice(&TRAILER.to_be_bytes());
    Ok(buf)
}

/// timestamptz on the wire: microseconds since 2000-01-01 00:00 UTC, truncated toward zero as
/// sqlx does for bound parameters (so both ways of writing store the same instant).
fn micros_since_2000(time: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    epoch
        .and_then(|epoch| (time - epoch).num_microseconds())
        .ok_or_else(|| sqlx::Error::Encode(format!("time {time} is out of range for PostgreSQL").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn header_row_and_trailer_follow_the_format() {
        let mut r = Reading::empty(7, at("2000-01-01T00:00:01Z"));
        r.real[0] = Some(50.0);
        r.real[1] = Some(f32::NAN);
        r.counters[4] = Some(1.5);
        let buf = encode(&[&r]).unwrap();
        assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&buf[11..19], &[0; 8], "flags and extension length");
        // 1 real and 1 counter with a value, 29 + 4 NULLs of 4 bytes each.
        assert_eq!(buf.len(), HEADER.len() + 2 + 8 + 12 + 8 + 29 * 4 + 4 * 4 + 12 + 2);
        let row = &buf[19..];
        assert_eq!(&row[..2], &37i16.to_be_bytes());
        assert_eq!(&row[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&row[10..22], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40], "1 s = 1,000,000 µs");
        assert_eq!(&row[22..30], &[0, 0, 0, 4, 0x42, 0x48, 0, 0], "50.0f32");
        assert_eq!(&row[30..34], &[0xff; 4], "NaN is NULL");
        assert_eq!(&buf[buf.len() - 2..], &[0xff, 0xff]);
    }

    #[test]
    fn times_before_2000_are_negative_and_truncated_toward_zero() {
        assert_eq!(micros_since_2000(at("1999-12-31T23:59:59.9999995Z")).unwrap(), 0);
        assert_eq!(micros_since_2000(at("1999-12-31T23:59:59.5Z")).unwrap(), -500_000);
        assert_eq!(micros_since_2000(at("1970-01-01T00:00:00Z")).unwrap(), -946_684_800_000_000);
    }
}
