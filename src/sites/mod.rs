//! Sites and devices: where measurements belong. Every signed-in user views them; admins create,
//! edit and delete them.

pub mod db;
mod devices;
pub mod directory;
mod forms;
pub mod hierarchy;
mod meter;
pub mod readings;
mod routes;
pub mod usage;

pub use forms::parse_time_zone;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sites", get(routes::list))
        .route("/sites/new", get(routes::new_site).post(routes::create_site))
        .route("/sites/{id}", get(routes::show))
        .route("/sites/{id}/edit", get(routes::edit_site).post(routes::update_site))
        .route("/sites/{id}/delete", get(routes::confirm_delete).post(routes::delete_site))
        .route("/sites/{id}/devices/new", get(devices::new_device).post(devices::create_device))
        .route("/devices/{id}", get(devices::show))
        .route("/devices/{id}/edit", get(devices::edit_device).post(devices::update_device))
        .route("/devices/{id}/delete", get(devices::confirm_delete).post(devices::delete_device))
}

/// The source of devices that publish over MQTT (src/mqtt/).
pub const MQTT_SOURCE: &str = forms::MQTT;

/// The site or device a form edits (its stored name, for the title and breadcrumb).
pub struct Editing {
    id: i32,
    name: String,
}

/// "1 device", "3 devices", "12 345 readings".
fn count(n: i64, one: &str, many: &str) -> String {
    format!("{} {}", readings::grouped(n as f64, 0), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_grouped_and_pluralised() {
        assert_eq!(super::count(1, "device", "devices"), "1 device");
        assert_eq!(super::count(0, "device", "devices"), "0 devices");
        assert_eq!(super::count(12_345, "reading", "readings"), "12\u{202f}345 readings");
    }
}
