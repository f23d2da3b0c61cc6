//! The context every page template renders with: branding, the signed-in user, the CSRF token
//! for its forms, and a notice left by the previous action (`?notice=<code>`, a fixed message per
//! code, so nothing a link carries is ever rendered as text).

use axum::extract::FromRequestParts;
use axum::http::Uri;
use axum::http::request::Parts;

use crate::auth::sessions::SessionUser;
use crate::state::AppState;
use std::sync::Arc;

use crate::branding::Theme;
use crate::web::static_files::Asset;
use crate::web::{csrf, session, static_files};

pub struct Page {
    pub theme: Arc<Theme>,
    pub user: Option<SessionUser>,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub css_url: &'static str,
    /// The page scripts and the chart library (pages that chart or update live include them).
    pub js_url: &'static str,
    pub uplot_js_url: &'static str,
    pub uplot_css_url: &'static str,
    /// The current path, to mark the active navigation entry.
    pub path: String,
    /// Admin (fleet) run mode: its own navigation.
    pub fleet_admin: bool,
    /// What admins are told about the licence on every page (expiring, expired, refused).
    pub licence_banner: Option<String>,
    /// Open alarms, for the header.
    pub active_alarms: i64,
}

const NOTICES: &[(&str, &str)] = &[
    ("signed-out", "You have signed out."),
    ("password-changed", "Your password was changed. Other sessions of your account were signed out."),
    ("session-expired", "Your session has ended. Please sign in again."),
    ("user-updated", "The user was updated."),
    ("user-deleted", "The user was deleted."),
    ("branding-saved", "The branding was saved."),
    ("logo-saved", "The logo was uploaded."),
    ("logo-removed", "The logo was removed."),
    ("site-created", "The site was added. Add a device for each of its meters next."),
    ("site-updated", "The site was saved."),
    ("site-deleted", "The site was deleted, with its devices and their readings."),
    ("device-created", "The device was added."),
    ("device-updated", "The device was saved."),
    ("device-deleted", "The device was deleted, with its readings."),
    ("api-key-revoked", "The API key was revoked: requests with it are refused from now on."),
    ("wall-display-revoked", "The wall display link was revoked: the screen showing it stops updating and says so."),
    ("municipality-saved", "The municipality was saved."),
    ("municipality-deleted", "The municipality was deleted."),
    ("tariff-saved", "The tariff was saved."),
    ("tariff-imported", "The tariff was imported. Assign it to sites under Settings → Rates."),
    ("tariff-deleted", "The tariff was deleted."),
    ("tariff-assigned", "The tariff was assigned; the site's bills use it from its effective date."),
    ("tariff-unassigned", "The tariff was removed from the site's history."),
    ("alarm-acknowledged", "The alarm was acknowledged."),
    ("alarm-already-acknowledged", "The alarm had already been acknowledged; nothing was changed."),
    (
        "alarm-cleared",
        "The alarm was cleared. It is raised again only after its condition has recovered and breached again.",
    ),
    ("alarm-already-ended", "The alarm had already ended; nothing was changed."),
    (
        "alarm-rule-saved",
        "The alarm rule was saved. Alarms it had raised ended; it is evaluated afresh within seconds.",
    ),
    ("alarm-rule-deleted", "The alarm rule was deleted; its alarms stay in the history."),
    ("recipient-list-saved", "The recipient list was saved."),
    ("recipient-list-deleted", "The recipient list was deleted; its past deliveries stay listed."),
    ("customer-updated", "The customer was saved."),
    ("mqtt-revoked", "The device's MQTT credentials were revoked: the broker refuses them from now on."),
    ("customer-deleted", "The customer was deleted, with its sites, devices, measurements and ingest events."),
];

impl Page {
    pub fn new(state: &AppState, uri: &Uri, user: Option<SessionUser>) -> Page {
        let csrf = user.as_ref().map(|u| csrf::session_token(&state.keys, u)).unwrap_or_default();
        let notice = uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "notice")
                .and_then(|(_, code)| NOTICES.iter().find(|(c, _)| *c == code).map(|(_, text)| *text))
        });
        let licence_banner = if user.as_ref().is_some_and(|u| u.is_admin) {
            state.licence.standing(state.clock.now()).banner()
        } else {
            None
        };
        Page {
            licence_banner,
            theme: state.branding.theme(),
            user,
            csrf,
            notice,
            css_url: static_files::css_url(),
            js_url: static_files::url(Asset::AppJs),
            uplot_js_url: static_files::url(Asset::UplotJs),
            uplot_css_url: static_files::url(Asset::UplotCss),
            path: uri.path().to_string(),
            fleet_admin: state.config.run_mode == crate::config::RunMode::Admin,
            active_alarms: state.alarms.count(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.is_admin)
    }

    /// `aria-current` for a navigation link.
    pub fn current(&self, prefix: &str) -> &'static str {
        let here = if prefix == "/" { self.path == "/" } else { self.path.starts_with(prefix) };
        if here { "page" } else { "false" }
    }

    /// Like [`current`](Self::current), but not below `excluded`: a part of a section that has
    /// its own navigation entry (Rates lives under Settings).
    pub fn current_except(&self, prefix: &str, excluded: &str) -> &'static str {
        if self.path.starts_with(excluded) { "false" } else { self.current(prefix) }
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Page::new(state, &parts.uri, session::current(parts).user))
    }
}
