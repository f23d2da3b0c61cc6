//! The HTTP ingest API and the API keys that authenticate it.

pub mod api;
pub mod keys;

use axum::Router;
use axum::routing::post;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/ingest", post(api::ingest)).merge(keys::router())
}
