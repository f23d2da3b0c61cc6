//! `POST /api/fleet/ingest` (Admin mode): a customer portal's batch, authenticated by the
//! customer's push token, which can only ever write that customer's rows. Answers: 200 with a
//! [`Receipt`] (also for a replay), 401 for an unknown, rotated or inactive customer's token,
//! 400 for a malformed batch or an unknown wire version (`code` says which), 413 for a body
//! over the limit.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::store::{self, Sender};
use super::wire::{self, Batch, DecodeError, Refusal};
use crate::error::{AppError, AppResult};
use crate::fleet::bootstrap::FleetStorage;
use crate::state::AppState;

pub async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Body) -> AppResult<Response> {
    let sender = authenticate(&state, &headers).await?;
    let refuse = async |status: StatusCode, code: &str, error: String, batch: Option<&Batch>| -> AppResult<Response> {
        store::record_refusal(
            &state.db,
            sender.customer_id,
            batch.map(|b| (b.batch_id, b.kind)),
            status.as_u16(),
            &error,
        )
        .await?;
        metrics::counter!("tau_portal_fleet_batches_received_total", "status" => status.as_u16().to_string())
            .increment(1);
        tracing::warn!(customer = %sender.code, status = status.as_u16(), code, "Fleet batch refused: {error}");
        Ok((status, Json(Refusal { error, code: code.into() })).into_response())
    };
    let Ok(bytes) = to_bytes(body, wire::MAX_BODY_BYTES).await else {
        let error = format!("the body is larger than {} MB; send smaller batches", wire::MAX_BODY_BYTES >> 20);
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "too-large", error, None).await;
    };
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    // Inflating and parsing a few MB is CPU work: off the async threads.
    let decoded = tokio::task::spawn_blocking(move || wire::decode(&bytes, gzip)).await.map_err(AppError::internal)?;
    let batch = match decoded {
        Ok(batch) => batch,
        Err(DecodeError::Version(error)) => {
            return refuse(StatusCode::BAD_REQUEST, wire::UNSUPPORTED_VERSION, error, None).await;
        }
        Err(DecodeError::Malformed(error)) => return refuse(StatusCode::BAD_REQUEST, "malformed", error, None).await,
        Err(DecodeError::TooLarge(error)) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "too-large", error, None).await;
        }
    };
    if let Err(error) = store::check_shape(&batch) {
        return refuse(StatusCode::BAD_REQUEST, "malformed", error, Some(&batch)).await;
    }
    let plain = state.fleet_storage == Some(FleetStorage::Plain);
    let horizon = crate::measurements::Horizon { earliest: state.config.earliest_reading, now: state.clock.now() };
    let (db, customer, kind) = (state.db.clone(), sender.customer_id, batch.kind);
    let receipt =
        crate::db::uncancelled(async move { store::store(&db, customer, &batch, horizon, plain).await }).await?;
    metrics::counter!("tau_portal_fleet_batches_received_total", "status" => "200").increment(1);
    if kind == wire::BatchType::Measurements {
        metrics::counter!("tau_portal_readings_ingested_total", "source" => "fleet").increment(receipt.accepted);
    }
    Ok(Json(receipt).into_response())
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> AppResult<Sender> {
    let token = crate::web::bearer(headers).ok_or_else(|| {
        AppError::Unauthorized("Send the customer's push token as `Authorization: Bearer <token>`.".into())
    })?;
    let Some(sender) = store::sender(&state.db, token).await? else {
        metrics::counter!("tau_portal_fleet_batches_received_total", "status" => "401").increment(1);
        return Err(AppError::Unauthorized("The push token is not valid.".into()));
    };
    let why = if !sender.current {
        "the push token was rotated; set the new one as FleetIngest__Token and restart the portal"
    } else if !sender.active {
        "the customer is inactive on the Admin portal"
    } else {
        return Ok(sender);
    };
    store::record_refusal(&state.db, sender.customer_id, None, 401, why).await?;
    metrics::counter!("tau_portal_fleet_batches_received_total", "status" => "401").increment(1);
    Err(AppError::Unauthorized(format!("Refused: {why}.")))
}
