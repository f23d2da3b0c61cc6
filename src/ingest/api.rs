//! `POST /api/ingest`: readings pushed by other systems, authenticated by an API key.
//!
//! A row for an unknown `externalId`, with an unreadable time or a time in the future is
//! rejected and reported by index; the rest of the batch is stored. A body that is not valid
//! JSON of the documented shape is refused as a whole, with the position of the problem, and
//! nothing is stored.

use std::collections::HashMap;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys::ApiKey;
use crate::error::{AppError, AppResult};
use crate::measurements::{self, Horizon, Quantity, Reading};
use crate::sites::directory::DeviceMap;
use crate::state::AppState;

pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_ROWS: usize = 10_000;
/// Per-row errors listed in a response; the rest are only counted.
pub const MAX_LISTED_ERRORS: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    measurements: Vec<Row>,
}

/// One row: `externalId`, `time` and any of the quantities (see
/// [`measurements::REAL_QUANTITIES`] and [`measurements::COUNTER_QUANTITIES`]); unknown fields
/// are an error, so a typo never silently drops a value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    external_id: String,
    time: String,
    #[serde(flatten)]
    values: HashMap<String, Option<f64>>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    pub index: usize,
    pub external_id: String,
    pub reason: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct IngestResponse {
    /// Rows stored now.
    pub accepted: u64,
    /// Valid rows already stored earlier (a retried batch): not stored twice.
    pub duplicates: u64,
    /// Rows refused; see `errors`.
    pub rejected: usize,
    pub errors: Vec<RowError>,
    /// Rejected rows beyond the listed ones.
    pub errors_not_listed: usize,
}

pub async fn ingest(State(state): State<AppState>, _: ApiKey, body: Body) -> AppResult<Json<IngestResponse>> {
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        AppError::PayloadTooLarge(format!("The body is larger than {} MB; send smaller batches.", MAX_BODY_BYTES >> 20))
    })?;
    let rows = parse_batch(&bytes)?;
    let devices = state.devices.snapshot().await?;
    let horizon = Horizon { earliest: state.config.earliest_reading, now: state.clock.now() };
    let (readings, mut errors) = readings(rows, &devices, horizon);
    let valid = readings.len() as u64;
    let db = state.db.clone();
    let accepted = crate::db::uncancelled(async move { measurements::write(&db, &readings).await }).await?;
    let rejected = errors.len();
    metrics::counter!("tau_portal_readings_ingested_total", "source" => "api").increment(accepted);
    metrics::counter!("tau_portal_ingest_rows_rejected_total").increment(rejected as u64);
    let errors_not_listed = rejected.saturating_sub(MAX_LISTED_ERRORS);
    errors.truncate(MAX_LISTED_ERRORS);
    Ok(Json(IngestResponse { accepted, duplicates: valid - accepted, rejected, errors, errors_not_listed }))
}

/// The body's rows, refused as a whole when it is not a batch of the documented shape: not
/// JSON, no rows, too many, or a field that is not a stored quantity (a typo never silently
/// drops a value).
fn parse_batch(body: &[u8]) -> Result<Vec<Row>, AppError> {
    let batch: Batch =
        serde_json::from_slice(body).map_err(|e| AppError::BadRequest(format!("Invalid JSON body: {e}")))?;
    if batch.measurements.is_empty() {
        return Err(AppError::BadRequest("`measurements` is empty: send at least one row.".into()));
    }
    if batch.measurements.len() > MAX_ROWS {
        return Err(AppError::PayloadTooLarge(format!(
            "{} rows in one batch; the limit is {MAX_ROWS}.",
            batch.measurements.len()
        )));
    }
    for (index, row) in batch.measurements.iter().enumerate() {
        if let Some(name) = row.values.keys().find(|k| Quantity::named(k).is_none()) {
            return Err(AppError::BadRequest(format!(
                "measurements[{index}]: unknown field `{name}` (the fields are externalId, time, {})",
                Quantity::names()
            )));
        }
    }
    Ok(batch.measurements)
}

/// Each row as a reading of its device, or why it is refused (by its index in the batch): an
/// unknown `externalId`, an unreadable time, or a time outside the `horizon`.
fn readings(rows: Vec<Row>, devices: &DeviceMap, horizon: Horizon) -> (Vec<Reading>, Vec<RowError>) {
    let mut readings = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        let reject = |reason: String| RowError { index, external_id: row.external_id.clone(), reason };
        let Some(&device_id) = devices.get(&row.external_id) else {
            errors.push(reject("unknown device".into()));
            continue;
        };
        let time = match DateTime::parse_from_rfc3339(&row.time) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                errors.push(reject(format!("invalid time: {e} (expected RFC 3339, e.g. 2026-11-23T10:15:00Z)")));
                continue;
            }
        };
        if let Err(why) = horizon.check(time) {
            errors.push(reject(why));
            continue;
        }
        let mut reading = Reading::empty(device_id, time);
        for (name, value) in row.values {
            if let Some(quantity) = Quantity::named(&name) {
                reading.set(quantity, value);
            }
        }
        readings.push(reading);
    }
    (readings, errors)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn rows_become_readings_of_their_devices_or_are_refused_by_index() {
        let body = br#"{"measurements": [
            {"externalId": "m1", "time": "2026-11-23T10:00:00Z", "pTotal": 1500.5, "energyImportWh": 12.0, "v1": null},
            {"externalId": "nope", "time": "2026-11-23T10:00:00Z"},
            {"externalId": "m1", "time": "yesterday"},
            {"externalId": "m1", "time": "2026-11-23T10:06:00Z"},
            {"externalId": "m1", "time": "2026-11-23T12:04:59+02:00"},
            {"externalId": "m1", "time": "0000-01-01T00:00:00Z", "energyImportWh": 1.0},
            {"externalId": "m1", "time": "1999-12-31T23:59:59Z"}
        ]}"#;
        let devices = Arc::new(HashMap::from([("m1".to_string(), 7)]));
        let horizon = Horizon { earliest: at("2000-01-01T00:00:00Z"), now: at("2026-11-23T10:00:00Z") };
        let (readings, errors) = readings(parse_batch(body).unwrap(), &devices, horizon);
        let reasons: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(reasons[0], (1, "unknown device"));
        assert_eq!(reasons[1].0, 2);
        assert!(reasons[1].1.starts_with("invalid time: "), "{}", reasons[1].1);
        assert_eq!(reasons[2], (3, "time is more than 5 minutes in the future"));
        let too_old = "time is before 2000-01-01T00:00:00Z (Measurements__EarliestTime): no meter reading is that old";
        assert_eq!(reasons[3], (5, too_old), "year 0000 is refused");
        assert_eq!(reasons[4], (6, too_old));
        assert_eq!(reasons.len(), 5);
        let mut expected = Reading::empty(7, at("2026-11-23T10:00:00Z"));
        expected.set(Quantity::named("pTotal").unwrap(), Some(1500.5));
        expected.set(Quantity::named("energyImportWh").unwrap(), Some(12.0));
        assert_eq!(readings, [expected, Reading::empty(7, at("2026-11-23T10:04:59Z"))]);
    }

    #[test]
    fn a_batch_of_the_wrong_shape_is_refused_whole() {
        let refused = |body: &str| match parse_batch(body.as_bytes()) {
            Err(AppError::BadRequest(m) | AppError::PayloadTooLarge(m)) => m,
            other => panic!("{body}: {:?}", other.map(|rows| rows.len())),
        };
        assert!(refused("[]").starts_with("Invalid JSON body: "));
        assert!(refused(r#"{"measurements": [], "extra": 1}"#).starts_with("Invalid JSON body: "));
        assert_eq!(refused(r#"{"measurements": []}"#), "`measurements` is empty: send at least one row.");
        let typo = refused(r#"{"measurements": [{"externalId": "m1", "time": "2026-11-23T10:00:00Z", "ptotal": 1}]}"#);
        assert!(
            typo.starts_with("measurements[0]: unknown field `ptotal` (the fields are externalId, time, frequency")
        );
        let row = r#"{"externalId": "m1", "time": "2026-11-23T10:00:00Z"}"#;
        let many = format!(r#"{{"measurements": [{}]}}"#, vec![row; MAX_ROWS + 1].join(","));
        assert_eq!(refused(&many), format!("{} rows in one batch; the limit is {MAX_ROWS}.", MAX_ROWS + 1));
    }
}
