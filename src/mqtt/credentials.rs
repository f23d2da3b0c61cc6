//! A device's broker credentials on its page (admins): create, rotate (a new password; the old
//! one stops working at the device's next connection) and revoke (the account and its ACLs go at
//! once). The password is 256 random bits, shown once, stored only as its bcrypt hash.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::db::{self, Issued};
use crate::auth::tokens;
use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::sites::db as sites_db;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::secret::SecretPage;
use crate::web::session::ActingAdmin;

/// What the device page shows about a device's broker access.
pub struct MqttView {
    pub username: Option<String>,
    pub since: String,
    pub broker: String,
    pub sensor_topic: String,
    pub command_topic: String,
}

/// The MQTT card of a device page (`None` for devices of other sources).
pub async fn view(state: &AppState, device: &sites_db::DeviceRow) -> AppResult<Option<MqttView>> {
    if device.source != crate::sites::MQTT_SOURCE {
        return Ok(None);
    }
    let credentials = db::credentials(&state.db, device.id).await?;
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let since = match &credentials {
        Some(c) => match c.rotated_at {
            Some(r) => format!("password rotated {}", at(r)),
            None => format!("created {} by {}", at(c.created_at), c.created_by),
        },
        None => String::new(),
    };
    Ok(Some(MqttView {
        username: credentials.map(|c| c.username),
        since,
        broker: state.config.mqtt.device_url.clone(),
        sensor_topic: format!("sensor/{}", device.external_id),
        command_topic: format!("command/{}/#", device.external_id),
    }))
}

pub async fn issue(
    State(state): State<AppState>,
    admin: ActingAdmin,
    page: Page,
    Path(id): Path<i32>,
) -> AppResult<Response> {
    let device = sites_db::device(&state.db, id).await?.ok_or(AppError::NotFound)?;
    if device.source != crate::sites::MQTT_SOURCE {
        return Err(AppError::Forbidden(format!(
            "{} does not publish over MQTT: edit the device and choose the source MQTT first.",
            device.name
        )));
    }
    if let Err(why) = super::topic_safe(&device.external_id) {
        return Err(AppError::Forbidden(format!("{why} Rename the device first.")));
    }
    if device.external_id == state.config.mqtt.username {
        return Err(AppError::Forbidden(format!(
            "{:?} is the portal's own broker account (Mqtt__Username): rename the device first.",
            device.external_id
        )));
    }
    if let Some(claims) = state.licence.claims()
        && !claims.features.iter().any(|f| f == super::LICENCE_FEATURE)
    {
        return Err(AppError::Forbidden(
            "The licence of this portal does not include MQTT ingestion (feature mqtt): nothing was changed. Ask \
             your provider for a licence with it (Settings → Licence)."
                .into(),
        ));
    }
    let password = tokens::random("");
    let hash = db::bcrypt_hash(password.clone()).await.map_err(AppError::internal)?;
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let (username, action) = match db::issue(&mut change, id, &device.external_id, &hash, &admin.user.email).await? {
        Issued::Created(u) => (u, "device.mqtt-credentials-created"),
        Issued::Rotated(u) => (u, "device.mqtt-password-rotated"),
        Issued::Taken(u) => {
            return Err(AppError::Forbidden(format!(
                "The broker already has an account named {u:?} that is not this device's (the portal's own, or one \
                 made by hand in mqtt_users): nothing was changed. Rename the device or remove that account."
            )));
        }
    };
    state.commit(change, action, Some(&device.external_id), serde_json::json!({ "username": username })).await?;
    tracing::info!(device = %device.external_id, "{action} for MQTT user {username}");
    SecretPage {
        page,
        heading: "MQTT password",
        subject_label: "The MQTT password of",
        subject: format!("{} (username {username}, topic sensor/{})", device.name, device.external_id),
        secret: password,
        hint: "enter it in the device's MQTT settings with its username. The device page shows the broker's address and \
               the topics. If it is lost, rotate it: the old password then stops working at the device's next connection.",
        back_url: "/sites",
        back_label: "Back to Sites",
    }
    .response()
}

pub async fn revoke(State(state): State<AppState>, admin: ActingAdmin, Path(id): Path<i32>) -> AppResult<Response> {
    let device = sites_db::device(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let mut change = Change::begin(&state.db, admin.actor()).await?;
    let Some(username) = db::revoke(&mut change, id).await? else {
        return Ok(Redirect::to(&format!("/devices/{id}")).into_response());
    };
    let detail = serde_json::json!({ "username": username });
    state.commit(change, "device.mqtt-credentials-revoked", Some(&device.external_id), detail).await?;
    tracing::info!(device = %device.external_id, "Revoked the MQTT credentials of {} (user {username})", device.external_id);
    Ok(Redirect::to(&format!("/devices/{id}?notice=mqtt-revoked")).into_response())
}
