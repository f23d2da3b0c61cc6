//! PostgreSQL's binary COPY format, both ways, written by hand (sqlx streams COPY data but
//! neither encodes nor decodes it): <https://www.postgresql.org/docs/current/sql-copy.html>,
//! "Binary Format". [`Writer`] builds a stream for `COPY … FROM STDIN (FORMAT binary)`, [`Decoder`]
//! reads the chunks of `COPY … TO STDOUT (FORMAT binary)`. [`encode`] is the readings' stream
//! (columns in the order of [`super::COLUMNS`]: int4, timestamptz, float4…, float8…).

use chrono::{DateTime, NaiveDate, Utc};

use super::{COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};

/// Signature, flags (no OIDs), header extension length (none).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
const FIELDS: i16 = (2 + REAL_QUANTITIES.len() + COUNTER_QUANTITIES.len()) as i16;
/// Field count, then (length, value) per field: -1 as the length is NULL.
const ROW_BYTES: usize = 2 + (4 + 4) + (4 + 8) + REAL_QUANTITIES.len() * (4 + 4) + COUNTER_QUANTITIES.len() * (4 + 8);
const TRAILER: i16 = -1;
const NULL: i32 = -1;

/// A binary COPY stream being built: `row` with the number of fields, then one call per field.
/// NaN and infinities become NULL, as in every write path.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(rows: usize, row_bytes: usize) -> Writer {
        let mut buf = Vec::with_capacity(HEADER.len() + rows * row_bytes + 2);
        buf.extend_from_slice(HEADER);
        Writer { buf }
    }

    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        // Field values here are at most 16 bytes.
        self.buf.extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(value);
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&NULL.to_be_bytes());
    }

    pub fn int4(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }

    pub fn float4(&mut self, v: Option<f32>) {
        match v.filter(|x| x.is_finite()) {
            Some(x) => self.field(&x.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn float8(&mut self, v: Option<f64>) {
        match v.filter(|x| x.is_finite()) {
            Some(x) => self.field(&x.to_be_bytes()),
            None => self.null(),
        }
    }

    pub fn uuid(&mut self, v: uuid::Uuid) {
        self.field(v.as_bytes());
    }

    pub fn timestamptz(&mut self, t: DateTime<Utc>) -> Result<(), sqlx::Error> {
        self.field(&micros_since_2000(t)?.to_be_bytes());
        Ok(())
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&TRAILER.to_be_bytes());
        self.buf
    }
}

/// The readings as one binary COPY stream.
pub fn encode(rows: &[&Reading]) -> Result<Vec<u8>, sqlx::Error> {
    encode_owned_by(None, rows)
}

/// The readings as one binary COPY stream, each row led by `owner` when given (a uuid column
/// before the device: the fleet's customer).
pub fn encode_owned_by(owner: Option<uuid::Uuid>, rows: &[&Reading]) -> Result<Vec<u8>, sqlx::Error> {
    let (fields, row_bytes) = match owner {
        Some(_) => (FIELDS + 1, ROW_BYTES + 4 + 16),
        None => (FIELDS, ROW_BYTES),
    };
    let mut w = Writer::new(rows.len(), row_bytes);
    for r in rows {
        w.row(fields);
        if let Some(owner) = owner {
            w.uuid(owner);
        }
        w.int4(r.device_id);
        w.timestamptz(r.time)?;
        for v in r.real {
            w.float4(v);
        }
        for v in r.counters {
            w.float8(v);
        }
    }
    Ok(w.finish())
}

/// One reading's fields in the order of [`encode`] (a `COPY (SELECT <the stored columns> …)`),
/// `None` for a row without device or time (which the table cannot hold).
pub fn decode_reading(f: &mut Fields<'_>) -> Result<Option<Reading>, sqlx::Error> {
    let (Some(device_id), Some(time)) = (f.int4()?, f.timestamptz()?) else { return Ok(None) };
    let mut r = Reading::empty(device_id, time);
    for v in &mut r.real {
        *v = f.float4()?;
    }
    for v in &mut r.counters {
        *v = f.float8()?;
    }
    Ok(Some(r))
}

/// A time as an SQL literal, to the microsecond, for statements that take no parameters (COPY).
pub fn time_literal(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Reads a `COPY … TO STDOUT (FORMAT binary)` stream chunk by chunk. PostgreSQL sends one row
/// per message, but nothing here relies on it: a row split across chunks is kept until the
/// rest arrives.
#[derive(Default)]
pub struct Decoder {
    pending: Vec<u8>,
    header: bool,
    ended: bool,
}

impl Decoder {
    /// Hands every complete row in `chunk` (after what is pending) to `row`, in order.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut(&mut Fields<'_>) -> Result<(), sqlx::Error>,
    ) -> Result<(), sqlx::Error> {
        let mut pending = std::mem::take(&mut self.pending);
        let data: &[u8] = if pending.is_empty() {
            chunk
        } else {
            pending.extend_from_slice(chunk);
            &pending
        };
        let mut pos = 0;
        if !self.header {
            if data.len() < HEADER.len() {
                self.pending = data.to_vec();
                return Ok(());
            }
            if data[..11] != HEADER[..11] {
                return Err(decode_error("not a binary COPY stream"));
            }
            let extension = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
            if data.len() < HEADER.len() + extension {
                self.pending = data.to_vec();
                return Ok(());
            }
            pos = HEADER.len() + extension;
            self.header = true;
        }
        while pos < data.len() {
            if self.ended {
                return Err(decode_error("data after the end of the COPY stream"));
            }
            let Some(len) = row_len(&data[pos..])? else { break };
            if len == 2 {
                // The trailer: a field count of -1.
                self.ended = true;
            } else {
                row(&mut Fields { data: &data[pos + 2..pos + len], pos: 0 })?;
            }
            pos += len;
        }
        self.pending = data[pos..].to_vec();
        Ok(())
    }

    /// Checks that the stream ended where it should.
    pub fn finish(&self) -> Result<(), sqlx::Error> {
        if self.ended && self.pending.is_empty() { Ok(()) } else { Err(decode_error("the COPY stream was cut short")) }
    }
}

/// The byte length of the row (or trailer) at the start of `data`, `None` when incomplete.
fn row_len(data: &[u8]) -> Result<Option<usize>, sqlx::Error> {
    let Some(count) = data.get(..2) else { return Ok(None) };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == TRAILER {
        return Ok(Some(2));
    }
    let mut pos = 2;
    for _ in 0..count.max(0) {
        let Some(len) = data.get(pos..pos + 4) else { return Ok(None) };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4 + usize::try_from(len).unwrap_or(0);
        if len < NULL {
            return Err(decode_error("negative field length"));
        }
    }
    Ok((pos <= data.len()).then_some(pos))
}

/// One row's fields, read in column order.
pub struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Fields<'_> {
    fn next<const N: usize>(&mut self) -> Result<Option<[u8; N]>, sqlx::Error> {
        let len = self.data.get(self.pos..self.pos + 4).ok_or_else(|| decode_error("missing field"))?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        self.pos += 4;
        if len == NULL {
            return Ok(None);
        }
        if len as usize != N {
            return Err(decode_error("a field has an unexpected length"));
        }
        let value = self.data.get(self.pos..self.pos + N).ok_or_else(|| decode_error("missing field"))?;
        self.pos += N;
        Ok(Some(value.try_into().map_err(|_| decode_error("missing field"))?))
    }

    pub fn int4(&mut self) -> Result<Option<i32>, sqlx::Error> {
        Ok(self.next::<4>()?.map(i32::from_be_bytes))
    }

    pub fn float4(&mut self) -> Result<Option<f32>, sqlx::Error> {
        Ok(self.next::<4>()?.map(f32::from_be_bytes))
    }

    pub fn float8(&mut self) -> Result<Option<f64>, sqlx::Error> {
        Ok(self.next::<8>()?.map(f64::from_be_bytes))
    }

    pub fn timestamptz(&mut self) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.next::<8>()?
            .map(|b| {
                DateTime::from_timestamp_micros(EPOCH_2000_US + i64::from_be_bytes(b))
                    .ok_or_else(|| decode_error("a time is out of range"))
            })
            .transpose()
    }
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("binary COPY: {what}").into())
}

/// 2000-01-01 00:00 UTC in microseconds since the Unix epoch.
const EPOCH_2000_US: i64 = 946_684_800_000_000;

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
        assert_eq!(micros_since_2000(at("1970-01-01T00:00:00Z")).unwrap(), -EPOCH_2000_US);
    }

    fn stream() -> Vec<u8> {
        let mut w = Writer::new(2, 40);
        for (id, t, wh) in [(7, "2026-01-01T00:00:00Z", Some(1.5)), (-3, "1999-12-31T23:59:59Z", None)] {
            w.row(4);
            w.int4(id);
            w.timestamptz(at(t)).unwrap();
            w.float8(wh);
            w.float4(Some(2.5));
        }
        w.finish()
    }

    type Row = (i32, DateTime<Utc>, Option<f64>, Option<f32>);

    fn decode_all(chunks: &[&[u8]]) -> Result<Vec<Row>, sqlx::Error> {
        let mut d = Decoder::default();
        let mut rows = Vec::new();
        for chunk in chunks {
            d.feed(chunk, |f| {
                rows.push((f.int4()?.unwrap(), f.timestamptz()?.unwrap(), f.float8()?, f.float4()?));
                Ok(())
            })?;
        }
        d.finish()?;
        Ok(rows)
    }

    #[test]
    fn the_decoder_reads_what_the_writer_wrote_however_it_is_split() {
        let buf = stream();
        let expected = vec![
            (7, at("2026-01-01T00:00:00Z"), Some(1.5), Some(2.5)),
            (-3, at("1999-12-31T23:59:59Z"), None, Some(2.5)),
        ];
        assert_eq!(decode_all(&[&buf]).unwrap(), expected);
        for cut in 0..=buf.len() {
            for second in cut..=buf.len() {
                let chunks = [&buf[..cut], &buf[cut..second], &buf[second..]];
                assert_eq!(decode_all(&chunks).unwrap(), expected, "split at {cut} and {second}");
            }
        }
    }

    #[test]
    fn a_stream_cut_short_or_malformed_is_an_error() {
        let buf = stream();
        assert!(decode_all(&[&buf[..buf.len() - 2]]).is_err(), "no trailer");
        assert!(decode_all(&[&buf[..buf.len() - 5]]).is_err(), "half a row");
        assert!(decode_all(&[b"COPY\n not binary at all"]).is_err());
        let mut extra = buf.clone();
        extra.extend_from_slice(&[0, 1]);
        assert!(decode_all(&[&extra]).is_err(), "data after the trailer");
    }
}
