//! The Dashboards page: the provisioned Grafana dashboards embedded in kiosk mode, same origin,
//! under `Grafana__EmbedPathPrefix` (Traefik asks the forwardAuth gate for every request of the
//! frame, so the portal session is the only sign-in). The dashboard list is compiled from the
//! very files Grafana provisions, so the page cannot name a dashboard that does not exist.

use std::sync::OnceLock;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use serde::Deserialize;

use crate::error::{AppError, AppResult};
use crate::sites::db as sites_db;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::CurrentUser;

const FILES: [&str; 2] = [
    include_str!("../../grafana/dashboards/power-overview.json"),
    include_str!("../../grafana/dashboards/device-detail.json"),
];

/// A provisioned dashboard: its fixed uid and title, and whether it has a `site` variable.
pub struct Dashboard {
    pub uid: String,
    pub title: String,
    pub by_site: bool,
}

/// The provisioned dashboards, in the order the page lists them.
pub fn dashboards() -> &'static [Dashboard] {
    static ALL: OnceLock<Vec<Dashboard>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter_map(|d| {
                let by_site =
                    d["templating"]["list"].as_array().is_some_and(|vars| vars.iter().any(|v| v["name"] == "site"));
                Some(Dashboard {
                    uid: d["uid"].as_str()?.to_string(),
                    title: d["title"].as_str()?.to_string(),
                    by_site,
                })
            })
            .collect()
    })
}

/// The frame's address: kiosk mode (no Grafana chrome), optionally filtered to one site.
pub fn embed_url(prefix: &str, dashboard: &Dashboard, site: Option<i32>) -> String {
    let mut url = format!("{prefix}/d/{}?orgId=1&kiosk", dashboard.uid);
    if let Some(site) = site.filter(|_| dashboard.by_site) {
        url.push_str(&format!("&var-site={site}"));
    }
    url
}

pub struct Tab {
    uid: String,
    title: String,
    current: bool,
}

pub struct SiteChoice {
    id: i32,
    name: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "dashboards/grafana.html")]
struct DashboardsPage {
    page: Page,
    tabs: Vec<Tab>,
    title: String,
    uid: String,
    frame_url: String,
    /// Opens the dashboard in Grafana itself (with its menus), in a new tab.
    full_url: String,
    by_site: bool,
    sites: Vec<SiteChoice>,
    prefix: String,
}

#[derive(Deserialize)]
pub struct SiteFilter {
    site: Option<String>,
}

pub async fn index(
    state: State<AppState>,
    user: CurrentUser,
    page: Page,
    query: Query<SiteFilter>,
) -> AppResult<Html<String>> {
    let first = dashboards().first().ok_or(AppError::NotFound)?;
    show(state, user, page, Path(first.uid.clone()), query).await
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Path(uid): Path<String>,
    Query(filter): Query<SiteFilter>,
) -> AppResult<Html<String>> {
    let dashboard = dashboards().iter().find(|d| d.uid == uid).ok_or(AppError::NotFound)?;
    // "All sites" comes as an empty value; anything unparsable is treated the same.
    let site = filter.site.and_then(|s| s.parse::<i32>().ok());
    let prefix = state.config.grafana_embed_path_prefix.trim_end_matches('/');
    let sites = sites_db::site_names(&state.db)
        .await?
        .into_iter()
        .map(|(id, name)| SiteChoice { id, name, selected: Some(id) == site })
        .collect();
    let tabs = dashboards()
        .iter()
        .map(|d| Tab { uid: d.uid.clone(), title: d.title.clone(), current: d.uid == uid })
        .collect();
    let frame_url = embed_url(prefix, dashboard, site);
    let full_url = frame_url.replace("&kiosk", "");
    render(&DashboardsPage {
        page,
        tabs,
        title: dashboard.title.clone(),
        uid,
        frame_url,
        full_url,
        by_site: dashboard.by_site,
        sites,
        prefix: prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provisioned_dashboard_is_listed_with_its_uid() {
        let uids: Vec<&str> = dashboards().iter().map(|d| d.uid.as_str()).collect();
        assert_eq!(uids, ["tau-power-overview", "tau-device-detail"]);
        assert!(dashboards().iter().all(|d| d.by_site), "both dashboards filter by site");
    }

    #[test]
    fn the_frame_is_kiosk_mode_under_the_prefix() {
        let d = &dashboards()[0];
        assert_eq!(embed_url("/grafana", d, None), "/grafana/d/tau-power-overview?orgId=1&kiosk");
        assert_eq!(embed_url("/g", d, Some(3)), "/g/d/tau-power-overview?orgId=1&kiosk&var-site=3");
    }
}
