//! The fleet aggregator (docs/FLEET-DESIGN.md). Admin mode: the customer registry and its pages
//! (registry.rs, db.rs), the push ingest (ingest.rs, store.rs), the fleet storage
//! (bootstrap.rs, hourly.rs). Client mode: the push to the Admin (push/). Both: the wire format
//! (wire.rs).

pub mod bootstrap;
pub mod db;
pub mod hourly;
pub mod ingest;
pub mod push;
pub mod registry;
pub mod store;
pub mod wire;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};

use crate::state::AppState;

/// The Admin portal's own routes; its landing page is the customer list.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/fleet/customers") }))
        .route("/fleet/customers", get(registry::list).post(registry::register))
        .route("/fleet/customers/new", get(registry::new_form))
        .route("/fleet/customers/{id}", get(registry::detail))
        .route("/fleet/customers/{id}/edit", get(registry::edit_form).post(registry::edit))
        .route("/fleet/customers/{id}/rotate", post(registry::rotate))
        .route("/fleet/customers/{id}/delete", get(registry::delete_form).post(registry::delete))
        .route(wire::PATH, post(ingest::ingest))
}

/// A customer portal's view of its push.
pub fn client_router() -> Router<AppState> {
    Router::new().route("/settings/fleet-push", get(push::status::page))
}
