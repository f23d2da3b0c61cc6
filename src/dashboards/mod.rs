//! The portal's own pages about the customer's energy: the Overview a user lands on, the device
//! charts, the embedded Grafana dashboards.

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

pub mod charts;
pub mod figures;
mod grafana;
mod overview;
pub mod series;
mod site_energy;
pub mod site_page;
mod svg;
mod wall;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::overview))
        .route("/api/live/overview", get(overview::live))
        .route("/api/live/overview/energy", get(overview::live_energy))
        .route("/dashboards", get(grafana::index))
        .route("/dashboards/{uid}", get(grafana::show))
        .route("/devices/{id}/series", get(charts::series))
        .route("/devices/{id}/readings.csv", get(charts::readings_csv))
        .route("/sites/{id}/wall-displays", get(wall::list).post(wall::create))
        .route("/sites/{site}/wall-displays/{id}/revoke", post(wall::revoke))
        .route("/wall/{token}", get(wall::show))
        .route("/wall/{token}/live", get(wall::live))
        .route("/wall/{token}/energy", get(wall::energy))
}
