//! The HTTP ingest API and the API keys that authenticate it.

pub mod api;
pub mod db;
pub mod keys;
pub mod openapi;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/ingest", post(api::ingest))
        .route("/api/openapi.json", get(openapi::document))
        .merge(keys::router())
}
