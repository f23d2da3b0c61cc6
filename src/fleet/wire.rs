//! The push protocol between a customer's portal and the Admin (docs/FLEET-DESIGN.md): one
//! versioned JSON document per request, gzip-compressed, `POST`ed to [`PATH`] with the
//! customer's token as a bearer token. Both sides use these types, so they cannot drift apart
//! within one version; across versions the Admin refuses what it does not know with
//! [`UNSUPPORTED_VERSION`] (a rolling upgrade updates the Admin first, see the design doc).

use std::io::Read;

use chrono::{DateTime, Utc};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::measurements::{COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};

/// The version this build writes.
pub const VERSION: u32 = 1;
/// The versions this build's Admin accepts: the current one and, once there is one, its
/// predecessor (customers upgrade after the Admin, over days).
pub const SUPPORTED_VERSIONS: &[u32] = &[1];
pub const PATH: &str = "/api/fleet/ingest";
/// The `code` of the 400 answer to a version the Admin does not accept.
pub const UNSUPPORTED_VERSION: &str = "unsupported-version";

/// The Admin's limit on a request body as sent (gzip), and on the JSON it inflates to: 50,000
/// wide rows (the largest `FleetIngest__BatchSize`) are ~30 MB of JSON, ~7 MB gzip.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
pub const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;
/// What a Client aims a batch at (gzip bytes); a batch above it is split before it is stored.
pub const TARGET_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Measurement rows in one batch, at most (the largest `FleetIngest__BatchSize`).
pub const MAX_ROWS: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchType {
    Sites,
    Devices,
    Measurements,
}

impl BatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            BatchType::Sites => "sites",
            BatchType::Devices => "devices",
            BatchType::Measurements => "measurements",
        }
    }
}

/// One request. Exactly the list of its type is filled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    pub version: u32,
    /// The idempotency key: the same on every retry of this batch.
    pub batch_id: Uuid,
    #[serde(rename = "type")]
    pub kind: BatchType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<Site>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Measurements>,
}

/// Reads just the version of a document that did not parse as a [`Batch`] of this build.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// A site as the customer's portal has it; `id` is the customer's own id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Site {
    pub id: i32,
    pub name: String,
    pub address: String,
    pub time_zone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    pub id: i32,
    pub site_id: i32,
    pub external_id: String,
    pub name: String,
    pub model: String,
    pub enabled: bool,
}

/// Readings as rows of one array each: `[device id, time (µs since the Unix epoch), values…]`,
/// the values in the order of `columns` (the JSON names of the stored quantities). Arrays are
/// several times smaller and faster to parse than one object per reading.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurements {
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

impl Measurements {
    /// The readings with the columns that have a value in at least one of them: a column no
    /// reading of the batch has costs a `null` per row to write, send and parse.
    pub fn from_readings(readings: &[Reading]) -> Measurements {
        let all = columns();
        let rows: Vec<Row> = readings.iter().map(Row::from_reading).collect();
        let used: Vec<usize> = (0..all.len()).filter(|&i| rows.iter().any(|r| r.values[i].is_some())).collect();
        Measurements {
            columns: used.iter().map(|&i| all[i].clone()).collect(),
            rows: rows.into_iter().map(|r| Row { values: used.iter().map(|&i| r.values[i]).collect(), ..r }).collect(),
        }
    }
}

impl Serialize for Measurements {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Reals are float4 on both sides: their shortest f32 text is exact and ~half as long.
        let real: Vec<bool> = self.columns.iter().map(|c| REAL_QUANTITIES.iter().any(|q| q.0 == c)).collect();
        let mut m = s.serialize_struct("Measurements", 2)?;
        m.serialize_field("columns", &self.columns)?;
        m.serialize_field("rows", &Rows(&self.rows, &real))?;
        m.end()
    }
}

/// Rows written with their columns' kinds.
struct Rows<'a>(&'a [Row], &'a [bool]);
struct RowOut<'a>(&'a Row, &'a [bool]);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| RowOut(r, self.1)))
    }
}

impl Serialize for RowOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let RowOut(row, real) = self;
        let mut seq = s.serialize_seq(Some(2 + row.values.len()))?;
        seq.serialize_element(&row.device)?;
        seq.serialize_element(&row.time_us)?;
        for (v, real) in row.values.iter().zip(real.iter().chain(std::iter::repeat(&false))) {
            match v {
                Some(x) if *real => seq.serialize_element(&(*x as f32))?,
                other => seq.serialize_element(other)?,
            }
        }
        seq.end()
    }
}

/// One reading on the wire. Values stay `f64` here: a real quantity is written as the
/// shortest text of its `f32` (see [`Measurements`]' serialisation) and read back to the same
/// `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub device: i32,
    pub time_us: i64,
    pub values: Vec<Option<f64>>,
}

/// The columns this build writes: every stored quantity, reals then counters.
pub fn columns() -> Vec<String> {
    REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| q.0.to_string()).collect()
}

impl Row {
    /// A stored reading as a wire row in [`columns`] order; the device is the customer's id.
    pub fn from_reading(r: &Reading) -> Row {
        let reals = r.real.iter().map(|v| v.filter(|x| x.is_finite()).map(f64::from));
        let counters = r.counters.iter().map(|v| v.filter(|x| x.is_finite()));
        Row { device: r.device_id, time_us: r.time.timestamp_micros(), values: reals.chain(counters).collect() }
    }

    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.time_us)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Row, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array [device id, time in µs, values…]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                let device = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let time_us = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(REAL_QUANTITIES.len() + 5));
                while let Some(v) = seq.next_element::<Option<f64>>()? {
                    values.push(v);
                }
                Ok(Row { device, time_us, values })
            }
        }
        d.deserialize_seq(RowVisitor)
    }
}

impl Batch {
    pub fn new(kind: BatchType) -> Batch {
        Batch {
            version: VERSION,
            batch_id: Uuid::new_v4(),
            kind,
            sites: Vec::new(),
            devices: Vec::new(),
            measurements: None,
        }
    }

    /// Rows the batch carries, of its type.
    pub fn rows(&self) -> usize {
        match self.kind {
            BatchType::Sites => self.sites.len(),
            BatchType::Devices => self.devices.len(),
            BatchType::Measurements => self.measurements.as_ref().map_or(0, |m| m.rows.len()),
        }
    }

    /// The request body: the JSON document, gzip-compressed (fast level: the body is written
    /// once and the network is rarely the bottleneck; level 1 is ~4 × smaller than the JSON).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let json = serde_json::to_vec(self).map_err(|e| format!("could not encode the batch: {e}"))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &json).map_err(|e| e.to_string())?;
        gz.finish().map_err(|e| e.to_string())
    }
}

/// The Admin's answer to an accepted batch (and, stored, to every replay of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub batch_id: Uuid,
    /// Rows stored now.
    pub accepted: u64,
    /// Rows the Admin already had (a batch resent after a lost answer, a late re-send).
    pub duplicates: u64,
    /// Rows refused (unknown device or site, implausible time); `errors` says why.
    pub rejected: u64,
    pub errors: Vec<String>,
    /// True when this is the stored answer to an earlier delivery of the same batch.
    #[serde(default)]
    pub replay: bool,
}

/// The body of every refusal the push protocol defines (400, 413): `code` is machine-readable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    pub code: String,
}

/// Why a body was refused, for the 400 answer.
#[derive(Debug, PartialEq)]
pub enum DecodeError {
    /// A version this build does not accept (the text says which ones it does).
    Version(String),
    Malformed(String),
    TooLarge(String),
}

/// Inflates (when `gzip`) and parses a request body, checking the version first.
pub fn decode(body: &[u8], gzip: bool) -> Result<Batch, DecodeError> {
    let json = if gzip {
        let mut out = Vec::with_capacity(body.len() * 5);
        let limit = MAX_INFLATED_BYTES as u64 + 1;
        flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Malformed(format!("the body is not valid gzip: {e}")))?;
        if out.len() > MAX_INFLATED_BYTES {
            return Err(DecodeError::TooLarge(format!(
                "the body inflates to more than {} MB; send smaller batches",
                MAX_INFLATED_BYTES >> 20
            )));
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    let unsupported = |v: u32| {
        DecodeError::Version(format!(
            "wire format version {v} is not supported by this Admin portal (it accepts {}); upgrade the Admin portal \
             before its customers",
            SUPPORTED_VERSIONS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ))
    };
    match serde_json::from_slice::<Batch>(&json) {
        Ok(batch) if SUPPORTED_VERSIONS.contains(&batch.version) => Ok(batch),
        Ok(batch) => Err(unsupported(batch.version)),
        Err(e) => match serde_json::from_slice::<VersionOnly>(&json) {
            Ok(v) if !SUPPORTED_VERSIONS.contains(&v.version) => Err(unsupported(v.version)),
            _ => Err(DecodeError::Malformed(format!("invalid batch: {e}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What a Client encodes, an Admin decodes to the same stored values, bit for bit.
        #[test]
        fn readings_survive_the_wire(
            device in 1..i32::MAX,
            secs in 0i64..4_000_000_000,
            reals in proptest::collection::vec(proptest::option::of(any::<f32>()), REAL_QUANTITIES.len()),
            counters in proptest::collection::vec(proptest::option::of(any::<f64>()), COUNTER_QUANTITIES.len()),
        ) {
            let mut r = Reading::empty(device, DateTime::from_timestamp(secs, 123_456_000).unwrap());
            r.real.copy_from_slice(&reals);
            r.counters.copy_from_slice(&counters);
            let batch = Batch { measurements: Some(Measurements::from_readings(&[r.clone()])), ..Batch::new(BatchType::Measurements) };
            let back = decode(&batch.encode().unwrap(), true).unwrap().measurements.unwrap();
            let row = &back.rows[0];
            prop_assert_eq!(row.device, device);
            prop_assert_eq!(row.time(), Some(r.time));
            // Every column with a value is sent, and only those; values bit for bit.
            for (i, name) in columns().iter().enumerate() {
                let sent = back.columns.iter().position(|c| c == name).and_then(|k| row.values[k]);
                if i < REAL_QUANTITIES.len() {
                    let stored = r.real[i].filter(|x| x.is_finite());
                    prop_assert_eq!(sent.map(|x| (x as f32).to_bits()), stored.map(f32::to_bits));
                } else {
                    let stored = r.counters[i - REAL_QUANTITIES.len()].filter(|x| x.is_finite());
                    prop_assert_eq!(sent.map(f64::to_bits), stored.map(f64::to_bits));
                }
            }
            prop_assert!(back.columns.len() == row.values.len());
        }
    }

    #[test]
    fn unknown_versions_are_refused_by_name() {
        let mut batch = Batch::new(BatchType::Sites);
        batch.version = 7;
        let err = decode(&batch.encode().unwrap(), true).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Version(m) if m.contains("version 7") && m.contains("accepts 1")),
            "{err:?}"
        );
        // A future shape that this build cannot even parse still names its version.
        let err = decode(br#"{"version": 2, "batchId": "x", "type": "alarms"}"#, false).unwrap_err();
        assert!(matches!(&err, DecodeError::Version(m) if m.contains("version 2")), "{err:?}");
        let err = decode(br#"{"version": 1, "type": "alarms"}"#, false).unwrap_err();
        assert!(matches!(&err, DecodeError::Malformed(m) if m.contains("alarms")), "{err:?}");
    }

    #[test]
    fn a_gzip_bomb_is_refused_without_inflating_it_all() {
        let zeros = vec![b' '; MAX_INFLATED_BYTES + 10];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
        let body = gz.finish().unwrap();
        assert!(body.len() < MAX_BODY_BYTES);
        assert!(matches!(decode(&body, true), Err(DecodeError::TooLarge(_))));
        assert!(matches!(decode(b"not gzip", true), Err(DecodeError::Malformed(_))));
    }
}
