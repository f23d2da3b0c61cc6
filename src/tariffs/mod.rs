//! Tariffs and bills: municipalities and their tariffs (Settings → Rates), a site's tariff
//! history, and the cost engine that turns a site's 15-minute energy into an itemised bill in
//! the site's local time (the site page's Cost tab, the Overview's month to date).

pub mod bills;
pub mod cost;
pub mod db;
pub mod engine;
mod forms;
pub mod library;
pub mod local;
pub mod model;
mod rates;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/rates", get(rates::overview))
        .route("/settings/rates/municipalities", post(rates::create_municipality))
        .route("/settings/rates/municipalities/{id}", get(rates::edit_municipality).post(rates::update_municipality))
        .route("/settings/rates/municipalities/{id}/delete", post(rates::delete_municipality))
        .route("/settings/rates/tariffs/new", get(rates::new_tariff).post(rates::create_tariff))
        .route("/settings/rates/tariffs/{id}", get(rates::edit_tariff).post(rates::update_tariff))
        .route("/settings/rates/tariffs/{id}/delete", post(rates::delete_tariff))
        .route("/settings/rates/tariffs/{id}/versions/{index}/delete", post(rates::delete_version))
        .route("/settings/rates/tariffs/{id}/export", get(rates::export))
        .route("/settings/rates/import", post(rates::import))
        .route("/settings/rates/library", post(rates::start_from_library))
        .route("/settings/rates/assignments", post(rates::assign))
        .route("/settings/rates/assignments/delete", post(rates::unassign))
        .route("/sites/{id}/cost", get(cost::show))
        .route("/sites/{id}/cost/bill.csv", get(cost::bill_export))
        .route("/sites/{id}/cost/intervals.csv", get(cost::intervals_export))
}

#[cfg(test)]
mod tests;
