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
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::keys;
use crate::error::{AppError, AppResult};
use crate::measurements::{self, COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};
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

/// One row: `externalId`, `time` and any of the quantities (see [`REAL_QUANTITIES`] and
/// [`COUNTER_QUANTITIES`]); unknown fields are an error, so a typo never silently drops a value.
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

pub async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Body) -> AppResult<Json<IngestResponse>> {
    let key = crate::web::bearer(&headers).ok_or_else(|| {
        AppError::Unauthorized("Send an API key as `Authorization: Bearer <key>` (Settings → API keys).".into())
    })?;
    if keys::authenticate(&state.db, key).await?.is_none() {
        return Err(AppError::Unauthorized("The API key is not valid or has been revoked.".into()));
    }
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        AppError::PayloadTooLarge(format!("The body is larger than {} MB; send smaller batches.", MAX_BODY_BYTES >> 20))
    })?;
    let batch: Batch =
        serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("Invalid JSON body: {e}")))?;
    if batch.measurements.is_empty() {
        return Err(AppError::BadRequest("`measurements` is empty: send at least one row.".into()));
    }
    if batch.measurements.len() > MAX_ROWS {
        return Err(AppError::PayloadTooLarge(format!(
            "{} rows in one batch; the limit is {MAX_ROWS}.",
            batch.measurements.len()
        )));
    }
    // Unknown quantity names are refused for the whole batch, like any other schema error.
    for (index, row) in batch.measurements.iter().enumerate() {
        if let Some(name) = row.values.keys().find(|k| position(k).is_none()) {
            return Err(AppError::BadRequest(format!(
                "measurements[{index}]: unknown field `{name}` (the fields are externalId, time, {})",
                REAL_QUANTITIES.iter().chain(&COUNTER_QUANTITIES).map(|q| q.0).collect::<Vec<_>>().join(", ")
            )));
        }
    }

    let devices = state.devices.snapshot().await?;
    let now = state.clock.now();
    let mut readings = Vec::with_capacity(batch.measurements.len());
    let mut errors = Vec::new();
    for (index, row) in batch.measurements.into_iter().enumerate() {
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
        if let Err(why) = measurements::check_time(time, now) {
            errors.push(reject(why.into()));
            continue;
        }
        let mut reading = Reading::empty(device_id, time);
        for (name, value) in row.values {
            match position(&name) {
                Some(Slot::Real(i)) => reading.real[i] = value.map(|v| v as f32),
                Some(Slot::Counter(i)) => reading.counters[i] = value,
                None => {}
            }
        }
        readings.push(reading);
    }

    let valid = readings.len() as u64;
    let accepted = measurements::write(&state.db, &readings).await?;
    let rejected = errors.len();
    metrics::counter!("tau_portal_readings_ingested_total", "source" => "api").increment(accepted);
    metrics::counter!("tau_portal_ingest_rows_rejected_total").increment(rejected as u64);
    let errors_not_listed = rejected.saturating_sub(MAX_LISTED_ERRORS);
    errors.truncate(MAX_LISTED_ERRORS);
    Ok(Json(IngestResponse { accepted, duplicates: valid - accepted, rejected, errors, errors_not_listed }))
}

enum Slot {
    Real(usize),
    Counter(usize),
}

fn position(name: &str) -> Option<Slot> {
    REAL_QUANTITIES
        .iter()
        .position(|q| q.0 == name)
        .map(Slot::Real)
        .or_else(|| COUNTER_QUANTITIES.iter().position(|q| q.0 == name).map(Slot::Counter))
}
