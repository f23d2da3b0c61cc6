//! MQTT ingestion (README "MQTT"). Devices publish to the stack's Mosquitto broker, which checks
//! them against `mqtt_users`/`mqtt_acls` (mosquitto-go-auth, the seed's three queries); the
//! portal owns those tables (db.rs): admins create, rotate and revoke a device's credentials on
//! its page (credentials.rs), and the portal writes its own superuser account at every start.
//! The subscriber (subscriber.rs) reads `sensor/#` with QoS 1 and stores readings through the
//! single write path, acknowledging each message only once it is stored.

pub mod credentials;
pub mod db;
pub mod payload;
pub mod subscriber;

use axum::Router;
use axum::routing::post;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/devices/{id}/mqtt", post(credentials::issue))
        .route("/devices/{id}/mqtt/revoke", post(credentials::revoke))
}

/// The licence feature that allows device broker credentials (a licensed portal without it
/// cannot issue them; an unlicensed one can).
pub const LICENCE_FEATURE: &str = "mqtt";

/// Why `external_id` cannot be an MQTT topic level (and a broker username), if it cannot: MQTT
/// reserves `/` (the level separator) and the wildcards `+` and `#`.
pub fn topic_safe(external_id: &str) -> Result<(), String> {
    match external_id.chars().find(|c| matches!(c, '/' | '+' | '#' | '\0')) {
        Some(c) => Err(format!(
            "An MQTT device's external ID becomes its topic (sensor/<external ID>): it cannot contain {c:?}."
        )),
        None => Ok(()),
    }
}

/// Prepares the broker's side at startup (Client mode): the portal's own superuser account and,
/// when configured, the broker's read-only database role.
pub async fn prepare(db: &sqlx::PgPool, settings: &crate::config::MqttSettings) -> Result<(), db::BrokerSetupError> {
    use secrecy::ExposeSecret;
    if let Some(role) = &settings.broker_role {
        db::ensure_broker_role(db, &role.user, role.password.expose_secret()).await?;
    }
    if settings.enabled
        && let Some(password) = &settings.password
    {
        db::ensure_superuser(db, &settings.username, password.expose_secret()).await?;
        tracing::info!(username = %settings.username, "MQTT account of the portal is ready (superuser in mqtt_users)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_levels_and_wildcards_are_refused_in_external_ids() {
        assert!(super::topic_safe("device001").is_ok());
        assert!(super::topic_safe("MTR-1.2_x").is_ok());
        for bad in ["a/b", "a+", "#", "x\0"] {
            assert!(super::topic_safe(bad).is_err(), "{bad}");
        }
    }
}
