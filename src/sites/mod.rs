//! Sites and devices: where measurements belong.

pub mod directory;

use axum::Router;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
